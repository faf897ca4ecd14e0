{
  prometheusRules+:: {
    local c = $._config,
    local sel = c.chargebackSelector,
    local cl = c.clusterLabel,
    local by(level) = if level == 'cluster' then cl else '%s, %s' % [cl, level],
    local levels = ['namespace', 'team', 'cost_center'],
    groups+: [{
      name: 'chargeback.rules',
      interval: c.ruleInterval,
      rules: [
        {
          record: '%s:chargeback_cost_per_hour:sum_rate' % level,
          expr: 'sum by (%s) (rate(chargeback_namespace_cost_total{%s}[%s])) * 3600' % [by(level), sel, c.costRateWindow],
        }
        for level in levels + ['cluster']
      ] + [
        {
          record: '%s:chargeback_cost_per_day:sum_increase' % level,
          expr: 'sum by (%s) (increase(chargeback_namespace_cost_total{%s}[%s]))' % [by(level), sel, c.costDayWindow],
        }
        for level in levels + ['cluster']
      ] + [
        {
          record: '%s:chargeback_cost_month_to_date:sum' % level,
          expr: 'sum by (%s) (chargeback_period_cost{%s, period="monthly"})' % [by(level), sel],
        }
        for level in levels + ['cluster']
      ] + [
        {
          // How far through each calendar period accrual has got: 0 at its start, 1 at its end.
          record: 'cluster_period:chargeback_period_elapsed:ratio',
          expr: |||
            max by (%(cl)s, period) (
              (chargeback_accrued_until_timestamp_seconds{%(sel)s}
                - on (%(cl)s, job, instance) group_right chargeback_period_start_timestamp_seconds{%(sel)s})
              / on (%(cl)s, job, instance, period)
              (chargeback_period_end_timestamp_seconds{%(sel)s} - chargeback_period_start_timestamp_seconds{%(sel)s})
            )
          ||| % { cl: cl, sel: sel },
        },
      ] + [
        {
          // Projected month-end spend at the month's average pace so far.
          record: '%s:chargeback_cost_month_forecast:sum' % level,
          expr: '%s:chargeback_cost_month_to_date:sum / on (%s) group_left () cluster_period:chargeback_period_elapsed:ratio{period="monthly"}' % [level, cl],
        }
        for level in levels + ['cluster']
      ] + [
        {
          // The team that carries most of a namespace's cost, to route namespace-level alerts.
          record: 'namespace:chargeback_owner:info',
          expr: 'topk by (%(cl)s, namespace) (1, sum by (%(cl)s, namespace, team) (rate(chargeback_namespace_cost_total{%(sel)s}[%(w)s]))) * 0 + 1' % { cl: cl, sel: sel, w: c.costRateWindow },
        },
      ],
    }],
  },
}
