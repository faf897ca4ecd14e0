// The dashboards of the mixin, without a _config: mixin.libsonnet (here and at the repository root) adds it.
{
  grafanaDashboards+:: {
    'chargeback-overview.json': (import 'overview.libsonnet')($._config),
    'chargeback-team.json': (import 'team.libsonnet')($._config),
    'chargeback-idle.json': (import 'idle.libsonnet')($._config),
    'chargeback-budgets.json': (import 'budgets.libsonnet')($._config),
    'chargeback-clusters.json': (import 'clusters.libsonnet')($._config),
  },
}
