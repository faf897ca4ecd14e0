(import 'config.libsonnet') +
(import 'rules/recording.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'alerts/budgets.libsonnet')
