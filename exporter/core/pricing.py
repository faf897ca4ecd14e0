"""Pricing: turn what is known about a node into per-unit hourly rates, and say where they came from.

Precedence: explicit price-book rule (first match) > OpenCost pricing metrics > shipped
on-demand instance prices > OpenCost default rates. A node is never priced at 0 silently:
default-priced nodes are reported, and with `allowDefaultRates: false` an unpriced node is
an error that names it.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

from exporter.config.pricebook import PriceRule, Pricing
from exporter.vocab.errors import PricingError
from exporter.vocab.labels import ksm_label

if TYPE_CHECKING:
    from exporter.core.gpu import GpuNode

GIB = 1024**3
AWS_CPU_TO_RAM = 9.0  # AWS Split Cost Allocation: a vCPU weighs 9 GiB of memory
AWS_GPU_WEIGHT = 9.0  # ... and a GPU instance's GPUs weigh 9x its CPU and memory together

# Standard node labels that mark spot/preemptible capacity, with the value meaning "spot".
SPOT_LABELS = {
    "karpenter.sh/capacity-type": "spot",
    "eks.amazonaws.com/capacityType": "spot",
    "cloud.google.com/gke-spot": "true",
    "cloud.google.com/gke-preemptible": "true",
    "kubernetes.azure.com/scalesetpriority": "spot",
}
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")


@dataclass(frozen=True)
class ShippedPrices:
    compiled: str
    prices: Mapping[str, float]


@functools.cache
def load_shipped_prices() -> ShippedPrices:
    """The on-demand price list shipped in exporter/data (dated; see its header)."""
    raw: dict[str, Any] = yaml.safe_load(resources.files("exporter").joinpath("data/instance-prices.yaml").read_text())
    return ShippedPrices(str(raw["compiled"]), {str(k): float(v) for k, v in raw["prices"].items()})


@dataclass(frozen=True)
class NodeFacts:
    """What Prometheus told us about one node over a window."""

    name: str
    cores: float
    ram_bytes: float
    gpus: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)  # kube_node_labels form: label_<sanitised key>
    opencost: dict[str, float] = field(default_factory=dict)  # cpu, ram, gpu, total, spot
    # The node's accelerators (exporter/core/gpu.py; `gpus` is then physical devices), their model and its
    # price per device-hour (exporter/core/gpuprices.py), when known.
    gpu: GpuNode | None = None
    gpu_model: str = ""
    gpu_price: float | None = None

    @property
    def instance_type(self) -> str:
        return next((self.labels[ksm_label(k)] for k in INSTANCE_TYPE_LABELS if self.labels.get(ksm_label(k))), "")


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


def split_total(total: float, facts: NodeFacts, pricing: Pricing,
                known_gpu: float | None) -> tuple[float, float, float]:
    """Split a whole-instance price into (cpu per core, ram per GiB, gpu per GPU) rates.

    opencost: GPUs first at their known (or default) rate, then CPU:RAM by the ratio of the
    default rates (~7.46 GiB per core). aws: GPUs take weight/(weight+1) of the price, then
    CPU:RAM 9:1 per vCPU vs GiB. `split.cpuToRam` and `split.gpuWeight` override either.
    """
    s, d = pricing.split, pricing.defaults
    aws = s.method == "aws"
    ratio = s.cpuToRam or (AWS_CPU_TO_RAM if aws else d.cpu / d.ram)
    weight = s.gpuWeight if s.gpuWeight is not None else (AWS_GPU_WEIGHT if aws else None)
    gpu = 0.0
    if facts.gpus > 0:
        gpu = total * weight / (weight + 1) / facts.gpus if weight is not None else (
            known_gpu if known_gpu is not None else d.gpu)
    rest = max(total - facts.gpus * gpu, 0.0)
    denom = facts.cores * ratio + facts.ram_bytes / GIB
    if denom <= 0:
        raise PricingError(f"node {facts.name}: cannot split a total price over zero capacity")
    ram = rest / denom
    return ram * ratio, ram, gpu


def rule_matches(rule: PriceRule, facts: NodeFacts) -> bool:
    if rule.capacityType is not None and rule.capacityType != capacity_type(facts):
        return False
    for key, pattern in rule.match.items():
        value = facts.name if key == "node" else facts.labels.get(ksm_label(key))
        if value is None or not fnmatch.fnmatchcase(value, pattern):
            return False
    return True


def model_gpu(facts: NodeFacts, pricing: Pricing) -> float:
    """Per GPU-hour when nothing more specific prices the GPUs: the model's price, else the default rate."""
    return facts.gpu_price if facts.gpu_price is not None else pricing.defaults.gpu


def _rule_rates(i: int, rule: PriceRule, facts: NodeFacts, pricing: Pricing, spot: bool) -> NodeRates:
    keep = 1 - (rule.discount if rule.discount is not None else pricing.discount) / 100
    if rule.cpu is not None and rule.ram is not None:
        gpu = rule.gpu if rule.gpu is not None else model_gpu(facts, pricing)
        return NodeRates(rule.cpu * keep, rule.ram * keep, gpu * keep, f"pricebook[{i}]", spot)
    if spot and rule.spotHourly is not None:
        total, kind = rule.spotHourly * keep, "spot"
    elif not spot and rule.effectiveHourly is not None:
        total, kind = rule.effectiveHourly, "effective"  # a Savings Plan/RI rate is already discounted
    elif rule.hourly is not None:
        total, kind = rule.hourly * keep, "total"
    else:
        total, kind = (rule.effectiveHourly or rule.spotHourly or 0.0), "total"
    known = rule.gpu if rule.gpu is not None else facts.gpu_price
    known_gpu = known * keep if known is not None else None
    cpu, ram, gpu = split_total(total, facts, pricing, known_gpu)
    return NodeRates(cpu, ram, gpu, f"pricebook-{kind}[{i}]", spot)


def price_node(facts: NodeFacts, pricing: Pricing, shipped: ShippedPrices | None = None) -> NodeRates:
    """Rates for one node by the documented precedence; raises PricingError if none applies."""
    d = pricing.defaults
    spot = is_spot(facts)
    for i, rule in enumerate(pricing.rules):
        if rule_matches(rule, facts):
            return _rule_rates(i, rule, facts, pricing, spot)
    oc = facts.opencost
    if "cpu" in oc and "ram" in oc:
        return NodeRates(oc["cpu"], oc["ram"], oc.get("gpu", model_gpu(facts, pricing)), "opencost", spot)
    if "total" in oc:
        cpu, ram, gpu = split_total(oc["total"], facts, pricing, oc.get("gpu", facts.gpu_price))
        return NodeRates(cpu, ram, gpu, "opencost-total", spot)
    keep = 1 - pricing.discount / 100
    if shipped is not None and not spot and facts.instance_type in shipped.prices:
        known_gpu = facts.gpu_price * keep if facts.gpu_price is not None else None
        cpu, ram, gpu = split_total(shipped.prices[facts.instance_type] * keep, facts, pricing, known_gpu)
        return NodeRates(cpu, ram, gpu, "shipped", spot)
    if not pricing.allowDefaultRates:
        raise PricingError(
            f"node {facts.name} has no price: no price-book rule matches, no OpenCost pricing metric, and "
            f"instance type {facts.instance_type or '(no instance-type label)'} is not in the shipped price list"
        )
    if spot:
        return NodeRates(d.spotCpu * keep, d.spotRam * keep, model_gpu(facts, pricing) * keep, "default-spot", True)
    return NodeRates(d.cpu * keep, d.ram * keep, model_gpu(facts, pricing) * keep, "default", False)


def price_nodes(nodes: dict[str, NodeFacts], pricing: Pricing, shipped: ShippedPrices | None = None
                ) -> dict[str, NodeRates]:
    return {name: price_node(facts, pricing, shipped) for name, facts in sorted(nodes.items())}


def capacity_type(facts: NodeFacts) -> str:
    return "spot" if is_spot(facts) else "on-demand"


def unmatched_rules(nodes: Mapping[str, NodeFacts], pricing: Pricing) -> list[int]:
    """Indexes of price-book rules that match no node: usually a typo in a label or value."""
    return [i for i, rule in enumerate(pricing.rules) if not any(rule_matches(rule, f) for f in nodes.values())]
