// The one hidden _config of the chargeback mixin (rules, alerts and dashboards), as in kubernetes-mixin.
// The repository's mixin.libsonnet, rules/mixin.libsonnet and dashboards/mixin.libsonnet all start from it.
{
  _config+:: {
    // Selects the chargeback exporter's series. Matches both standard scrape shapes: a ServiceMonitor's
    // job (the Service's name, "chargeback") and a PodMonitor's ("<namespace>/chargeback").
    chargebackSelector: 'job=~"(.+/)?chargeback"',
    // Label that tells clusters apart when many Prometheus servers feed Thanos/Mimir.
    clusterLabel: 'cluster',
    currency: 'USD',

    // Recording rule evaluation and windows.
    ruleInterval: '1m',

    // Per-(namespace, node) allocation recorded for the exporter's long windows. These must match
    // the exporter's config: allocation.policy, requestWeight, usageRateWindow, and the
    // prometheus.ksmSelector / cadvisorSelector (here under the ecosystem's names
    // kubeStateMetricsSelector / cadvisorSelector: extra matchers, empty by default). allocationRuleInterval
    // should equal allocation.resolution; the exporter falls back to raw series wherever they don't match.
    allocationRules: true,
    allocationRuleInterval: '1m',
    allocationPolicy: 'max',  // max | request | usage | weighted
    requestWeight: 0.7,
    usageRateWindow: '5m',
    // The per-pair names recorded before namespace_node:chargeback_allocation:sum (deprecated), derived
    // from it by selection for one release; false drops them (half the group's series).
    allocationDeprecatedRecords: true,
    kubeStateMetricsSelector: self.ksmSelector,
    ksmSelector: '',  // deprecated alias of kubeStateMetricsSelector (the exporter's config key)
    cadvisorSelector: '',
    costRateWindow: '1h',
    costDayWindow: '1d',

    // Budgets from a budgets file (chargeback rules --budgets), and the thresholds
    // (fractions of the budget) used for budgets declared as namespace annotations.
    budgets: [],
    annotationBudgetThresholds: [0.5, 0.8, 1.0],
    // Threshold (fraction) -> severity: below 0.8 info, below 1.0 warning, else critical.
    severityFor(threshold):: if threshold >= 1.0 then 'critical' else if threshold >= 0.8 then 'warning' else 'info',
    budgetFor: '0m',
    forecastFor: '1h',

    // Other alerts.
    spikeFactor: 1.5,  // a day's cost this many times the previous week's daily average
    spikeBaseline: '7d',
    spikeFloorPerDay: 10,  // ignore spikes below this daily spend
    efficiencyThreshold: 0.3,
    efficiencyFloorPerHour: 0.5,
    efficiencyFor: '6h',
    exporterDownFor: '10m',
    accrualFailingFor: '15m',
    staleAfterSeconds: 900,
    staleFor: '10m',
    labelCoverageTarget: 0.95,
    labelCoverageFor: '1h',
    unpricedNodeFor: '30m',
    reconciliationTolerance: 0.05,  // |computed - bill| / bill above this alerts
    reconciliationFor: '1h',
    // GPU waste (dcgm-exporter): utilisation under gpuIdleThreshold on average over gpuIdleWindow, of GPUs
    // held since the window began (GPU cost in the 15m after gpuIdleHeldSince ago: window - 15m) and
    // costing more than gpuIdleFloor (currency) in the window.
    gpuIdleThreshold: 0.1,
    gpuIdleWindow: '6h',
    gpuIdleHeldSince: '5h45m',
    gpuIdleFloor: 10,
    gpuIdleFor: '15m',

    // Carbon budgets (alerts/carbon.libsonnet): [{ name, scope: { kind: 'team', value: 'payments' },
    // kgPerDay: 5, labels: {} }], or a budgets file's `carbon:` list. kg CO2e over a rolling carbonBudgetWindow.
    carbonBudgets: [],
    carbonBudgetWindow: '1d',
    carbonBudgetFor: '15m',

    runbookURLPattern: 'https://github.com/chargeback/chargeback/blob/main/docs/runbook.md#%s',
    // GitHub's heading anchor: lower case, spaces to hyphens, other punctuation dropped. docs/runbook.md
    // has one heading per alert, named as the alert; tests/test_docs.py checks every URL resolves.
    runbookAnchor(heading):: std.join('', [
      ch
      for ch in std.stringChars(std.strReplace(std.asciiLower(heading), ' ', '-'))
      if std.member('abcdefghijklmnopqrstuvwxyz0123456789-_', ch)
    ]),
    runbookURL(alert):: self.runbookURLPattern % self.runbookAnchor(alert),

    // Dashboards. Grafana unit for money; match the exporter's pricing.currency (currencyUSD, currencyEUR, ...).
    currencyUnit: 'currencyUSD',
    defaultFrom: 'now-30d',
    refresh: '5m',
    tags: ['chargeback', 'cost'],
    uids: {
      overview: 'chargeback-overview',
      team: 'chargeback-team',
      idle: 'chargeback-idle',
      budgets: 'chargeback-budgets',
      clusters: 'chargeback-clusters',
    },
  },
}
