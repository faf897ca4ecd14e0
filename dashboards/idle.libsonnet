local g = import 'lib/g.libsonnet';
function(c)
  local cl = c.clusterLabel;
  local s = '%s, %s=~"$cluster"' % [c.chargebackSelector, cl];
  local m = c.currencyUnit;
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
  ])
