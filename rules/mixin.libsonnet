(import 'config.libsonnet') +
(import 'rules/recording.libsonnet') +
(import 'rules/allocation.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'alerts/budgets.libsonnet') +
(import 'alerts/gpu.libsonnet') +
(import 'alerts/carbon.libsonnet')
