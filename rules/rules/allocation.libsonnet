// Per-(namespace, node) allocation, requests and usage, recorded every rule interval so that
// `chargeback allocate` over long windows reads a few recorded series instead of joining every
// container at every step. One rule records the rows of the raw path's one-pass query over CPU and
// memory as one labelled series, namespace_node:chargeback_allocation:sum{resource, part}: one placement
// join per evaluation. The expressions have one definition, the exporter's (exporter/sources/recordrules.py):
// `make rules` renders them per policy into allocation_exprs.json (python -m exporter.mixin.rulegen),
// and this file only fills in the _config.
{
  prometheusRules+:: {
    local c = $._config,
    local exprs = import 'allocation_exprs.json',
    local policy = if c.allocationPolicy == 'weighted' then 'weighted:%g' % c.requestWeight else c.allocationPolicy,
    // A selector placeholder always follows other matchers: with an empty selector it goes with its comma.
    local selector(expr, placeholder, value) =
      std.strReplace(std.strReplace(expr, ',' + placeholder, if value == '' then '' else ',' + value), placeholder, value),
    local fill(expr) =
      local withSelectors = selector(selector(expr, '__KSM_SELECTOR__', c.kubeStateMetricsSelector),
                                     '__CADVISOR_SELECTOR__',
                                     c.cadvisorSelector);
      std.foldl(function(e, kv) std.strReplace(e, kv[0], kv[1]), [
        ['__USAGE_RATE_WINDOW__', c.usageRateWindow],
        ['__REQUEST_WEIGHT__', '%g' % c.requestWeight],
        ['__USAGE_WEIGHT__', '%g' % (1 - c.requestWeight)],
        ['__POLICY__', policy],
      ], withSelectors),
    local labels = { policy: policy, usage_rate_window: c.usageRateWindow },
    local templates = exprs[c.allocationPolicy],
    groups+: if !c.allocationRules then [] else [{
      name: 'chargeback-allocation.rules',
      interval: c.allocationRuleInterval,
      // No GPUs: what each container holds of physical devices is read per container on every path.
      // One rule for CPU and memory (one placement join): each series' `resource` label is the expression's.
      rules: [
        {
          record: 'namespace_node:chargeback_allocation:sum',
          expr: fill(templates.allocation[group]),
          labels: labels,
        }
        for group in std.objectFields(templates.allocation)
      ] + [{
        // One sample per evaluation: the exporter reads the recorded series only where this
        // heartbeat shows the rules ran at every step; layout="v2" says they were the labelled record.
        record: 'cluster:chargeback_allocation_rules_evaluated:count',
        expr: 'vector(1)',
        labels: labels { layout: 'v2' },
      }] + if !c.allocationDeprecatedRecords then [] else [
        // Deprecated, for one release: the per-pair names recorded before, selected from the labelled
        // record written just above in the same evaluation (no join). Backfilling them with promtool
        // needs a second pass, once the labelled record is in the TSDB.
        { record: record, expr: fill(templates.deprecated[record]), labels: labels }
        for record in std.objectFields(templates.deprecated)
      ],
    }],
  },
}
