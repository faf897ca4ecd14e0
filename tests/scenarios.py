"""Test scenarios built from the shared synthetic generator, with their inputs spelled out.

Expected amounts are worked out by hand in the tests from these numbers; nothing here
calls the engine.
"""

from __future__ import annotations

from exporter.synthetic import GIB, Cluster, Container, Counter, Node, Pod

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
    def pod(ns: str, name: str, node: str, cpu: float, gib: float, **labels: str) -> Pod:
        return Pod(ns, name, node, (Container("app", cpu, gib * GIB, 0, cpu / 2, gib * GIB / 2),), labels=labels)

    prices = {"cpu": SHARE_CPU, "ram": SHARE_RAM}
    nodes = (Node("n1", 8, 32 * GIB, opencost=prices), Node("n2", 8, 32 * GIB, opencost=prices))
    pods = (
        pod("payments", "api", "n1", 2, 4),  # team from the namespace label: payments
        pod("search", "query", "n1", 1, 2),  # team search
        pod("kube-system", "coredns", "n1", 1, 2),  # shared by name
        pod("web", "frontend", "n2", 1, 2, team="web-a"),  # pod label beats namespace label (web)
        pod("web", "admin", "n2", 0.5, 1, team="web-b"),
        pod("web", "legacy", "n2", 0.5, 1),  # no pod label: namespace label team=web
        pod("monitoring", "prometheus", "n2", 2, 8),  # shared by label platform=true
        pod("tools", "runner", "n2", 1, 2),  # no label anywhere: __unattributed__
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
        Counter("nginx_ingress_controller_requests",
                {"job": "ingress-nginx", "exported_namespace": ns, "status": "200"}, slope)
        for ns, slope in (("payments", 3.0), ("search", 1.0), ("web", 1.0))
    )
    return Cluster(nodes, pods, namespaces, ingress)
