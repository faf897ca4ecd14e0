// One entry point, as in kube-prometheus: every object in deploy/manifests/, one file each.
local kp = (import 'chargeback.libsonnet') + { _config+:: {} };
local rules = (import '../../rules/lib/prometheusrule.jsonnet')([], {}, kp._config.namespace);
local dashboards = (import '../../dashboards/lib/dashboards.jsonnet')();
local dashboardConfigMap(file) = {
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name: 'grafana-dashboard-' + std.strReplace(file, '.json', ''), namespace: kp._config.namespace, labels: { grafana_dashboard: '1', 'app.kubernetes.io/name': 'chargeback' } },
  data: { [file]: std.manifestJsonEx(dashboards[file], '  ') },
};
{ ['chargeback-' + std.asciiLower(std.strReplace(k, 'Role', '-role')) + '.yaml']: kp.chargeback[k] for k in std.objectFields(kp.chargeback) } +
{ 'chargeback-prometheusrule.yaml': rules } +
{ ['grafana-dashboard-' + std.strReplace(f, '.json', '.yaml')]: dashboardConfigMap(f) for f in std.objectFields(dashboards) } +
{ 'kyverno-require-cost-labels.yaml': std.parseYaml(importstr '../kyverno-require-cost-labels.yaml') }
