local g = import 'lib/g.libsonnet';
function(c)
  local cl = c.clusterLabel;
  local m = c.currencyUnit;
  g.dashboard(c, 'clusters', 'Cost / Clusters', "Cost across clusters, through Thanos or any Prometheus that holds every cluster's series.", [
    [
      g.bars('Cost by cluster', "Each cluster's total over the period.", 'sort_desc(sum by (%s) (increase(chargeback_cluster_cost_total{%s}[$__range])))' % [cl, c.chargebackSelector], '{{%s}}' % cl, m),
      g.timeseries('Cost per hour by cluster', 'Burn rate per cluster, from cluster:chargeback_cost_per_hour:sum_rate.', [g.target('sum by (%s) (cluster:chargeback_cost_per_hour:sum_rate)' % cl, '{{%s}}' % cl)], m),
    ],
    [
      g.timeseries('The same team across clusters', "The selected team's cost per hour in each cluster.", [g.target('sum by (%s, team) (team:chargeback_cost_per_hour:sum_rate{team=~"$team"})' % cl, '{{team}} in {{%s}}' % cl)], m),
      g.bars('Month to date by cluster', 'Calendar month-to-date cost per cluster.', 'sort_desc(sum by (%s) (cluster:chargeback_cost_month_to_date:sum{%s=~"$cluster"}))' % [cl, cl], '{{%s}}' % cl, m),
    ],
    [
      g.timeseries('The same namespace across clusters', "The selected namespaces' cost per hour in each cluster.", [g.target('sum by (%s, namespace) (namespace:chargeback_cost_per_hour:sum_rate{%s=~"$cluster", namespace=~"$namespace"})' % [cl, cl], '{{namespace}} in {{%s}}' % cl)], m, w=24),
    ],
  ])
