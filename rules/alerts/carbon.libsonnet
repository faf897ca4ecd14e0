// Carbon budgets (docs/energy-and-carbon.md): kg CO2e a day per namespace, team or cost centre, from the
// exporter's chargeback_namespace_carbon_grams_total (Kepler's measured joules or Cloud Carbon Footprint's
// estimate, times grid intensity). Set _config.carbonBudgets, or a budgets file's `carbon:` list.
{
  local c = $._config,
  local sel = c.chargebackSelector,
  local quote(s) = std.strReplace(s, '"', '\\"'),

  local carbonBudget(b) = {
    local scopeSel = '%s=%s' % [b.scope.kind, std.escapeStringJson(b.scope.value)],
    local who = '%s %s' % [std.strReplace(b.scope.kind, '_', ' '), b.scope.value],
    local id = 'carbon_budget=%s' % std.escapeStringJson(b.name),
    local ids = { carbon_budget: b.name, [b.scope.kind]: b.scope.value },
    local kg = quote('budget:chargeback_carbon_kg:increase%s{%s}' % [c.carbonBudgetWindow, id]),
    records: [
      {
        record: 'budget:chargeback_carbon_kg:increase%s' % c.carbonBudgetWindow,
        expr: 'sum(increase(chargeback_namespace_carbon_grams_total{%s, %s}[%s])) / 1000' % [sel, scopeSel, c.carbonBudgetWindow],
        labels: ids,
      },
      {
        record: 'budget:chargeback_carbon_budget_usage:ratio',
        expr: 'budget:chargeback_carbon_kg:increase%s{%s} / %g' % [c.carbonBudgetWindow, id, b.kgPerDay],
        labels: ids,
      },
    ],
    alert: {
      alert: 'ChargebackCarbonBudgetExceeded',
      expr: 'budget:chargeback_carbon_budget_usage:ratio{%s} > 1' % id,
      'for': c.carbonBudgetFor,
      labels: ids + b.labels + { severity: 'warning' },
      annotations: {
        summary: 'Carbon budget %s: %s emitted {{ $value | humanizePercentage }} of its %g kg CO2e a day.' % [b.name, who, b.kgPerDay],
        description: '%s emitted {{ with query "%s" }}{{ . | first | value | printf "%%.3f" }}{{ end }} kg CO2e over the last %s, over its budget of %g kg a day ({{ $value | humanizePercentage }}).' % [who, kg, c.carbonBudgetWindow, b.kgPerDay],
        runbook_url: c.runbookURL('ChargebackCarbonBudgetExceeded'),
      },
    },
  },

  local budgets = [carbonBudget(b) for b in c.carbonBudgets],

  prometheusRules+:: {
    groups+: if budgets == [] then [] else [{
      name: 'chargeback.carbon.rules',
      interval: c.ruleInterval,
      rules: std.flattenArrays([b.records for b in budgets]),
    }],
  },

  prometheusAlerts+:: {
    groups+: if budgets == [] then [] else [{
      name: 'chargeback.carbon',
      interval: c.ruleInterval,
      rules: [b.alert for b in budgets],
    }],
  },
}
