local g = import 'lib/g.libsonnet';
function(c)
  local cl = c.clusterLabel;
  local s = '%s, %s=~"$cluster"' % [c.chargebackSelector, cl];
  local m = c.currencyUnit;
  g.dashboard(c, 'overview', 'Cost / Overview', 'Where the cluster bill goes: by team and namespace, allocated vs shared vs idle.', [
    [
      g.stat('Cluster total', 'Nodes, volumes, load balancers, network and fixed costs over the selected period: increase of chargeback_cluster_cost_total.', 'sum(increase(chargeback_cluster_cost_total{%s}[$__range]))' % s, m),
      g.stat('Allocated to teams', 'Cost charged to tenant namespaces (allocated and shared), excluding idle, over the period.', 'sum(increase(chargeback_namespace_cost_total{%s, component!="idle"}[$__range]))' % s, m),
      g.stat('Idle share of the bill', 'Idle cost (capacity nobody requested or used) as a share of the cluster total over the period.', 'sum(increase(chargeback_namespace_cost_total{%s, namespace="__idle__"}[$__range])) / sum(increase(chargeback_cluster_cost_total{%s}[$__range]))' % [s, s], 'percentunit'),
      g.stat('Month to date', "Calendar month-to-date cost (UTC), from the exporter's period counters.", 'sum(cluster:chargeback_cost_month_to_date:sum{%s=~"$cluster"})' % cl, m),
    ],
    [
      g.bars('Cost by team', 'Total cost per team over the period, shared and idle shares included where configured.', 'sort_desc(sum by (team) (increase(chargeback_namespace_cost_total{%s}[$__range])))' % s, '{{team}}', m),
      g.bars('Cost by namespace', 'Total cost per namespace over the period, for the selected teams and namespaces; __idle__ is unallocated capacity.', 'sort_desc(sum by (namespace) (increase(chargeback_namespace_cost_total{%s, team=~"$team", namespace=~"$namespace"}[$__range])))' % s, '{{namespace}}', m),
    ],
    [
      g.timeseries('Allocated, shared and idle', 'Cost per hour by component, stacked: allocated to workloads, shared from platform namespaces and fixed costs, idle.', [g.target('sum by (component) (rate(chargeback_namespace_cost_total{%s}[$__rate_interval])) * 3600' % s, '{{component}}')], m, stacked=true),
      g.timeseries('Daily cost against the week before', 'Cost over the last day, and the same a week earlier, from cluster:chargeback_cost_per_day:sum_increase.', [
        g.target('sum(cluster:chargeback_cost_per_day:sum_increase{%s=~"$cluster"})' % cl, 'last 24h'),
        g.target('sum(cluster:chargeback_cost_per_day:sum_increase{%s=~"$cluster"} offset 7d)' % cl, 'a week earlier'),
      ], m),
    ],
    [
      g.table('Top movers', 'Teams whose last-day cost changed most against the day before (absolute change; a team with no cost the day before moves by its whole cost).', [
        g.target('topk(10, abs(sum by (team) (team:chargeback_cost_per_day:sum_increase{%(cl)s=~"$cluster"}) - (sum by (team) (team:chargeback_cost_per_day:sum_increase{%(cl)s=~"$cluster"} offset 1d) or 0 * sum by (team) (team:chargeback_cost_per_day:sum_increase{%(cl)s=~"$cluster"}))))' % { cl: cl }, '{{team}}'),
      ], m, w=12),
      g.timeseries('Cost per hour by team', 'Burn rate per team, from team:chargeback_cost_per_hour:sum_rate.', [g.target('sum by (team) (team:chargeback_cost_per_hour:sum_rate{%s=~"$cluster"})' % cl, '{{team}}')], m),
    ],
  ])
