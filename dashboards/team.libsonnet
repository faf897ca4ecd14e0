local g = import 'lib/g.libsonnet';
function(c)
  local cl = c.clusterLabel;
  local s = '%s, %s=~"$cluster", team=~"$team", namespace=~"$namespace"' % [c.chargebackSelector, cl];
  local m = c.currencyUnit;
  g.dashboard(c, 'team', 'Cost / Team and namespace', 'What a team or namespace spends, on what, what it receives from shared services, and how much of what it requests it uses.', [
    [
      g.stat('Cost over the period', 'Everything charged to the selection over the period.', 'sum(increase(chargeback_namespace_cost_total{%s}[$__range]))' % s, m),
      g.stat('Shared cost received', "The selection's share of shared namespaces and fixed costs over the period.", 'sum(increase(chargeback_namespace_cost_total{%s, component="shared"}[$__range]))' % s, m),
      g.stat('Month to date', 'Calendar month-to-date cost of the selection.', 'sum(chargeback_period_cost{%s, period="monthly"})' % s, m),
      g.stat('Burn rate per hour', 'Cost per hour over the last accrued interval.', 'sum(chargeback_namespace_hourly_cost{%s})' % s, m),
    ],
    [
      g.bars('Cost by resource', 'CPU, memory, GPU, storage, network, load balancer and overhead cost over the period.', 'sort_desc(sum by (resource) (increase(chargeback_namespace_cost_total{%s}[$__range])))' % s, '{{resource}}', m),
      g.bars('Shared cost received, by source', "Which shared namespace or fixed cost the selection's shared cost came from.", 'sort_desc(sum by (shared_from) (increase(chargeback_namespace_cost_total{%s, component="shared"}[$__range])))' % s, '{{shared_from}}', m),
    ],
    [
      g.timeseries('Efficiency: CPU and memory used over requested', 'Usage divided by requests in each accrued interval (1 = uses exactly what it requests).', [g.target('chargeback_namespace_efficiency_ratio{%s, %s=~"$cluster", namespace=~"$namespace"}' % [c.chargebackSelector, cl], '{{namespace}} {{resource}}')], 'percentunit'),
      g.timeseries('Cost of unused CPU requests per hour', 'Allocated CPU cost per hour times the share of requested CPU that goes unused.', [g.target('sum by (namespace) (chargeback_namespace_hourly_cost{%s, component="allocated", resource="cpu"}) * on (namespace) (1 - clamp_max(max by (namespace) (chargeback_namespace_efficiency_ratio{%s, %s=~"$cluster", resource="cpu"}), 1))' % [s, c.chargebackSelector, cl], '{{namespace}}')], m),
    ],
    [
      g.bars('Energy by team', "kWh over the period: Kepler's measurement where it runs, else the Cloud Carbon Footprint estimate, times PUE (docs/energy-and-carbon.md). Not money.", 'sort_desc(sum by (team) (increase(chargeback_namespace_energy_joules_total{%s}[$__range])) / 3.6e6)' % s, '{{team}}', 'kwatth', w=9),
      g.bars('Carbon by team', "kg CO2e over the period: energy times the grid intensity of each node's region.", 'sort_desc(sum by (team) (increase(chargeback_namespace_carbon_grams_total{%s}[$__range])) / 1000)' % s, '{{team}}', 'masskg', w=9),
      g.stat('Idle energy', "kWh of the nodes' energy no namespace used, kept as __idle__ (0 when idle is shared).", 'sum(increase(chargeback_namespace_energy_joules_total{%s, %s=~"$cluster", namespace="__idle__"}[$__range])) / 3.6e6' % [c.chargebackSelector, cl], 'kwatth', w=6, h=8),
    ],
    [
      g.timeseries('Month to date against budget', "Team month-to-date cost, and each budget's spend and amount (budget:chargeback_budget_spend:sum / usage).", [
        g.target('sum by (team) (team:chargeback_cost_month_to_date:sum{%s=~"$cluster", team=~"$team"})' % cl, '{{team}} month to date'),
        g.target('budget:chargeback_budget_spend:sum{team=~"$team"} / budget:chargeback_budget_usage:ratio{team=~"$team"}', '{{budget}} budget'),
      ], m, w=24),
    ],
  ])
