{
  local c = $._config,
  local sel = c.chargebackSelector,
  local cl = c.clusterLabel,
  local runbook(name) = c.runbookURL(name),
  local pct(t) = '%d%%' % std.round(t * 100),
  local money(expr) = '{{ with query "%s" }}{{ . | first | value | printf "%%.2f" }}{{ end }} %s' % [expr, c.currency],
  // Exclusive bands, so one threshold alert fires at a time: [t_i, t_i+1).
  local band(expr, ts, i) =
    if i == std.length(ts) - 1 then '%s >= %g' % [expr, ts[i]] else '%s >= %g < %g' % [expr, ts[i], ts[i + 1]],
  local quote(s) = std.strReplace(s, '"', '\\"'),

  local fileBudget(b) = {
    // Values go into PromQL as JSON string literals (a subset of PromQL's), so quotes and backslashes are safe.
    local scopeSel = '%s=%s' % [b.scope.kind, std.escapeStringJson(b.scope.value)],
    local who = '%s %s' % [std.strReplace(b.scope.kind, '_', ' '), b.scope.value],
    local id = 'budget=%s' % std.escapeStringJson(b.name),
    local ids = { budget: b.name, period: b.period, [b.scope.kind]: b.scope.value },
    local spend = quote('budget:chargeback_budget_spend:sum{%s}' % id),
    local forecast = quote('budget:chargeback_budget_forecast:sum{%s}' % id),
    records: [
      {
        record: 'budget:chargeback_budget_spend:sum',
        expr: 'sum(chargeback_period_cost{%s, period="%s", %s})' % [sel, b.period, scopeSel],
        labels: ids,
      },
      {
        record: 'budget:chargeback_budget_usage:ratio',
        expr: 'budget:chargeback_budget_spend:sum{%s} / %g' % [id, b.amount],
        labels: ids,
      },
      {
        record: 'budget:chargeback_budget_forecast:sum',
        expr: 'budget:chargeback_budget_spend:sum{%s} / on () group_left () max(cluster_period:chargeback_period_elapsed:ratio{period="%s"})' % [id, b.period],
        labels: ids,
      },
      {
        // Burn rate: projected spend over the budget; 1 means the budget runs out exactly at period end.
        record: 'budget:chargeback_budget_burn_rate:ratio',
        expr: 'budget:chargeback_budget_forecast:sum{%s} / %g' % [id, b.amount],
        labels: ids,
      },
    ],
    alerts: [
      {
        alert: 'ChargebackBudgetThresholdReached',
        expr: band('budget:chargeback_budget_usage:ratio{%s}' % id, b.thresholds, i),
        'for': c.budgetFor,
        labels: ids + b.labels + { severity: c.severityFor(b.thresholds[i]), threshold: pct(b.thresholds[i]) },
        annotations: {
          summary: 'Budget %s: %s has used {{ $value | humanizePercentage }} of its %s budget.' % [b.name, who, b.period],
          description: '%s has spent %s of its %s budget of %.2f %s ({{ $value | humanizePercentage }}, threshold %s).' % [who, money(spend), b.period, b.amount, c.currency, pct(b.thresholds[i])],
          runbook_url: runbook('ChargebackBudgetThresholdReached'),
        },
      }
      for i in std.range(0, std.length(b.thresholds) - 1)
    ] + (if b.forecast then [{
           alert: 'ChargebackBudgetForecastExceeded',
           expr: 'budget:chargeback_budget_burn_rate:ratio{%s} > 1' % id,
           'for': c.forecastFor,
           labels: ids + b.labels + { severity: 'warning' },
           annotations: {
             summary: 'Budget %s: %s is on pace to exceed its %s budget.' % [b.name, who, b.period],
             description: 'At the pace so far, %s will spend %s this %s period, {{ $value | humanizePercentage }} of its budget of %.2f %s.' % [who, money(forecast), b.period, b.amount, c.currency],
             runbook_url: runbook('ChargebackBudgetForecastExceeded'),
           },
         }] else []),
  },

  local budgets = [fileBudget(b) for b in c.budgets],
  local nsUsage = 'namespace_period:chargeback_budget_usage:ratio * on (%s, namespace) group_left (team) namespace:chargeback_owner:info' % cl,
  // A query built from the alert's namespace and period labels, its value as money.
  local nsMoney(fmt) = '{{ with printf "%s" $labels.namespace $labels.period | query }}{{ . | first | value | printf "%%.2f" }}{{ end }} %s' % [quote(fmt), c.currency],
  local nsAmount = nsMoney('max(chargeback_budget_amount{namespace="%s", period="%s"})'),
  local nsSpend = nsMoney('sum(chargeback_period_cost{namespace="%s", period="%s"})'),
  local ts = c.annotationBudgetThresholds,

  prometheusRules+:: {
    groups+: [{
      name: 'chargeback.budgets.rules',
      interval: c.ruleInterval,
      rules: std.flattenArrays([b.records for b in budgets]) + [
        {
          // Budgets declared as chargeback.io/budget-* namespace annotations (published by the exporter).
          record: 'namespace_period:chargeback_budget_usage:ratio',
          expr: 'sum by (%(cl)s, namespace, period) (chargeback_period_cost{%(sel)s}) / on (%(cl)s, namespace, period) group_left (notify) max by (%(cl)s, namespace, period, notify) (chargeback_budget_amount{%(sel)s})' % { cl: cl, sel: sel },
        },
        {
          record: 'namespace_period:chargeback_budget_burn_rate:ratio',
          expr: 'namespace_period:chargeback_budget_usage:ratio / on (%s, period) group_left () cluster_period:chargeback_period_elapsed:ratio' % cl,
        },
      ],
    }],
  },

  prometheusAlerts+:: {
    groups+: [{
      name: 'chargeback.budgets',
      interval: c.ruleInterval,
      rules: std.flattenArrays([b.alerts for b in budgets]) + [
        {
          alert: 'ChargebackNamespaceBudgetThresholdReached',
          expr: band('(%s)' % nsUsage, ts, i),
          'for': c.budgetFor,
          labels: { severity: c.severityFor(ts[i]), threshold: pct(ts[i]) },
          annotations: {
            summary: 'Namespace {{ $labels.namespace }} has used {{ $value | humanizePercentage }} of its {{ $labels.period }} budget.',
            description: 'Namespace {{ $labels.namespace }} has spent %s of its {{ $labels.period }} budget of %s ({{ $value | humanizePercentage }}, threshold %s).' % [nsSpend, nsAmount, pct(ts[i])],
            runbook_url: runbook('ChargebackNamespaceBudgetThresholdReached'),
          },
        }
        for i in std.range(0, std.length(ts) - 1)
      ] + [{
        alert: 'ChargebackNamespaceBudgetForecastExceeded',
        expr: 'namespace_period:chargeback_budget_burn_rate:ratio * on (%s, namespace) group_left (team) namespace:chargeback_owner:info > 1' % cl,
        'for': c.forecastFor,
        labels: { severity: 'warning' },
        annotations: {
          summary: 'Namespace {{ $labels.namespace }} is on pace to exceed its {{ $labels.period }} budget.',
          description: 'At the pace so far, namespace {{ $labels.namespace }} will spend {{ $value | humanizePercentage }} of its {{ $labels.period }} budget of %s.' % nsAmount,
          runbook_url: runbook('ChargebackNamespaceBudgetForecastExceeded'),
        },
      }],
    }],
  },
}
