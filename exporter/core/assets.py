"""Costs beyond nodes: persistent volumes, load balancers and network egress. Pure, no I/O.

Each asset's cost goes to the namespace that owns it: a PV to its claim's namespace
(`__unmounted__` without a claim), a LoadBalancer Service to its namespace, egress to the
namespace that sent the bytes. Every asset's cost is also recorded against the asset, so
the cluster total includes it and conservation still holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.config.pricebook import Network, Storage
from exporter.core.names import UNALLOCATED, UNMOUNTED
from exporter.core.pricing import GIB

EGRESS_CLASSES = ("internet", "region", "zone")


@dataclass(frozen=True)
class Volume:
    name: str
    byte_seconds: float  # capacity integrated over the window's steps
    storage_class: str  # "" when the PV has none (static or CSI volumes)
    claim_namespace: str | None
    hourly_per_gib: float | None  # OpenCost's pv_hourly_cost when present


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    seconds: float  # time the Service was of type LoadBalancer in the window
    hourly: float | None  # kubecost_load_balancer_cost when present


@dataclass(frozen=True)
class AssetCost:
    namespace: str
    asset: str  # PV name, namespace/service, or egress class / network amount name
    resource: str  # storage | load_balancer | network
    cost: float
    quantity: float = 0.0  # byte-seconds for storage, seconds for load balancers, bytes for network
    source: str = ""


def price_volumes(volumes: list[Volume], storage: Storage, hours_per_month: float) -> list[AssetCost]:
    """Per GiB-month prices prorate over the same month length as every other monthly amount."""
    out = []
    for v in volumes:
        if v.hourly_per_gib is not None:
            rate, source = v.hourly_per_gib, "pv_hourly_cost"
        elif v.storage_class in storage.classes:
            rate, source = storage.classes[v.storage_class] / hours_per_month, f"class:{v.storage_class}"
        else:
            rate, source = storage.defaultGiBMonth / hours_per_month, "default"
        cost = v.byte_seconds / GIB / 3600 * rate
        out.append(AssetCost(v.claim_namespace or UNMOUNTED, v.name, "storage", cost, v.byte_seconds, source))
    return out


def price_load_balancers(services: list[Service], default_hourly: float) -> list[AssetCost]:
    return [
        AssetCost(s.namespace, f"{s.namespace}/{s.name}", "load_balancer",
                  s.seconds / 3600 * (s.hourly if s.hourly is not None else default_hourly), s.seconds,
                  "kubecost_load_balancer_cost" if s.hourly is not None else "pricebook")
        for s in services
    ]


def price_network(classified: Mapping[tuple[str, str], float], transmitted: Mapping[str, float], net: Network,
                  window_seconds: float, hours_per_month: float, partial: bool = False) -> list[AssetCost]:
    """Egress bytes x price per GiB by class, plus monthly amounts spread by transmitted or internet bytes.

    `classified`: (namespace, class) -> bytes from a classifying source (Kubecost's network costs daemonset,
    or Istio's flows through core/egress.py; class `unclassified` is priced as `net.unclassified`); without
    it, cAdvisor's `transmitted` bytes are priced as `net.unclassified`. `partial` (a mesh sees only its own
    pods): the namespaces the classified source does not name are priced from `transmitted` as without it.
    """
    price = {"internet": net.internetPerGiB, "region": net.regionPerGiB, "zone": net.zonePerGiB, "free": 0.0}
    out = []
    named = {ns for ns, _ in classified}
    unclassified = {ns: b for ns, b in transmitted.items() if not classified or (partial and ns not in named)}
    for (ns, klass), b in sorted(classified.items()):
        klass = net.unclassified if klass == "unclassified" else klass
        if price[klass] and b > 0:
            out.append(AssetCost(ns, f"egress-{klass}", "network", b / GIB * price[klass], b, klass))
    if price[net.unclassified]:
        for ns, b in sorted(unclassified.items()):
            if b > 0:
                cost = b / GIB * price[net.unclassified]
                out.append(AssetCost(ns, f"egress-{net.unclassified}", "network", cost, b, net.unclassified))
    internet = {ns: b for (ns, k), b in classified.items() if k == "internet"}
    for amount in net.monthly:
        value = amount.monthly * window_seconds / (hours_per_month * 3600)
        weights = internet if amount.spreadBy == "internet" and classified else transmitted
        total = sum(b for b in weights.values() if b > 0)
        if total <= 0:
            out.append(AssetCost(UNALLOCATED, amount.name, "network", value, 0.0, "monthly"))
            continue
        for ns, b in sorted(weights.items()):
            if b > 0:
                out.append(AssetCost(ns, amount.name, "network", value * b / total, b, "monthly"))
    return out
