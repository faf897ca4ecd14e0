// The chargeback exporter's Kubernetes objects, kube-prometheus style: one hidden _config.
{
  _config+:: {
    namespace: 'monitoring',
    name: 'chargeback',
    image: 'ghcr.io/chargeback/chargeback:0.1.0',
    replicas: 2,  // only the Lease holder accrues; the other is a warm standby
    port: 9184,
    // Merged into the ServiceMonitor endpoint when the exporter's api section turns on TLS or auth (README
    // "Limits and authentication"), e.g. { scheme: 'https', tlsConfig: { ca: { secret: { name: 'chargeback-tls',
    // key: 'ca.crt' } } }, authorization: { type: 'Bearer', credentials: { name: 'chargeback-scrape', key: 'token' } } }.
    scrapeAuth: {},
    // Sized from `make bench`: peak RSS 51 MB at 1k containers, 65 MB at 10k, 253 MB at 100k (README "Scale").
    resources: { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '512Mi' } },
    prometheusURL: 'http://prometheus-operated.monitoring.svc:9090',
    prometheusSelector: { 'app.kubernetes.io/name': 'prometheus' },
    // The exporter's config.yaml (see README "Configuration").
    exporterConfig: {
      prometheus: { url: $._config.prometheusURL },
      serve: { listen: '0.0.0.0:%d' % $._config.port, leaderElection: { enabled: true, namespace: $._config.namespace, name: $._config.name } },
    },
  },

  local c = $._config,
  local labels = { 'app.kubernetes.io/name': c.name, 'app.kubernetes.io/component': 'exporter' },
  local meta(kind) = { name: c.name, namespace: c.namespace, labels: labels },

  chargeback+:: {
    namespace: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: c.namespace } },

    serviceAccount: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta('sa'), automountServiceAccountToken: true },

    clusterRole: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: c.name, labels: labels },
      rules: [{
        apiGroups: [''],
        resources: ['namespaces', 'pods', 'nodes', 'persistentvolumes', 'persistentvolumeclaims', 'services'],
        verbs: ['get', 'list', 'watch'],
      }],
    },
    clusterRoleBinding: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: c.name, labels: labels },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: c.name },
      subjects: [{ kind: 'ServiceAccount', name: c.name, namespace: c.namespace }],
    },
    // Leader election: the only write access, to one Lease in our namespace.
    leaseRole: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: meta('role') { name: c.name + '-leader-election' },
      rules: [
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [c.name], verbs: ['get', 'update'] },
      ],
    },
    leaseRoleBinding: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta('rb') { name: c.name + '-leader-election' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: c.name + '-leader-election' },
      subjects: [{ kind: 'ServiceAccount', name: c.name, namespace: c.namespace }],
    },

    configMap: {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: meta('cm') { name: c.name + '-config' },
      data: { 'config.yaml': std.manifestYamlDoc(c.exporterConfig) },
    },

    deployment: {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: meta('deploy'),
      spec: {
        replicas: c.replicas,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels: labels },
          spec: {
            serviceAccountName: c.name,
            securityContext: { runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534, fsGroup: 65534, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [{
              name: 'chargeback',
              image: c.image,
              args: ['serve', '--config', '/etc/chargeback/config.yaml'],
              env: [
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                { name: 'HOME', value: '/tmp' },
                { name: 'MPLCONFIGDIR', value: '/tmp' },
              ],
              ports: [{ name: 'http', containerPort: c.port }],
              resources: c.resources,
              securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
              // Liveness is the accrual loop cycling, never "Prometheus is up": an outage must not crash-loop us.
              livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 30, failureThreshold: 5 },
              readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10 },
              volumeMounts: [{ name: 'config', mountPath: '/etc/chargeback', readOnly: true }, { name: 'tmp', mountPath: '/tmp' }],
            }],
            volumes: [{ name: 'config', configMap: { name: c.name + '-config' } }, { name: 'tmp', emptyDir: {} }],
          },
        },
      },
    },

    service: {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta('svc'),
      spec: { selector: labels, ports: [{ name: 'http', port: c.port, targetPort: 'http' }] },
    },

    serviceMonitor: {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'ServiceMonitor',
      metadata: meta('sm'),
      spec: {
        selector: { matchLabels: labels },
        // job="chargeback" is what the rules, dashboards and watermark read-back select on.
        jobLabel: 'app.kubernetes.io/name',
        endpoints: [{ port: 'http', interval: '60s', scrapeTimeout: '30s' } + c.scrapeAuth],
      },
    },

    // Weekly showback, Monday 09:00 UTC. Webhook URLs and the SMTP password come from this Secret.
    reportCronJob: {
      apiVersion: 'batch/v1',
      kind: 'CronJob',
      metadata: meta('cron') { name: c.name + '-weekly-report' },
      spec: {
        schedule: '0 9 * * 1',
        timeZone: 'Etc/UTC',
        concurrencyPolicy: 'Forbid',
        jobTemplate: { spec: { backoffLimit: 2, template: {
          metadata: { labels: labels { 'app.kubernetes.io/component': 'report' } },
          spec: {
            serviceAccountName: c.name,
            restartPolicy: 'OnFailure',
            securityContext: { runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [{
              name: 'report',
              image: c.image,
              args: ['report', '--config', '/etc/chargeback/config.yaml', '--window', 'lastweek', '--by', 'team', '--send'],
              env: [{ name: 'HOME', value: '/tmp' }, { name: 'MPLCONFIGDIR', value: '/tmp' }],
              envFrom: [{ secretRef: { name: c.name + '-report-secrets' } }],
              resources: c.resources,
              securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
              volumeMounts: [{ name: 'config', mountPath: '/etc/chargeback', readOnly: true }, { name: 'tmp', mountPath: '/tmp' }],
            }],
            volumes: [{ name: 'config', configMap: { name: c.name + '-config' } }, { name: 'tmp', emptyDir: {} }],
          },
        } } },
      },
    },

    // Monthly reconciliation against the cloud bill, on the 3rd (bills arrive late, credits at month end).
    // Suspended until you provide the exports: a PVC named chargeback-bills (synced from S3, GCS or Azure
    // storage) mounted at /bills. Then set suspend: false.
    reconcileCronJob: self.reportCronJob {
      metadata+: { name: c.name + '-monthly-reconcile' },
      spec+: {
        schedule: '0 6 3 * *',
        suspend: true,
        jobTemplate+: { spec+: { template+: { spec+: {
          containers: [super.containers[0] {
            name: 'reconcile',
            args: ['reconcile', '--config', '/etc/chargeback/config.yaml', '--window', 'lastmonth', '--bill', '/bills/*.csv*'],
            volumeMounts+: [{ name: 'bills', mountPath: '/bills', readOnly: true }],
          }],
          volumes+: [{ name: 'bills', persistentVolumeClaim: { claimName: c.name + '-bills' } }],
        } } } },
      },
    },

    networkPolicy: {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta('np'),
      spec: {
        podSelector: { matchLabels: labels },
        policyTypes: ['Ingress'],
        ingress: [{
          from: [{ podSelector: { matchLabels: c.prometheusSelector }, namespaceSelector: {} }],
          ports: [{ port: 'http', protocol: 'TCP' }],
        }],
      },
    },
  },
}
