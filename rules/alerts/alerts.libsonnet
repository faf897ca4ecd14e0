{
  local c = $._config,
  local sel = c.chargebackSelector,
  local cl = c.clusterLabel,
  local runbook(name) = c.runbookURL(name),
  local money = '{{ $value | printf "%.2f" }} ' + c.currency,

  prometheusAlerts+:: {
    groups+: [{
      name: 'chargeback',
      rules: [
        {
          alert: 'ChargebackCostSpike',
          expr: |||
            team:chargeback_cost_per_day:sum_increase
              > %(f)g * avg_over_time(team:chargeback_cost_per_day:sum_increase[%(b)s] offset 1d)
            and team:chargeback_cost_per_day:sum_increase > %(floor)g
          ||| % { f: c.spikeFactor, b: c.spikeBaseline, floor: c.spikeFloorPerDay },
          'for': '1h',
          labels: { severity: 'warning' },
          annotations: {
            summary: 'Team {{ $labels.team }} spent %gx its usual daily cost.' % c.spikeFactor,
            description: 'Team {{ $labels.team }} spent %s over the last day, more than %g times its daily average over the previous %s.' % [money, c.spikeFactor, c.spikeBaseline],
            runbook_url: runbook('ChargebackCostSpike'),
          },
        },
        {
          alert: 'ChargebackLowEfficiency',
          expr: |||
            (chargeback_namespace_efficiency_ratio{%(sel)s, resource="cpu"} < %(t)g)
              and on (%(cl)s, namespace) namespace:chargeback_cost_per_hour:sum_rate > %(floor)g
          ||| % { sel: sel, cl: cl, t: c.efficiencyThreshold, floor: c.efficiencyFloorPerHour },
          'for': c.efficiencyFor,
          labels: { severity: 'info' },
          annotations: {
            summary: 'Namespace {{ $labels.namespace }} uses little of the CPU it requests.',
            description: 'Namespace {{ $labels.namespace }} uses {{ $value | humanizePercentage }} of its CPU requests while spending more than %g %s an hour.' % [c.efficiencyFloorPerHour, c.currency],
            runbook_url: runbook('ChargebackLowEfficiency'),
          },
        },
        {
          alert: 'ChargebackExporterDown',
          expr: 'up{%s} == 0 or absent(up{%s})' % [sel, sel],
          'for': c.exporterDownFor,
          labels: { severity: 'critical' },
          annotations: {
            summary: 'The chargeback exporter is down.',
            description: 'Prometheus cannot scrape the chargeback exporter ({{ $labels.instance }}); cost is not being published.',
            runbook_url: runbook('ChargebackExporterDown'),
          },
        },
        {
          alert: 'ChargebackAccrualFailing',
          expr: 'chargeback_up{%s} == 0' % sel,
          'for': c.accrualFailingFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'The chargeback exporter cannot accrue cost.',
            description: 'Accrual cycles on {{ $labels.instance }} are failing; see the exporter log or /healthz for the cause. Cost will be caught up once it recovers.',
            runbook_url: runbook('ChargebackAccrualFailing'),
          },
        },
        {
          alert: 'ChargebackExporterStale',
          expr: 'time() - chargeback_accrued_until_timestamp_seconds{%s} > %d' % [sel, c.staleAfterSeconds],
          'for': c.staleFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'Cost accrual is lagging.',
            description: 'Cost on {{ $labels.instance }} is accrued only up to {{ $value | humanizeDuration }} ago.',
            runbook_url: runbook('ChargebackExporterStale'),
          },
        },
        {
          alert: 'ChargebackLabelCoverageLow',
          expr: 'chargeback_label_coverage_ratio{%s, basis="cost"} < %g' % [sel, c.labelCoverageTarget],
          'for': c.labelCoverageFor,
          labels: { severity: 'info' },
          annotations: {
            summary: 'Label {{ $labels.label }} covers too little of the cost.',
            description: 'Only {{ $value | humanizePercentage }} of tenant cost carries the {{ $labels.label }} label (target %s); the rest goes to __unattributed__. Run chargeback audit-labels.' % ('%d%%' % std.round(c.labelCoverageTarget * 100)),
            runbook_url: runbook('ChargebackLabelCoverageLow'),
          },
        },
        {
          alert: 'ChargebackReconciliationVariance',
          expr: 'abs(chargeback_reconciliation_variance_ratio{%s, category="total"}) > %g' % [sel, c.reconciliationTolerance],
          'for': c.reconciliationFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'Computed cost is off the cloud bill by more than %d%%.' % std.round(c.reconciliationTolerance * 100),
            description: "For the window starting {{ $labels.window_start | humanizeTimestamp }}, chargeback's computed cost differs from the bill by {{ $value | humanizePercentage }}; run chargeback reconcile to see which category and nodes.",
            runbook_url: runbook('ChargebackReconciliationVariance'),
          },
        },
        {
          alert: 'ChargebackNodeUnpriced',
          expr: 'chargeback_nodes_default_priced{%s} > 0' % sel,
          'for': c.unpricedNodeFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'Nodes are priced at default rates.',
            description: '{{ $value }} node(s) have no price-book rule, OpenCost price or shipped price and are costed at default rates; run chargeback prices.',
            runbook_url: runbook('ChargebackNodeUnpriced'),
          },
        },
      ],
    }],
  },
}
