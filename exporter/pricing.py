"""Pricing: turn what is known about a node into per-unit hourly rates, and say where they came from.

Precedence: OpenCost pricing metrics > price-book rule (first match) > OpenCost default rates.
A node is never priced at 0 silently: default-priced nodes are reported, and with
`allowDefaultRates: false` an unpriced node is an error that names it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from .config import PriceRule, Pricing
from .errors import PricingError

GIB = 1024**3

# Standard node labels that mark spot/preemptible capacity, with the value meaning "spot".
SPOT_LABELS = {
    "karpenter.sh/capacity-type": "spot",
    "eks.amazonaws.com/capacityType": "spot",
    "cloud.google.com/gke-spot": "true",
    "cloud.google.com/gke-preemptible": "true",
    "kubernetes.azure.com/scalesetpriority": "spot",
}


def ksm_label(key: str) -> str:
    """A Kubernetes label key as kube-state-metrics exports it on kube_node_labels."""
    return "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


@dataclass(frozen=True)
class NodeFacts:
    """What Prometheus told us about one node over a window."""

    name: str
    cores: float
    ram_bytes: float
    gpus: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)  # kube_node_labels form: label_<sanitised key>
    opencost: dict[str, float] = field(default_factory=dict)  # cpu, ram, gpu, total, spot


@dataclass(frozen=True)
class NodeRates:
    """Hourly rates for one node: per core, per GiB of RAM, per GPU."""

    cpu: float
    ram: float
    gpu: float
    source: str
    spot: bool = False

    def hourly(self, facts: NodeFacts) -> float:
        return facts.cores * self.cpu + facts.ram_bytes / GIB * self.ram + facts.gpus * self.gpu


def is_spot(facts: NodeFacts) -> bool:
    if facts.opencost.get("spot", 0) >= 1:
        return True
    return any(facts.labels.get(ksm_label(k), "").lower() == v for k, v in SPOT_LABELS.items())


def split_total(total: float, facts: NodeFacts, gpu_rate: float, ratio: float) -> tuple[float, float]:
    """OpenCost's split of a whole-node price: GPUs first, then CPU:RAM by `ratio` (core vs GiB)."""
    rest = max(total - facts.gpus * gpu_rate, 0.0)
    denom = facts.cores * ratio + facts.ram_bytes / GIB
    if denom <= 0:
        raise PricingError(f"node {facts.name}: cannot split a total price over zero capacity")
    ram = rest / denom
    return ram * ratio, ram


def rule_matches(rule: PriceRule, facts: NodeFacts) -> bool:
    for key, pattern in rule.match.items():
        value = facts.name if key == "node" else facts.labels.get(ksm_label(key))
        if value is None or not fnmatch.fnmatchcase(value, pattern):
            return False
    return True


def price_node(facts: NodeFacts, pricing: Pricing) -> NodeRates:
    """Rates for one node by the documented precedence; raises PricingError if none applies."""
    d = pricing.defaults
    ratio = d.cpu / d.ram
    spot = is_spot(facts)
    oc = facts.opencost
    gpu_default = oc.get("gpu", d.gpu)
    if "cpu" in oc and "ram" in oc:
        return NodeRates(oc["cpu"], oc["ram"], gpu_default, "opencost", spot)
    if "total" in oc:
        cpu, ram = split_total(oc["total"], facts, gpu_default, ratio)
        return NodeRates(cpu, ram, gpu_default, "opencost-total", spot)
    for i, rule in enumerate(pricing.rules):
        if not rule_matches(rule, facts):
            continue
        gpu = rule.gpu if rule.gpu is not None else d.gpu
        if rule.hourly is not None:
            cpu, ram = split_total(rule.hourly, facts, gpu, ratio)
            return NodeRates(cpu, ram, gpu, f"pricebook-total[{i}]", spot)
        assert rule.cpu is not None and rule.ram is not None
        return NodeRates(rule.cpu, rule.ram, gpu, f"pricebook[{i}]", spot)
    if not pricing.allowDefaultRates:
        raise PricingError(
            f"node {facts.name} has no price: no OpenCost pricing metric and no price-book rule matches "
            f"its labels {sorted(facts.labels) or '(kube_node_labels missing)'}"
        )
    if spot:
        return NodeRates(d.spotCpu, d.spotRam, d.gpu, "default-spot", True)
    return NodeRates(d.cpu, d.ram, d.gpu, "default", False)


def price_nodes(nodes: dict[str, NodeFacts], pricing: Pricing) -> dict[str, NodeRates]:
    return {name: price_node(facts, pricing) for name, facts in sorted(nodes.items())}
