"""Test scenarios built from the shared synthetic generator, with their inputs spelled out.

Expected amounts are worked out by hand in the tests from these numbers; nothing here
calls the engine.
"""

from __future__ import annotations

from demo.synthetic import GIB, Cluster, Container, Node, Pod, Series

IT = "node.kubernetes.io/instance-type"

# Window under test: (T0, T0 + 1h], one-minute steps. Data starts 30 minutes earlier so
# rate() windows are full, and runs 10 minutes past the end.
WINDOW_SECONDS = 3600


def core_cluster(t0: int) -> Cluster:
    """Five nodes, one per pricing path, and every trap named in the core issue."""
    nodes = (
        # OpenCost pricing metrics: cpu 0.04/core-h, ram 0.005/GiB-h.
        Node("n-od", 4, 16 * GIB, labels={IT: "m5.xlarge"}, opencost={"cpu": 0.04, "ram": 0.005}),
        # Spot by Karpenter label, nothing else: OpenCost default spot rates.
        Node("n-spot", 8, 32 * GIB, labels={IT: "m5.2xlarge", "karpenter.sh/capacity-type": "spot"}),
        # Price-book rule with unit rates (p3.* -> cpu 0.05, ram 0.006, gpu 2.0).
        Node("n-gpu", 8, 64 * GIB, gpus=4, labels={IT: "p3.8xlarge"}),
        # Price-book rule with only the instance total (t3.large -> 0.0832/h).
        Node("n-total", 2, 8 * GIB, labels={IT: "t3.large"}),
        # No source at all: OpenCost default on-demand rates, with a warning.
        Node("n-default", 2, 4 * GIB, labels={IT: "unknown.small"}),
    )
    pods = (
        # n-od: burst uses 4 cores on a 4-core node next to web's 1-core request: 5 > 4, scaled by 0.8.
        Pod("team-a", "web", "n-od", (Container("app", 1, 2 * GIB, 0, 0.5, 1 * GIB),)),
        Pod("team-a", "burst", "n-od", (Container("app", 1, 1 * GIB, 0, 4, 0.5 * GIB),)),
        # n-spot: batch completes after 30 minutes but keeps exporting its requests.
        Pod("team-b", "batch", "n-spot", (Container("job", 2, 4 * GIB, 0, 1, 2 * GIB),), end=t0 + 1800),
        Pod("team-b", "api", "n-spot", (Container("app", 0.5, 1 * GIB, 0, 0.25, 0.5 * GIB),)),
        # n-gpu: one of four GPUs requested.
        Pod("team-c", "train", "n-gpu", (Container("trainer", 4, 32 * GIB, 1, 2, 16 * GIB),)),
        # n-total
        Pod("team-c", "small", "n-total", (Container("app", 0.5, 2 * GIB, 0, 0.1, 1 * GIB),)),
        # n-default: a BestEffort container (no requests) is charged its usage.
        Pod("team-d", "besteffort", "n-default", (Container("app", None, None, 0, 0.25, 0.25 * GIB),)),
        Pod("kube-system", "coredns", "n-default", (Container("coredns", 0.25, 0.25 * GIB, 0, 0.1, 0.125 * GIB),)),
    )
    return Cluster(nodes, pods)


CORE_CONFIG = {
    "pricing": {
        "rules": [
            {"match": {IT: "p3.*"}, "cpu": 0.05, "ram": 0.006, "gpu": 2.0},
            {"match": {IT: "t3.large"}, "hourly": 0.0832},
        ]
    }
}


# ---- sharing & attribution scenario -------------------------------------------------------------
# Two identical nodes priced by OpenCost metrics at cpu 0.10/core-h and ram 0.01/GiB-h.
# Every container uses half its request, so allocation = requests and cost per pod is
# cpu cores x 0.10 + GiB x 0.01 per hour.
SHARE_CPU, SHARE_RAM = 0.10, 0.01


def share_cluster(t0: int) -> Cluster:
    def pod(ns: str, name: str, node: str, cpu: float, gib: float, owner: tuple[str, str] | None = None,
            **labels: str) -> Pod:
        return Pod(ns, name, node, (Container("app", cpu, gib * GIB, 0, cpu / 2, gib * GIB / 2),), labels=labels,
                   owner=owner)

    prices = {"cpu": SHARE_CPU, "ram": SHARE_RAM}
    nodes = (Node("n1", 8, 32 * GIB, opencost=prices), Node("n2", 8, 32 * GIB, opencost=prices))
    pods = (
        pod("payments", "api", "n1", 2, 4, ("Deployment", "payments-api")),  # team from the namespace label
        pod("search", "query", "n1", 1, 2),  # team search
        pod("kube-system", "coredns", "n1", 1, 2),  # shared by name
        pod("web", "frontend", "n2", 1, 2, team="web-a"),  # pod label beats namespace label (web)
        pod("web", "admin", "n2", 0.5, 1, team="web-b"),
        pod("web", "legacy", "n2", 0.5, 1),  # no pod label: namespace label team=web
        pod("monitoring", "prometheus", "n2", 2, 8),  # shared by label platform=true
        pod("tools", "runner", "n2", 1, 2, ("CronJob", "nightly")),  # no label anywhere: __unattributed__
    )
    namespaces = {
        "payments": {"team": "payments", "cost-center": "CC-100"},
        "search": {"team": "search", "cost-center": "CC-200"},
        "web": {"team": "web", "cost-center": "CC-300"},
        "monitoring": {"platform": "true"},
        "kube-system": {},
        "tools": {},
    }
    ingress = tuple(
        Series("nginx_ingress_controller_requests",
                {"job": "ingress-nginx", "exported_namespace": ns, "status": "200"}, slope)
        for ns, slope in (("payments", 3.0), ("search", 1.0), ("web", 1.0))
    )
    return Cluster(nodes, pods, namespaces, ingress)


# ---- assets scenario: price sources, PVs, load balancers, network, multi-GPU ----------------------
ASSET_CONFIG = {
    "pricing": {
        "rules": [
            # One rule for both capacity types of m5.2xlarge: a Savings Plan rate on-demand, a spot price on spot.
            {"match": {IT: "m5.2xlarge"}, "hourly": 0.384, "spotHourly": 0.1152, "effectiveHourly": 0.25},
        ],
        "storage": {"classes": {"gp3": 0.08}},
        "loadBalancer": {"hourly": 0.025},
        "network": {"internetPerGiB": 0.12, "zonePerGiB": 0.01, "regionPerGiB": 0.02,
                    "monthly": [{"name": "nat-gateway", "monthly": 73}]},
    },
    "attribution": {"source": "prometheus"},
}


def asset_cluster(t0: int) -> Cluster:
    spot = {"karpenter.sh/capacity-type": "spot"}
    nodes = (
        Node("n-sp-od", 8, 32 * GIB, labels={IT: "m5.2xlarge", "karpenter.sh/capacity-type": "on-demand"}),
        Node("n-sp-spot", 8, 32 * GIB, labels={IT: "m5.2xlarge", **spot}),
        Node("n-gpu", 32, 244 * GIB, gpus=4, labels={IT: "p3.8xlarge"}),  # shipped price, no GPU price known
        Node("n-shipped", 4, 16 * GIB, labels={IT: "m5.xlarge"}),  # shipped price
    )

    def pod(ns: str, name: str, node: str, cpu: float, gib: float, gpus: float = 0) -> Pod:
        return Pod(ns, name, node, (Container("app", cpu, gib * GIB, gpus, cpu / 4, gib * GIB / 4),))

    pods = (
        pod("payments", "api", "n-sp-od", 2, 8),
        pod("search", "query", "n-sp-spot", 1, 4),
        pod("ml", "train", "n-gpu", 8, 64, gpus=2),
        pod("web", "frontend", "n-shipped", 1, 2),
    )
    ksm = {"job": "kube-state-metrics"}
    oc = {"job": "opencost"}
    cad = {"job": "kubelet", "metrics_path": "/metrics/cadvisor", "container": "", "interface": "eth0"}

    def pv(name: str, gib: float, sc: str, claim: tuple[str, str] | None) -> tuple[Series, ...]:
        out = [Series("kube_persistentvolume_capacity_bytes", {**ksm, "persistentvolume": name}, base=gib * GIB),
               Series("kube_persistentvolume_info", {**ksm, "persistentvolume": name, "storageclass": sc}, base=1)]
        if claim:
            ref = {**ksm, "persistentvolume": name, "claim_namespace": claim[0], "name": claim[1]}
            out.append(Series("kube_persistentvolume_claim_ref", ref, base=1))
        return tuple(out)

    gib_h = GIB / 3600  # bytes per second for 1 GiB an hour
    extra = (
        *pv("pv-gp3", 100, "gp3", ("payments", "data")),
        *pv("pv-noclass", 50, "", ("search", "cache")),  # static/CSI volume with no storage class
        *pv("pv-opencost", 20, "gp3", ("search", "index")),
        *pv("pv-orphan", 10, "gp3", None),  # no claim: __unmounted__
        Series("pv_hourly_cost", {**oc, "persistentvolume": "pv-opencost", "volumename": "pv-opencost"},
               base=0.0002),
        Series("kube_service_spec_type", {**ksm, "namespace": "payments", "service": "api-lb", "type": "LoadBalancer"},
               base=1),
        Series("kube_service_spec_type", {**ksm, "namespace": "search", "service": "web-lb", "type": "LoadBalancer"},
               base=1),
        Series("kube_service_spec_type", {**ksm, "namespace": "search", "service": "internal", "type": "ClusterIP"},
               base=1),
        Series("kubecost_load_balancer_cost", {**oc, "namespace": "payments", "service_name": "api-lb",
                                               "ingress_ip": "10.1.1.1"}, base=0.03),
        # cAdvisor transmit bytes (pod-level): payments 2 GiB/h, search 1 GiB/h; loopback is ignored.
        Series("container_network_transmit_bytes_total", {**cad, "namespace": "payments", "pod": "api"}, 2 * gib_h),
        Series("container_network_transmit_bytes_total", {**cad, "namespace": "search", "pod": "query"}, gib_h),
        Series("container_network_transmit_bytes_total", {**cad, "namespace": "search", "pod": "query",
                                                          "interface": "lo"}, 50 * gib_h),
        # Kubecost network-costs daemonset: classified egress.
        *(Series("kubecost_pod_network_egress_bytes_total",
                 {**oc, "namespace": ns, "pod_name": p, "internet": i, "same_region": r, "same_zone": z}, rate * gib_h)
          for ns, p, i, r, z, rate in (
              ("payments", "api", "true", "false", "false", 0.5),  # internet
              ("payments", "api", "false", "true", "false", 1.0),  # cross-zone
              ("search", "query", "false", "false", "false", 0.25),  # cross-region
              ("search", "query", "false", "true", "true", 4.0),  # same zone: free
          )),
    )
    return Cluster(nodes, pods, {}, extra)


# ---- GPU waste scenario: dcgm-exporter series in its Kubernetes label shape ------------------------
# Price-book rules with unit rates; every pod requests what it holds, constant utilisation all hour.
GPU_WASTE_CONFIG = {
    "pricing": {
        "rules": [
            {"match": {IT: "p4d.24xlarge"}, "cpu": 0.05, "ram": 0.005, "gpu": 3.0},  # A100, DCP profiling
            {"match": {IT: "g4dn.12xlarge"}, "cpu": 0.05, "ram": 0.005, "gpu": 0.5},  # T4, GPU_UTIL only
            {"match": {IT: "p3.2xlarge"}, "cpu": 0.05, "ram": 0.005, "gpu": 1.0},  # no dcgm-exporter
        ]
    },
    "attribution": {"source": "prometheus"},
}


def gpu_waste_cluster(t0: int) -> Cluster:
    """ml holds three A100s: train 2 at 80 %, notebook 1 at 3 % (pod label team=interns splits ml);
    vision holds a T4 at 50 % (GPU_UTIL only) and a V100 on a node without dcgm-exporter. One A100 is free."""
    from demo.synthetic import Dcgm

    nodes = (
        Node("g-a100", 96, 1152 * GIB, gpus=4, labels={IT: "p4d.24xlarge"}, dcgm=Dcgm("NVIDIA A100-SXM4-80GB", 81920)),
        Node("g-t4", 48, 192 * GIB, gpus=2, labels={IT: "g4dn.12xlarge"},
             dcgm=Dcgm("Tesla T4", 15360, profiling=False)),
        Node("g-v100", 8, 61 * GIB, gpus=1, labels={IT: "p3.2xlarge"}),
    )

    def gpu(name: str, gpus: int, util: float, fb_mib: float = 0.0) -> Container:
        return Container(name, 4, 16 * GIB, gpus, 2, 8 * GIB, gpu_util=util, gpu_fb_mib=fb_mib)

    pods = (
        Pod("ml", "train-7f9c-x2", "g-a100", (gpu("trainer", 2, 0.80, 40960),), owner=("Deployment", "train")),
        Pod("ml", "notebook-0", "g-a100", (gpu("jupyter", 1, 0.03, 2048),), owner=("StatefulSet", "notebook"),
            labels={"team": "interns"}),
        Pod("ml", "web-ui", "g-a100", (Container("ui", 1, 2 * GIB, 0, 0.5, 1 * GIB),)),  # no GPU
        Pod("vision", "infer-5d-q", "g-t4", (gpu("server", 1, 0.50, 7680),), owner=("Deployment", "infer")),
        Pod("vision", "batch-1", "g-v100", (gpu("job", 1, 0.90),), owner=("Job", "batch")),
    )
    return Cluster(nodes, pods, {"ml": {"team": "research"}, "vision": {"team": "vision"}})


# ---- one engine, every door: MIG, time-slicing, a split namespace and PVs ---------------------------
# Price-book unit rates per node, GPUs by model from gpu.prices, gp3 at 7.3 per GiB-month = 0.01 per GiB-hour
# (7.3 / hoursPerMonth 730). Every container uses half its requests, so allocation = requests.
DOORS_CONFIG = {
    "pricing": {
        "rules": [
            {"match": {IT: "a2-ultragpu-1g"}, "cpu": 0.04, "ram": 0.005},  # GPU: gpu.prices a100-80gb 3.5
            {"match": {IT: "g6.xlarge"}, "cpu": 0.05, "ram": 0.01},  # GPU: gpu.prices l4 0.8
            {"match": {IT: "m5.2xlarge"}, "cpu": 0.1, "ram": 0.01},
        ],
        "storage": {"classes": {"gp3": 7.3}},
    },
    "gpu": {"prices": {"a100-80gb": 3.5, "l4": 0.8}},
    "attribution": {"source": "prometheus", "labels": {"team": "team"}},
}


def doors_cluster(t0: int) -> Cluster:
    """gpu-mig: one A100 80GB in MIG mixed mode (ml a 3g.40gb, search one of four 1g.10gb); gpu-ts: one L4
    time-sliced 4 ways (ml one replica, search one); cpu-1: web split between teams web-a (pod label) and web
    (the namespace's label), plus ml's notebook; PVs for ml (100 GiB) and web (50 GiB). dcgm-exporter on gpu-ts:
    ml's replica 25 % busy, search's 75 % (hand-worked in tests/test_doors.py)."""
    from demo.clusters import GFD_COUNT, GFD_MIG, GFD_PRODUCT, GFD_REPLICAS, GFD_SHARING
    from demo.synthetic import Dcgm

    nodes = (
        Node("gpu-mig", 12, 96 * GIB, labels={
            IT: "a2-ultragpu-1g", GFD_PRODUCT: "NVIDIA-A100-SXM4-80GB", GFD_COUNT: "1", GFD_MIG: "mixed"},
            resources={"nvidia_com_mig_3g_40gb": 1, "nvidia_com_mig_1g_10gb": 4}),
        Node("gpu-ts", 4, 16 * GIB, gpus=4, labels={
            IT: "g6.xlarge", GFD_PRODUCT: "NVIDIA-L4-SHARED", GFD_COUNT: "1", GFD_REPLICAS: "4",
            GFD_SHARING: "time-slicing"}, dcgm=Dcgm("NVIDIA L4", 23034)),
        Node("cpu-1", 8, 32 * GIB, labels={IT: "m5.2xlarge"}),
    )

    def pod(ns: str, name: str, node: str, cpu: float, gib: float, gpus: float = 0.0, util: float = 0.0,
            labels: dict[str, str] | None = None, **res: float) -> Pod:
        c = Container("app", cpu, gib * GIB, gpus, cpu / 2, gib * GIB / 2, gpu_util=util, resources=res)
        return Pod(ns, name, node, (c,), labels=labels or {}, owner=("Deployment", name.rsplit("-", 1)[0]))

    pods = (
        pod("ml", "trainer-0", "gpu-mig", 4, 32, nvidia_com_mig_3g_40gb=1),
        pod("search", "embed-0", "gpu-mig", 2, 16, nvidia_com_mig_1g_10gb=1),
        pod("ml", "serving-0", "gpu-ts", 1, 4, gpus=1, util=0.25),
        pod("search", "rerank-0", "gpu-ts", 1, 4, gpus=1, util=0.75),
        pod("web", "frontend-0", "cpu-1", 2, 4, labels={"team": "web-a"}),  # the pod label beats the namespace's
        pod("web", "legacy-0", "cpu-1", 1, 4),  # the namespace's label: team web
        pod("ml", "notebook-0", "cpu-1", 1, 8),
    )
    ksm = {"job": "kube-state-metrics"}

    def pv(name: str, gib: float, claim: tuple[str, str]) -> tuple[Series, ...]:
        ref = {**ksm, "persistentvolume": name, "claim_namespace": claim[0], "name": claim[1]}
        return (Series("kube_persistentvolume_capacity_bytes", {**ksm, "persistentvolume": name}, base=gib * GIB),
                Series("kube_persistentvolume_info", {**ksm, "persistentvolume": name, "storageclass": "gp3"},
                       base=1),
                Series("kube_persistentvolume_claim_ref", ref, base=1))

    namespaces = {"ml": {"team": "ml"}, "search": {"team": "search"}, "web": {"team": "web"}}
    return Cluster(nodes, pods, namespaces, (*pv("pv-ml", 100, ("ml", "data")), *pv("pv-web", 50, ("web", "cache"))))
