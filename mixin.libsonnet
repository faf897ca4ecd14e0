// The chargeback monitoring mixin: recording rules, alerts and Grafana dashboards from one root with one
// hidden _config (rules/config.libsonnet), as kubernetes-mixin does. Override it like any mixin:
//   (import 'chargeback/mixin.libsonnet') + { _config+:: { chargebackSelector: 'job="cost"' } }
(import 'rules/mixin.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
