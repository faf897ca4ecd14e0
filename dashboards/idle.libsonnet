local g = import 'lib/g.libsonnet';
function(c)
  local cl = c.clusterLabel;
  local s = '%s, %s=~"$cluster"' % [c.chargebackSelector, cl];
  local m = c.currencyUnit;
  local waste = 'chargeback_namespace_gpu_waste_cost_total{%s}' % s;
  local types = 'max by (node, instance_type) (chargeback_node_hourly_cost{%s})' % s;
  g.dashboard(c, 'idle', 'Cost / Idle and efficiency', 'Capacity paid for but not allocated, where it sits, and the workloads that waste the most.', [
    [
      g.stat('Idle cost over the period', 'Unallocated capacity cost (chargeback_node_idle_cost_total) over the period.', 'sum(increase(chargeback_node_idle_cost_total{%s}[$__range]))' % s, m),
      g.stat('Idle share', "Idle cost as a share of the nodes' cost.", 'sum(increase(chargeback_node_idle_cost_total{%s}[$__range])) / sum(increase(chargeback_cluster_cost_total{%s, resource=~"cpu|memory|gpu"}[$__range]))' % [s, s], 'percentunit'),
      g.stat('Nodes priced at default rates', 'Nodes with no price-book rule, OpenCost price or shipped price (see chargeback prices).', 'sum(chargeback_nodes_default_priced{%s})' % s, 'none'),
      g.stat('Unallocated capacity per hour', 'What idle capacity costs per hour now.', 'sum(rate(chargeback_node_idle_cost_total{%s}[$__rate_interval])) * 3600' % s, m),
    ],
    [
      g.bars('Idle by node', 'Idle cost per node over the period.', 'topk(20, sum by (node) (increase(chargeback_node_idle_cost_total{%s}[$__range])))' % s, '{{node}}', m),
      g.bars('Idle by node type', 'Idle cost per instance type over the period.', 'sort_desc(sum by (instance_type) (increase(chargeback_node_idle_cost_total{%s}[$__range]) * on (node) group_left (instance_type) (%s > bool 0)))' % [s, types], '{{instance_type}}', m),
    ],
    [
      g.timeseries('Unallocated capacity cost by resource', 'Idle cost per hour by resource.', [g.target('sum by (resource) (rate(chargeback_node_idle_cost_total{%s}[$__rate_interval])) * 3600' % s, '{{resource}}')], m, stacked=true),
      g.table('Least efficient workloads by wasted cost', 'Namespaces ranked by the hourly cost of CPU they request but do not use.', [
        g.target('topk(10, sum by (namespace) (chargeback_namespace_hourly_cost{%s, component="allocated", resource="cpu", team=~"$team", namespace=~"$namespace"}) * on (namespace) (1 - clamp_max(max by (namespace) (chargeback_namespace_efficiency_ratio{%s, resource="cpu"}), 1)))' % [s, s], '{{namespace}}'),
      ], m, w=12),
    ],
    // GPU waste (docs/gpu-waste.md): allocated GPU cost x (1 - utilisation) seen by dcgm-exporter.
    [
      g.stat('GPU waste over the period', 'Allocated GPU cost that paid for GPU time dcgm-exporter saw idle (chargeback_namespace_gpu_waste_cost_total): a view on the GPU cost, not extra cost.', 'sum(increase(%s[$__range]))' % waste, m),
      g.stat('Share of GPU cost wasted', 'GPU waste over the allocated GPU cost: 1 - utilisation where dcgm-exporter sees every GPU.', 'sum(increase(%s[$__range])) / sum(increase(chargeback_namespace_cost_total{%s, component="allocated", resource="gpu"}[$__range]))' % [waste, s], 'percentunit'),
      g.bars('GPU waste by namespace', 'The namespaces whose GPUs sat idle at the highest cost over the period.', 'topk(10, sum by (namespace) (increase(%s[$__range])))' % waste, '{{namespace}}', m),
    ],
    [
      g.timeseries('GPU efficiency by namespace', 'Busy over observed GPU time (dcgm-exporter) of the GPUs each namespace holds, per accrual interval.', [g.target('max by (namespace) (chargeback_namespace_gpu_efficiency_ratio{%s, namespace=~"$namespace"})' % s, '{{namespace}}')], 'percentunit', w=24),
    ],
  ])
