// Per-(namespace, node) allocation, requests and usage, recorded every rule interval so that
// `chargeback allocate` over long windows reads a few recorded series instead of joining every
// container at every step. The expressions are the exporter's own (exporter/prometheus.py
// Queries.recording_rules); tests/test_recorded.py fails if the two ever differ.
{
  prometheusRules+:: {
    local c = $._config,
    local sel(ms) = '{' + std.join(',', [m for m in ms if m != '']) + '}',
    local ksm = { cpu: 'cpu', memory: 'memory', gpu: 'nvidia_com_gpu' },
    local units = { cpu: 'cpu_cores', memory: 'memory_bytes', gpu: 'gpus' },
    local placement =
      local info = 'max by (namespace, pod, node) (kube_pod_info%s)' % sel(['node!=""', c.kubeStateMetricsSelector]);
      local running = 'max by (namespace, pod) (kube_pod_status_phase%s) == 1' % sel(['phase="Running"', c.kubeStateMetricsSelector]);
      '(topk by (namespace, pod) (1, %s) and on (namespace, pod) (%s))' % [info, running],
    local request(res) =
      'max by (namespace, pod, container) (kube_pod_container_resource_requests%s)'
      % sel(['resource="%s"' % ksm[res], c.kubeStateMetricsSelector]),
    local usageSel = sel(['container!=""', 'container!="POD"', 'namespace!=""', 'pod!=""', c.cadvisorSelector]),
    local usage(res) =
      if res == 'cpu' then
        'max by (namespace, pod, container) (rate(container_cpu_usage_seconds_total%s[%s]))'
        % [usageSel, c.usageRateWindow]
      else 'max by (namespace, pod, container) (container_memory_working_set_bytes%s)' % usageSel,
    local allocation(res) =
      local p = c.allocationPolicy;
      if res == 'gpu' || p == 'request' then request(res)
      else if p == 'usage' then usage(res)
      else
        local weighted = p == 'weighted';
        local r = if weighted then '%g * (%s)' % [c.requestWeight, request(res)] else '(%s)' % request(res);
        local u = if weighted then '%g * (%s)' % [1 - c.requestWeight, usage(res)] else '(%s)' % usage(res);
        '%s by (namespace, pod, container) (label_replace(%s, "src", "request", "", "") or label_replace(%s, "src", "usage", "", ""))'
        % [if weighted then 'sum' else 'max', r, u],
    local byNsNode(perContainer) =
      'sum by (namespace, node) ((%s) * on (namespace, pod) group_left (node) %s)' % [perContainer, placement],
    local labels = {
      policy: if c.allocationPolicy == 'weighted' then 'weighted:%g' % c.requestWeight else c.allocationPolicy,
      usage_rate_window: c.usageRateWindow,
    },
    local rule(kind, res, expr) = {
      record: 'namespace_node:chargeback_%s_%s:sum' % [kind, units[res]],
      expr: byNsNode(expr),
      labels: labels,
    },
    groups+: if !c.allocationRules then [] else [{
      name: 'chargeback-allocation.rules',
      interval: c.allocationRuleInterval,
      rules: [rule('allocated', res, allocation(res)) for res in ['cpu', 'memory', 'gpu']]
             + [rule('requested', res, request(res)) for res in ['cpu', 'memory']]
             + [rule('used', res, usage(res)) for res in ['cpu', 'memory']]
             + [{
               // One sample per evaluation: the exporter reads the recorded series only where
               // this heartbeat shows the rules ran at every step.
               record: 'cluster:chargeback_allocation_rules_evaluated:count',
               expr: 'vector(1)',
               labels: labels,
             }],
    }],
  },
}
