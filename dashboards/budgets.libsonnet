local g = import 'lib/g.libsonnet';
function(c)
  local m = c.currencyUnit;
  g.dashboard(c, 'budgets', 'Cost / Budgets', 'Every budget: spend so far, the forecast for the period, and what is alerting. Team-wide budgets stay listed when a namespace is selected.', [
    [
      g.table('Budgets', 'Per budget: spend so far in its calendar period, share of the budget used, projected spend at the current pace.', [
        g.target('budget:chargeback_budget_spend:sum{team=~"$team", namespace=~"$namespace|"}', 'spend'),
        g.target('budget:chargeback_budget_usage:ratio{team=~"$team", namespace=~"$namespace|"}', 'used'),
        g.target('budget:chargeback_budget_forecast:sum{team=~"$team", namespace=~"$namespace|"}', 'forecast'),
      ], m),
    ],
    [
      g.timeseries('Share of budget used', 'Spend over budget for each budget; alerts fire at the thresholds (50/80/100% by default).', [g.target('budget:chargeback_budget_usage:ratio{team=~"$team", namespace=~"$namespace|"}', '{{budget}}')], 'percentunit'),
      g.timeseries('Burn rate', 'Projected spend over budget: above 1 the budget runs out before the period ends.', [g.target('budget:chargeback_budget_burn_rate:ratio{team=~"$team", namespace=~"$namespace|"}', '{{budget}}')], 'none'),
    ],
    [
      g.table('Budget alerts firing', 'Budget alerts currently firing in Prometheus (ALERTS).', [
        g.target('ALERTS{alertname=~"Chargeback(Namespace)?Budget.*", alertstate="firing", cluster=~"$cluster", team=~"$team"}', ''),
      ], 'none'),
    ],
  ])
