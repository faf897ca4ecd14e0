// Per-(namespace, node) allocation, requests and usage, recorded every rule interval so that
// `chargeback allocate` over long windows reads a few recorded series instead of joining every
// container at every step. The expressions have one definition, the exporter's query builders
// (exporter/sources/queries.py Queries.recording_rules): `make rules` renders them per policy into
// allocation_exprs.json (python -m exporter.mixin.rulegen), and this file only fills in the _config.
{
  prometheusRules+:: {
    local c = $._config,
    local exprs = import 'allocation_exprs.json',
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
      ], withSelectors),
    local labels = {
      policy: if c.allocationPolicy == 'weighted' then 'weighted:%g' % c.requestWeight else c.allocationPolicy,
      usage_rate_window: c.usageRateWindow,
    },
    local templates = exprs[c.allocationPolicy],
    local rule(kind, unit) =
      local record = 'namespace_node:chargeback_%s_%s:sum' % [kind, unit];
      { record: record, expr: fill(templates[record]), labels: labels },
    groups+: if !c.allocationRules then [] else [{
      name: 'chargeback-allocation.rules',
      interval: c.allocationRuleInterval,
      // No GPUs: what each container holds of physical devices is read per container on every path.
      rules: [rule('allocated', unit) for unit in ['cpu_cores', 'memory_bytes']]
             + [rule('requested', unit) for unit in ['cpu_cores', 'memory_bytes']]
             + [rule('used', unit) for unit in ['cpu_cores', 'memory_bytes']]
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
