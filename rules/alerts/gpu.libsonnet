// GPU waste (docs/gpu-waste.md): namespaces holding expensive GPUs that dcgm-exporter sees mostly idle.
{
  local c = $._config,
  local sel = c.chargebackSelector,
  local by = 'sum by (%s, namespace)' % c.clusterLabel,
  local cost = 'chargeback_namespace_cost_total{%s, component="allocated", resource="gpu"}' % sel,
  local waste = 'chargeback_namespace_gpu_waste_cost_total{%s}' % sel,

  prometheusAlerts+:: {
    groups+: [{
      name: 'chargeback-gpu',
      rules: [
        {
          // Waste over the window above (1 - threshold) of the GPU cost means utilisation under the
          // threshold; the GPUs must have been held since the window began, and cost more than the floor.
          alert: 'ChargebackGPUMostlyIdle',
          expr: |||
            %(by)s (increase(%(waste)s[%(w)s])) > %(share)g * %(by)s (increase(%(cost)s[%(w)s]))
              and on (%(cl)s, namespace) %(by)s (increase(%(cost)s[%(w)s])) > %(floor)g
              and on (%(cl)s, namespace) %(by)s (increase(%(cost)s[15m] offset %(back)s)) > 0
          ||| % {
            by: by,
            waste: waste,
            cost: cost,
            cl: c.clusterLabel,
            w: c.gpuIdleWindow,
            share: 1 - c.gpuIdleThreshold,
            floor: c.gpuIdleFloor,
            back: c.gpuIdleHeldSince,
          },
          'for': c.gpuIdleFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'Namespace {{ $labels.namespace }} pays for GPUs that sit mostly idle.',
            description: 'The GPUs namespace {{ $labels.namespace }} holds were busy less than %d%% of the time over the last %s: {{ $value | printf "%%.2f" }} %s of its GPU cost paid for idle GPU time. Release or share them (see the GPU waste section of chargeback report).' % [std.round(c.gpuIdleThreshold * 100), c.gpuIdleWindow, c.currency],
            runbook_url: c.runbookURL('ChargebackGPUMostlyIdle'),
          },
        },
      ],
    }],
  },
}
