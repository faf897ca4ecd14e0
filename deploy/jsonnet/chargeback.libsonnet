// The chargeback exporter's Kubernetes objects, kube-prometheus style: one hidden _config.
{
  _config+:: {
    namespace: 'monitoring',
    name: 'chargeback',
    // The image is pinned by digest, never a tag, so every replica and CronJob runs the same bytes.
    // PLACEHOLDER: no image is published yet. Build one (see Dockerfile) and set imageDigest to the
    // digest your registry reports, e.g. `crane digest ghcr.io/you/chargeback:0.1.0` (README "Deployment").
    imageRepo: 'ghcr.io/chargeback/chargeback',
    imageDigest: 'sha256:0000000000000000000000000000000000000000000000000000000000000000',
    image: $._config.imageRepo + '@' + $._config.imageDigest,
    replicas: 2,  // only the Lease holder accrues; the other is a warm standby
    port: 9184,
    // Merged into the ServiceMonitor endpoint when the exporter's api section turns on TLS or auth (README
    // "Limits and authentication"), e.g. { scheme: 'https', tlsConfig: { ca: { secret: { name: 'chargeback-tls',
    // key: 'ca.crt' } } }, authorization: { type: 'Bearer', credentials: { name: 'chargeback-scrape', key: 'token' } } }.
    scrapeAuth: {},
    // Sized from `make bench`: peak RSS 51 MB at 1k containers, 65 MB at 10k, 253 MB at 100k (README "Scale").
    resources: { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '512Mi' } },
    prometheusURL: 'http://prometheus-operated.monitoring.svc:9090',
    // Who may scrape us: pods matching prometheusSelector IN namespaces matching prometheusNamespaceSelector
    // (one NetworkPolicy peer, so both must match). The same peer is where we send queries.
    prometheusSelector: { 'app.kubernetes.io/name': 'prometheus' },
    prometheusNamespaceSelector: { 'kubernetes.io/metadata.name': 'monitoring' },
    prometheusPort: 9090,
    // Egress. NetworkPolicy cannot select the API server (it is not a pod) and applies after the Service's
    // DNAT on most CNIs, so the API is reached on the endpoint's port: 443 on managed clusters, 6443 on
    // kubeadm. With apiServerCIDRs empty the rule is port-only (any address on those ports); set it to
    // your control plane's addresses (kubectl get endpoints kubernetes) to narrow it to an ipBlock.
    apiServerPorts: [443, 6443],
    apiServerCIDRs: [],
    dnsSelector: { namespace: { 'kubernetes.io/metadata.name': 'kube-system' }, pod: { 'k8s-app': 'kube-dns' } },
    // Report delivery (the report and reconcile CronJobs only): HTTPS for Slack/Teams/webhooks, SMTP submission.
    // Add 465 (SMTPS) or 25 if your relay uses them; set deliveryCIDRs to your relay's/proxy's addresses.
    deliveryPorts: [443, 587],
    deliveryCIDRs: [],
    tmpSizeLimit: '64Mi',  // /tmp holds only matplotlib's cache and the report chart
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
            volumes: [{ name: 'config', configMap: { name: c.name + '-config' } }, { name: 'tmp', emptyDir: { sizeLimit: c.tmpSizeLimit } }],
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
        // honorLabels: the exporter's `namespace` label names the tenant, not the exporter's own pod; without
        // it the operator's target label displaces it to `exported_namespace` (as kube-state-metrics does).
        endpoints: [{ port: 'http', interval: '60s', scrapeTimeout: '30s', honorLabels: true } + c.scrapeAuth],
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
            volumes: [{ name: 'config', configMap: { name: c.name + '-config' } }, { name: 'tmp', emptyDir: { sizeLimit: c.tmpSizeLimit } }],
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

    // Ingress only from Prometheus in the monitoring namespace; egress only to DNS, Prometheus and the API.
    networkPolicy: {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta('np'),
      spec: {
        podSelector: { matchLabels: labels },
        policyTypes: ['Ingress', 'Egress'],
        ingress: [{
          // One peer with both selectors: the pod must match AND be in a matching namespace. (Two
          // peers would OR them: any pod labelled prometheus, in any namespace, would be admitted.)
          from: [prometheusPeer],
          ports: [{ port: 'http', protocol: 'TCP' }],
        }],
        egress: baseEgress,
      },
    },

    // The report and reconcile CronJobs: no ingress at all; egress as the exporter's plus report delivery.
    reportNetworkPolicy: {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta('np') { name: c.name + '-report', labels+: { 'app.kubernetes.io/component': 'report' } },
      spec: {
        podSelector: { matchLabels: labels { 'app.kubernetes.io/component': 'report' } },
        policyTypes: ['Ingress', 'Egress'],
        ingress: [],
        egress: baseEgress + [
          { ports: [{ port: p, protocol: 'TCP' } for p in c.deliveryPorts] } + cidrs(c.deliveryCIDRs),
        ],
      },
    },
  },

  local prometheusPeer = {
    namespaceSelector: { matchLabels: c.prometheusNamespaceSelector },
    podSelector: { matchLabels: c.prometheusSelector },
  },
  local cidrs(list) = if std.length(list) == 0 then {} else { to: [{ ipBlock: { cidr: x } } for x in list] },
  local baseEgress = [
    {
      to: [{ namespaceSelector: { matchLabels: c.dnsSelector.namespace }, podSelector: { matchLabels: c.dnsSelector.pod } }],
      ports: [{ port: 53, protocol: 'UDP' }, { port: 53, protocol: 'TCP' }],
    },
    { to: [prometheusPeer], ports: [{ port: c.prometheusPort, protocol: 'TCP' }] },
    { ports: [{ port: p, protocol: 'TCP' } for p in c.apiServerPorts] } + cidrs(c.apiServerCIDRs),
  ],
}
