"""The synthetic clusters of `make demo` and `make bench` (the model and its series are in synthetic.py).

demo_cluster is the demo's and many tests' cluster, hand-worked in tests/test_demo_cluster.py: keep its
seeded draws in order. bench_cluster is the large, random, seeded one of bench/.
"""

from __future__ import annotations

import random
from dataclasses import replace
from functools import partial

from demo.synthetic import GIB, Cluster, Container, Dcgm, Gap, Node, Pod, Series, uid_of


def demo_cluster(seed: int = 7, ksm_gap_at: int | None = None, released_deleted_at: int | None = None) -> Cluster:
    """Six teams, shared platform namespaces, on-demand, spot, GPU and total-priced nodes.

    payments also owns payments-batch; web-shared is split between web and growth by pod labels, so
    `--aggregate team` differs from namespace. `ksm_gap_at` silences kube-state-metrics for 10 minutes
    from then (an OOM-kill), which the allocation bridges. `released_deleted_at` is the last timestamp the
    released volume pv-released-2023 (no claim: `__unmounted__`) exists; None keeps it throughout."""
    rnd = random.Random(seed)
    it, cap = "node.kubernetes.io/instance-type", "karpenter.sh/capacity-type"
    zone = "topology.kubernetes.io/zone"
    nodes = [
        Node(f"ip-10-0-1-{i}", 8, 32 * GIB, labels={it: "m5.2xlarge", cap: "on-demand", zone: "us-east-1a"},
             opencost={"cpu": 0.031611, "ram": 0.004237})
        for i in range(1, 5)
    ] + [
        Node(f"ip-10-0-2-{i}", 8, 32 * GIB, labels={it: "m5.2xlarge", cap: "spot", zone: "us-east-1b"})
        for i in range(1, 3)
    ] + [
        # GPU feature discovery's count label: OpenCost's suite (TestGPUInfo) finds GPU allocations by it.
        Node("ip-10-0-3-1", 8, 61 * GIB, gpus=1, labels={it: "p3.2xlarge", cap: "on-demand", zone: "us-east-1a",
                                                        "nvidia.com/gpu.count": "1"}),
        Node("ip-10-0-4-1", 4, 16 * GIB, labels={it: "m5.xlarge", cap: "on-demand", zone: "us-east-1c"}),
    ]
    general = [n.name for n in nodes[:6]]
    teams = {
        "payments": ("api", "worker", "ledger"),
        "search": ("indexer", "query"),
        "data-eng": ("etl", "airflow", "spark"),
        "ml": ("trainer", "serving"),
        "web": ("frontend", "bff"),
        "growth": ("experiments", "email"),
    }
    pods: list[Pod] = []
    for team, apps in teams.items():
        for app in apps:
            for r in range(rnd.randint(1, 3)):
                cpu_req = rnd.choice((0.25, 0.5, 1.0, 2.0))
                mem_req = rnd.choice((0.5, 1.0, 2.0, 4.0)) * GIB
                use = rnd.uniform(0.2, 1.3)  # some over-request, some burst past requests
                node = "ip-10-0-3-1" if app == "trainer" else rnd.choice(general)
                # ip-10-0-3-1 has one V100: the first trainer requests it (fully requested), the others prepare data
                c = Container(app, cpu_req, mem_req, 1.0 if app == "trainer" and r == 0 else 0.0,
                              cpu_req * use, mem_req * rnd.uniform(0.4, 1.1), wave=0.4, mem_limit=2 * mem_req)
                kind = {"etl": "CronJob", "spark": "StatefulSet"}.get(app, "Deployment")
                pods.append(Pod(team, f"{app}-{r}", node, (c,), labels={"team": team, "app": app}, owner=(kind, app),
                                annotations={"example.com/owner": f"{team}@example.com"}))
    platform = {"kube-system": ("coredns", "kube-proxy"), "monitoring": ("prometheus", "grafana"),
                "ingress-nginx": ("controller",)}
    for ns, apps in platform.items():
        for app in apps:
            kind = {"kube-proxy": "DaemonSet", "prometheus": "StatefulSet"}.get(app, "Deployment")
            pods.append(Pod(ns, f"{app}-0", rnd.choice([*general, "ip-10-0-4-1"]),
                            (Container(app, 0.5, 1 * GIB, 0, 0.3, 0.8 * GIB, wave=0.2),), owner=(kind, app)))
    centers = {"payments": "CC-100", "search": "CC-200", "data-eng": "CC-300", "ml": "CC-300", "web": "CC-400",
               "growth": "CC-400"}
    namespaces = {team: {"team": team, "cost-center": centers[team], "environment": "prod"} for team in teams}
    namespaces.update({ns: {"platform": "true"} for ns in platform})
    # Added after the seeded draws above, on fixed nodes, so the first pods stay as they were.
    c_batch = Container("settlement", 1.0, 2 * GIB, 0, 0.6, 1.5 * GIB)
    pods.append(Pod("payments-batch", "settlement-0", "ip-10-0-1-4", (c_batch,), owner=("CronJob", "settlement")))
    for app, team, node in (("landing", "web", "ip-10-0-1-3"), ("newsletter", "growth", "ip-10-0-2-2")):
        c = Container(app, 0.5, 1 * GIB, 0, 0.3, 0.75 * GIB)
        pods.append(Pod("web-shared", f"{app}-0", node, (c,), labels={"team": team, "app": app},
                        owner=("Deployment", app)))
    # A CronJob's finished run, kept by its history limit: Succeeded throughout, still exporting its requests.
    pods.append(Pod("data-eng", "etl-done-0", "ip-10-0-1-1", (Container("etl", 0.5, 1 * GIB),), end=0,
                    labels={"team": "data-eng", "app": "etl"}, owner=("CronJob", "etl")))
    namespaces["payments-batch"] = {"team": "payments", "cost-center": "CC-100", "environment": "prod"}
    namespaces["web-shared"] = {"cost-center": "CC-400", "environment": "prod"}
    requests = tuple(
        Series("nginx_ingress_controller_requests", {"job": "ingress-nginx", "exported_namespace": ns}, rate)
        for ns, rate in (("payments", 40.0), ("search", 120.0), ("web", 200.0), ("growth", 30.0))
    )
    gaps = (Gap("ksm", ksm_gap_at, ksm_gap_at + 600),) if ksm_gap_at is not None else ()
    # A budget declared next to its namespace (kube-state-metrics --metric-annotations-allowlist).
    notes = {"web": {"chargeback.io/budget-monthly": "60", "chargeback.io/budget-notify": "slack:#web"}}
    # Pod IPs, and the Services whose Endpoints list them (kube_pod_info{pod_ip}, kube_endpoint_address), as
    # kube-state-metrics exports them: pod-level answers give a load balancer's cost to the pods behind it.
    pods = [replace(p, ip=f"10.1.{i >> 8 & 255}.{i & 255}", services=tuple(
        svc for ns, svc, _k in SERVICES if ns == p.namespace and p.name.rsplit("-", 1)[0] == svc))
        for i, p in enumerate(pods, start=1)]
    return Cluster(tuple(nodes), tuple(pods), namespaces, requests + _demo_assets(rnd, released_deleted_at), gaps=gaps,
                   namespace_annotations=notes, opencost=True, cadvisor_node=True, pause=False)


# The demo config's storage prices per GiB-month (demo/run.py; "" has none: OpenCost's default 0.04), which
# OpenCost's pv_hourly_cost states per GiB-hour over the config's 730-hour month; its load balancer price.
GIB_MONTH = {"gp3": 0.08, "gp2": 0.10, "io2": 0.125, "": 0.04}
LB_HOURLY = 0.0225
SERVICES = (("web", "frontend", "LoadBalancer"), ("payments", "api", "LoadBalancer"),
            ("ingress-nginx", "controller", "LoadBalancer"), ("search", "query", "ClusterIP"))
# The pod whose traffic cAdvisor reports for each namespace (each the first replica, there throughout).
SENT_BY = {"payments": "api-0", "search": "query-0", "data-eng": "airflow-0", "ml": "serving-0", "web": "frontend-0",
           "growth": "email-0", "monitoring": "prometheus-0"}
MOUNTED_BY = {"payments": "ledger-0", "search": "indexer-0", "data-eng": "spark-0", "ml": "trainer-0",
              "monitoring": "prometheus-0"}


def _demo_assets(rnd: random.Random, released_deleted_at: int | None = None) -> tuple[Series, ...]:
    """Volumes, LoadBalancer Services and network traffic for the demo cluster. pv-released-2023, released by
    its claim with reclaimPolicy Retain, has no claim: its cost is `__unmounted__`'s until an admin deletes it
    (`released_deleted_at`, its last timestamp): then kube-state-metrics and OpenCost stop exporting it."""
    ksm = {"job": "kube-state-metrics", "instance": "ksm:8080"}
    out: list[Series] = []
    volumes = (("pv-payments-db", 100, "gp3", "payments"), ("pv-search-index", 200, "gp3", "search"),
               ("pv-data-lake", 500, "", "data-eng"), ("pv-ml-datasets", 300, "io2", "ml"),
               ("pv-prometheus", 150, "gp3", "monitoring"), ("pv-released-2023", 40, "gp2", None))
    for name, gib, sc, ns in volumes:
        uid = uid_of("persistentvolume", name)
        pv = {**ksm, "persistentvolume": name}
        gone: tuple[tuple[int, float | None], ...] = ()
        if ns is None and released_deleted_at is not None:
            gone = ((released_deleted_at + 1, None),)
        vol = partial(Series, changes=gone)
        out.append(vol("kube_persistentvolume_capacity_bytes", {**pv, "uid": uid}, base=gib * GIB))
        out.append(vol("kube_persistentvolume_info", {**pv, "uid": uid, "storageclass": sc}, base=1))
        oc = {"job": "opencost", "instance": "opencost:9003", "persistentvolume": name,
              "provider_id": f"vol-{uid[:8]}"}
        out.append(vol("kubecost_pv_info", {**oc, "uid": uid, "storageclass": sc}, base=1))
        out.append(vol("pv_hourly_cost", {**oc, "volumename": name}, base=GIB_MONTH[sc] / 730))
        if ns:
            out.append(Series("kube_persistentvolume_claim_ref", {**pv, "claim_namespace": ns, "name": "data"}, base=1))
            pvc = {**ksm, "namespace": ns, "persistentvolumeclaim": "data", "uid": uid_of("pvc", ns, "data")}
            out.append(Series("kube_persistentvolumeclaim_info", {**pvc, "storageclass": sc, "volumename": name},
                              base=1))
            out.append(Series("kube_persistentvolumeclaim_resource_requests_storage_bytes", pvc, base=gib * GIB))
            # The pod that mounts the claim (every namespace's first replica exists throughout).
            pod = {**ksm, "namespace": ns, "pod": MOUNTED_BY[ns]}
            out.append(Series("kube_pod_spec_volumes_persistentvolumeclaims_info",
                              {**pod, "uid": uid_of("pod", ns, MOUNTED_BY[ns]), "volume": "data",
                               "persistentvolumeclaim": "data"}, base=1))
            out.append(Series("pod_pvc_allocation", {"job": "opencost", "instance": "opencost:9003", **pod,
                                                     "persistentvolumeclaim": "data", "persistentvolume": name},
                              base=gib * GIB))
    for ns, svc, kind in SERVICES:
        out.append(Series("kube_service_spec_type", {**ksm, "namespace": ns, "service": svc, "type": kind}, base=1))
        out.append(Series("service_selector_labels", {"job": "opencost", "instance": "opencost:9003", "namespace": ns,
                                                      "service": svc, "uid": uid_of("service", ns, svc),
                                                      "label_app": svc}, base=1))
        if kind == "LoadBalancer":
            ip = f"203.0.113.{len(out) % 250}"
            out.append(Series("kubecost_load_balancer_cost", {"job": "opencost", "instance": "opencost:9003",
                                                              "namespace": ns, "service_name": svc, "ingress_ip": ip},
                              base=LB_HOURLY))
    cad = {"job": "kubelet", "metrics_path": "/metrics/cadvisor", "container": "", "interface": "eth0"}
    for ns in ("payments", "search", "data-eng", "ml", "web", "growth", "monitoring"):
        gib_per_hour = rnd.uniform(0.5, 8.0)
        out.append(Series("container_network_transmit_bytes_total", {**cad, "namespace": ns, "pod": SENT_BY[ns]},
                          gib_per_hour * GIB / 3600))
    return tuple(out)


def bench_cluster(containers: int, nodes: int, namespaces: int, seed: int = 1) -> Cluster:
    """A large cluster: two containers per pod, pods placed at random (seeded) over nodes and namespaces.
    Every ten pods of a namespace are a Deployment (labels team and app, an IP, a Service), for pod-level
    allocation; the metadata is derived from the index, so placement is the same with or without it."""
    rnd = random.Random(seed)
    node_objs = tuple(
        Node(f"node-{i:05d}", 32, 128 * GIB, labels={"node.kubernetes.io/instance-type": "m5.8xlarge"},
             opencost={"cpu": 0.03, "ram": 0.004} if i % 2 else {})
        for i in range(nodes)
    )
    pods = []
    for i in range(containers // 2):
        cs = tuple(Container(f"c{j}", 0.25, 0.5 * GIB, 0, rnd.uniform(0.05, 0.5), 0.4 * GIB) for j in range(2))
        ns, node = rnd.randrange(namespaces), rnd.randrange(nodes)
        app = f"app-{i // 10:05d}"
        pods.append(Pod(f"ns-{ns:04d}", f"pod-{i:06d}", node_objs[node].name, cs, labels={"team": f"t{ns % 7}",
                        "app": app}, owner=("Deployment", app), ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                        services=(app,)))
    return Cluster(node_objs, tuple(pods))


# GPU feature discovery's node labels (the names kube-state-metrics must allow-list).
GFD_PRODUCT, GFD_COUNT, GFD_REPLICAS = "nvidia.com/gpu.product", "nvidia.com/gpu.count", "nvidia.com/gpu.replicas"
GFD_MIG, GFD_SHARING = "nvidia.com/mig.strategy", "nvidia.com/gpu.sharing-strategy"


def gpu_nodes() -> tuple[tuple[Node, ...], tuple[Pod, ...]]:
    """Three GPU nodes, each shared its own way, hand-worked in tests/test_gpu.py:

    * gpu-a100-mig: one A100 80GB in MIG mixed mode, a 3g.40gb slice (ml) and two of four 1g.10gb
      slices (search) used, two 1g.10gb slices free;
    * gpu-l4-ts: one L4 time-sliced 4 ways, every replica used (ml two, search two), under GFD's
      renameByDefault=true: replicas advertised and requested as nvidia.com/gpu.shared;
    * gpu-h100: eight whole H100s, 4 for ml, 4 for data-eng (one finetune pod); OpenCost prices the GPU.

    The L4 and H100 nodes are fully requested, as expensive autoscaled GPU nodes usually are: their waste
    shows in dcgm-exporter's utilisation (the H100s 35 % busy), not in unrequested devices.
    """
    it = "node.kubernetes.io/instance-type"
    nodes = (
        Node("gpu-a100-mig", 12, 170 * GIB, labels={
            it: "a2-ultragpu-1g", GFD_PRODUCT: "NVIDIA-A100-SXM4-80GB", GFD_COUNT: "1", GFD_MIG: "mixed"},
            resources={"nvidia_com_mig_3g_40gb": 1, "nvidia_com_mig_1g_10gb": 4}),
        # GFD's renameByDefault=true: the 4 replicas are advertised (and requested) as nvidia.com/gpu.shared.
        Node("gpu-l4-ts", 4, 16 * GIB, gpus=4, gpu_resource="nvidia_com_gpu_shared", labels={
            it: "g6.xlarge", GFD_PRODUCT: "NVIDIA-L4-SHARED", GFD_COUNT: "1", GFD_REPLICAS: "4",
            GFD_SHARING: "time-slicing"}),
        Node("gpu-h100", 192, 2048 * GIB, gpus=8, labels={it: "p5.48xlarge", GFD_PRODUCT: "NVIDIA-H100-80GB-HBM3",
                                                        GFD_COUNT: "8"},
             opencost={"cpu": 0.03, "ram": 0.004, "gpu": 6.0}, dcgm=Dcgm("NVIDIA H100 80GB HBM3", 81559)),
    )

    def pod(ns: str, name: str, node: str, cpu: float, gib: float, gpus: float = 0.0, **res: float) -> Pod:
        shared = node == "gpu-l4-ts"  # a replica: OpenCost's container_gpu_allocation is its 1/4 of the L4
        c = Container(name.rsplit("-", 1)[0], cpu, gib * GIB, gpus, cpu * 0.6, gib * GIB * 0.7, resources=res,
                      gpu_util=0.35 if node == "gpu-h100" else 0.0, gpu_fb_mib=40960 if node == "gpu-h100" else 0.0,
                      gpu_resource="nvidia_com_gpu_shared" if shared else "nvidia_com_gpu",
                      gpu_allocation=gpus / 4 if shared else None)
        return Pod(ns, name, node, (c,), labels={"team": ns, "app": c.name}, owner=("Deployment", c.name))

    pods = (
        pod("ml", "trainer-mig-0", "gpu-a100-mig", 4, 32, nvidia_com_mig_3g_40gb=1),
        pod("search", "embed-0", "gpu-a100-mig", 1, 8, nvidia_com_mig_1g_10gb=1),
        pod("search", "embed-1", "gpu-a100-mig", 1, 8, nvidia_com_mig_1g_10gb=1),
        pod("ml", "serving-l4-0", "gpu-l4-ts", 0.5, 2, gpus=1),
        pod("ml", "serving-l4-1", "gpu-l4-ts", 0.5, 2, gpus=1),
        pod("search", "rerank-0", "gpu-l4-ts", 0.5, 2, gpus=1),
        pod("search", "rerank-1", "gpu-l4-ts", 0.5, 2, gpus=1),
        pod("ml", "trainer-h100-0", "gpu-h100", 64, 512, gpus=4),
        # One pod per GPU container name: OpenCost's suite (TestGPUInfo) keys GPU containers by name alone, so two
        # replicas of a multi-GPU container would be compared by whichever device row each side saw last.
        pod("data-eng", "finetune-0", "gpu-h100", 64, 512, gpus=4),
    )
    return nodes, pods


def with_gpu_nodes(cluster: Cluster) -> Cluster:
    """`cluster` plus the three GPU nodes and their tenants (the demo's GPU node shared by two teams)."""
    nodes, pods = gpu_nodes()
    return replace(cluster, nodes=cluster.nodes + nodes, pods=cluster.pods + pods)
