"""Allocation: pure cost math over plain data, no I/O.

Input is what Prometheus aggregated for one window: per (namespace, node, attribution,
resource) integrals of allocated, requested and used quantity (unit-seconds, overflow
already scaled down per step), and per (node, resource) capacity integrals. Output is a
cost table keyed by (namespace, node, attribution); idle is the remainder per node and
resource under the pseudo-namespace `__idle__`, so the table always sums to the nodes' cost.
`attribution` is a tuple of label values (team, cost centre, ...) in configured order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from math import copysign
from typing import TypeVar

from exporter.core.assets import AssetCost
from exporter.core.coverage import Coverage
from exporter.core.energy import EnergyResult
from exporter.core.gpu import GpuHeld, GpuPodCost
from exporter.core.names import IDLE
from exporter.core.pricing import GIB, NodeFacts, NodeRates
from exporter.vocab.labels import Attrs, Metadata, UsageKey, ksm_label

OVERHEAD = "overhead"  # the resource label of fixed shared costs (control-plane fee, support, licences)
RESOURCES = ("cpu", "memory", "gpu")
GPU_OPENCOST = "gpu_opencost"  # the requested table's resource of OpenCost's gpuHours basis (Line.gpu_opencost_seconds)
# Unit divisor that turns a resource's unit-seconds into the unit-hours its rate is quoted in.
_UNIT_HOURS = {"cpu": 3600.0, "memory": 3600.0 * GIB, "gpu": 3600.0}

RowKey = tuple[str, str, Attrs]  # (namespace, node, attribution)
EntryKey = tuple[str, Attrs, str, str, str]  # (namespace, attribution, component, resource, shared source)
K = TypeVar("K")


@dataclass(frozen=True)
class ChunkUsage:
    """One window's aggregated quantities, as unit-seconds."""

    start: int
    end: int
    # Dicts, or on the fetch path `UsageTable`s (core/usagetable.py): one array per resource, not a float each.
    allocated: Mapping[UsageKey, float]
    requested: Mapping[UsageKey, float]
    used: Mapping[UsageKey, float]
    capacity: dict[tuple[str, str], float]  # (node, resource)
    nodes: dict[str, NodeFacts]
    gpu_held: list[GpuHeld] = field(default_factory=list)  # per container; their sum is allocated "gpu"
    # Raw path only: the overflow scale per (node, resource) and step time, which pod-level rows reuse.
    node_scales: dict[tuple[str, str], dict[float, float]] | None = None
    held: Mapping[UsageKey, float] = field(default_factory=dict)  # cpu/memory allocation before the overflow scale
    limits: dict[UsageKey, float] = field(default_factory=dict)  # cpu/memory limits


@dataclass(slots=True)  # slots: a cost-table row each, and one per pod-level group
class Line:
    """Accumulated quantities (unit-seconds) and cost for one row of a cost table."""

    cpu_core_seconds: float = 0.0
    cpu_request_seconds: float = 0.0
    cpu_usage_seconds: float = 0.0
    ram_byte_seconds: float = 0.0
    ram_request_byte_seconds: float = 0.0
    ram_usage_byte_seconds: float = 0.0
    gpu_seconds: float = 0.0
    pv_byte_seconds: float = 0.0
    cpu_cost: float = 0.0
    ram_cost: float = 0.0
    gpu_cost: float = 0.0
    pv_cost: float = 0.0
    lb_cost: float = 0.0
    network_cost: float = 0.0
    # The parts of network_cost priced as cross-zone, cross-region and internet egress (OpenCost's
    # networkCrossZoneCost, ...): a view, not extra cost.
    network_zone_cost: float = 0.0
    network_region_cost: float = 0.0
    network_internet_cost: float = 0.0
    # GPU utilisation from dcgm-exporter (exporter/core/gpuwaste.py): busy and observed GPU-seconds, framebuffer
    # used and total byte-seconds, and the share of gpu_cost that bought idle GPU time. A view, not a cost.
    gpu_usage_seconds: float = 0.0
    gpu_observed_seconds: float = 0.0
    gpu_memory_used_byte_seconds: float = 0.0
    gpu_memory_byte_seconds: float = 0.0
    gpu_waste_cost: float = 0.0
    # OpenCost's views of the same containers (docs/api.md, "Quantities"), never priced: the allocation under the
    # policy before the node's overflow scale (OpenCost's cpuCores/ramBytes), CPU and memory limits, requested
    # nvidia.com/gpu device-seconds (OpenCost's gpuHours), and each GPU pod's busy fraction of its GPUs x seconds.
    cpu_held_seconds: float = 0.0
    ram_held_byte_seconds: float = 0.0
    cpu_limit_seconds: float = 0.0
    ram_limit_byte_seconds: float = 0.0
    gpu_request_seconds: float = 0.0
    gpu_pod_busy_seconds: float = 0.0
    # OpenCost's gpuHours basis (docs/gpu.md): the nvidia.com/gpu request, or a time-sliced nvidia.com/gpu.shared
    # replica's physical share where larger. A view, never priced.
    gpu_opencost_seconds: float = 0.0
    # The running span: from the start of the first step a pod of the row ran to the end of the last (epoch
    # seconds; 0 when unknown, as for idle). OpenCost's start, end and minutes, and what its per-time
    # fields (cpuCores, gpuCount, the *Average fields) are divided by. Aggregates take the earliest start
    # and the latest end, never a sum.
    run_start: float = 0.0
    run_end: float = 0.0

    def add(self, other: Line) -> None:
        """Field by field `self + other`, to the bit. Where `other` is zero the sum is the field as held,
        so the field keeps its float object: most fields are 0.0, and storing `0.0 + 0.0` gave each merged
        row its own 24-byte float per field (984 bytes a row instead of 528; docs/scale.md)."""
        for name in _line_fields():  # dataclasses.fields() per call was a tenth of the client's CPU (profiled)
            mine, o = getattr(self, name), getattr(other, name)
            if o:
                setattr(self, name, mine + o)
            elif not mine and copysign(1.0, mine) < copysign(1.0, o):
                setattr(self, name, 0.0)  # -0.0 + 0.0 is 0.0; any other x + (±0.0) is x (IEEE 754)
        self.run_start, self.run_end = join_spans(self.run_start, self.run_end, other.run_start, other.run_end)

    def widen(self, start: float, end: float) -> None:
        """Take in a span the row ran (a pod's, a chunk's)."""
        self.run_start, self.run_end = join_spans(self.run_start, self.run_end, start, end)

    @property
    def total_cost(self) -> float:
        return sum(self.cost_by_resource().values())

    def cost_by_resource(self) -> dict[str, float]:
        return {"cpu": self.cpu_cost, "memory": self.ram_cost, "gpu": self.gpu_cost, "storage": self.pv_cost,
                "load_balancer": self.lb_cost, "network": self.network_cost}


SPAN_FIELDS = ("run_start", "run_end")


@cache
def _line_fields() -> tuple[str, ...]:
    """The summed fields: all but the running span."""
    return tuple(f.name for f in fields(Line) if f.name not in SPAN_FIELDS)


def join_spans(a_start: float, a_end: float, b_start: float, b_end: float) -> tuple[float, float]:
    """The span from the earlier start to the later end; an unknown span (end 0) adds nothing."""
    if not b_end:
        return a_start, a_end
    if not a_end:
        return b_start, b_end
    return min(a_start, b_start), max(a_end, b_end)


def running_span(line: Line, start: float, end: float) -> tuple[float, float]:
    """The row's running span, or the window's (`start`, `end`) when no pod span is known (idle, volumes)."""
    return (line.run_start, line.run_end) if line.run_end else (start, end)


_QTY = {"cpu": "cpu_core_seconds", "memory": "ram_byte_seconds", "gpu": "gpu_seconds"}
_REQ = {"cpu": "cpu_request_seconds", "memory": "ram_request_byte_seconds", "gpu": "gpu_request_seconds",
        GPU_OPENCOST: "gpu_opencost_seconds"}
_USE = {"cpu": "cpu_usage_seconds", "memory": "ram_usage_byte_seconds", "gpu": "gpu_usage_seconds",
        "gpu_observed": "gpu_observed_seconds", "gpu_memory": "gpu_memory_used_byte_seconds",
        "gpu_memory_total": "gpu_memory_byte_seconds", "gpu_pod_mean": "gpu_pod_busy_seconds"}
_HELD = {"cpu": "cpu_held_seconds", "memory": "ram_held_byte_seconds"}
_LIMIT = {"cpu": "cpu_limit_seconds", "memory": "ram_limit_byte_seconds"}
_COST = {"cpu": "cpu_cost", "memory": "ram_cost", "gpu": "gpu_cost"}


def rate_of(rates: NodeRates, resource: str) -> float:
    return {"cpu": rates.cpu, "memory": rates.ram, "gpu": rates.gpu}[resource]


def priced(resource: str, unit_seconds: float, rates: NodeRates) -> float:
    """Cost of a quantity integrated over time (core-, byte- or GPU-seconds) at a node's rates."""
    return unit_seconds / _UNIT_HOURS[resource] * rate_of(rates, resource)


@dataclass
class CostResult:
    """A window's cost table plus the node-side totals it must add up to."""

    start: int
    end: int
    table: dict[RowKey, Line] = field(default_factory=dict)
    # Final cost entries after sharing: (namespace, attribution, component, resource, source) -> cost.
    costs: dict[EntryKey, float] = field(default_factory=dict)
    # What each shared source (namespace or fixed cost) came to before distribution: (source, resource).
    pools: dict[tuple[str, str], float] = field(default_factory=dict)
    node_cost: dict[tuple[str, str], float] = field(default_factory=dict)  # (node, resource)
    asset_cost: dict[tuple[str, str], float] = field(default_factory=dict)  # (PV/LB/egress, resource)
    rates: dict[str, NodeRates] = field(default_factory=dict)
    nodes: dict[str, NodeFacts] = field(default_factory=dict)
    # Which of the window the costs stand on: covered, bridged over a gap, or uncovered (no cost).
    coverage: Coverage = field(default_factory=Coverage)
    # Of the latest chunk: shared sources whose policy fell back to `weighted`, and the owner labels read.
    fallbacks: frozenset[str] = frozenset()
    metadata: Metadata | None = None
    # Physical GPU-seconds and cost per (namespace, node, pod, container): what pod-level rows split GPU
    # cost by (a MIG slice or a time-sliced replica is a fraction of a device, not one advertised unit).
    gpu_pods: dict[tuple[str, str, str, str], GpuPodCost] = field(default_factory=dict)
    # Energy (J) and carbon (gCO2e) per tenant, a separate quantity from cost (exporter/core/energy.py).
    energy: EnergyResult = field(default_factory=EnergyResult)
    # Each volume's byte-seconds and cost per (namespace, PV): what OpenCost itemises as an allocation's `pvs`.
    pv_parts: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    # Each LoadBalancer Service's seconds and cost per (namespace, "namespace/service"): OpenCost's `lbAllocations`.
    lb_parts: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    # allocation.nodeLabels per node (Kubernetes key -> value): OpenCost copies them into allocations' labels.
    node_labels: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def total_cost(self) -> float:
        """The cluster's cost: nodes' capacity cost plus fixed shared costs."""
        fixed = sum(v for (_s, r), v in self.pools.items() if r == OVERHEAD)
        return sum(self.node_cost.values()) + sum(self.asset_cost.values()) + fixed

    def merge(self, other: CostResult) -> None:
        """Append a later, adjacent window (the latest node facts and rates win)."""
        self.start, self.end = min(self.start, other.start), max(self.end, other.end)
        for key, line in other.table.items():
            self.table.setdefault(key, Line()).add(line)
        for k, v in other.node_cost.items():
            self.node_cost[k] = self.node_cost.get(k, 0.0) + v
        for k, v in other.asset_cost.items():
            self.asset_cost[k] = self.asset_cost.get(k, 0.0) + v
        for ek, v in other.costs.items():
            self.costs[ek] = self.costs.get(ek, 0.0) + v
        for pk, v in other.pools.items():
            self.pools[pk] = self.pools.get(pk, 0.0) + v
        add_parts(self.pv_parts, other.pv_parts)
        add_parts(self.lb_parts, other.lb_parts)
        for gk, g in other.gpu_pods.items():
            self.gpu_pods.setdefault(gk, GpuPodCost()).add(g)
        self.energy.merge(other.energy)
        self.rates.update(other.rates)
        self.nodes.update(other.nodes)
        self.node_labels.update(other.node_labels)
        self.coverage.merge(other.coverage)
        self.fallbacks = other.fallbacks
        if other.metadata is not None:
            self.metadata = other.metadata


def cost_chunk(usage: ChunkUsage, rates: dict[str, NodeRates]) -> CostResult:
    """Price one window: allocated cost per (namespace, node), idle = node cost - allocated cost."""
    result = CostResult(usage.start, usage.end, rates=dict(rates), nodes=dict(usage.nodes))
    table = result.table
    for (ns, node, attrs, res), qty in usage.allocated.items():
        if node not in rates:
            continue  # no capacity series: not a node we can cost; the collector reports it
        line = table.setdefault((ns, node, attrs), Line())
        setattr(line, _QTY[res], getattr(line, _QTY[res]) + qty)
        cost = priced(res, qty, rates[node])
        setattr(line, _COST[res], getattr(line, _COST[res]) + cost)
    for h in usage.gpu_held:
        if h.node in rates:
            pod = result.gpu_pods.setdefault((h.namespace, h.node, h.pod, h.container), GpuPodCost())
            pod.add(GpuPodCost(h.device_seconds, priced("gpu", h.device_seconds, rates[h.node]), h.requested_seconds,
                               h.opencost_seconds))
    for source, names in ((usage.requested, _REQ), (usage.used, _USE), (usage.held, _HELD), (usage.limits, _LIMIT)):
        for (ns, node, attrs, res), qty in source.items():
            if res in names and node in rates:
                line = table.setdefault((ns, node, attrs), Line())
                setattr(line, names[res], getattr(line, names[res]) + qty)
    allocated: dict[tuple[str, str], tuple[float, float]] = {}
    for (_ns, node, _attrs), line in table.items():
        for res in RESOURCES:
            q, c = allocated.get((node, res), (0.0, 0.0))
            allocated[(node, res)] = (q + getattr(line, _QTY[res]), c + getattr(line, _COST[res]))
    for (node, res), cap in usage.capacity.items():
        if node not in rates:
            continue
        node_cost = priced(res, cap, rates[node])
        result.node_cost[(node, res)] = node_cost
        q, c = allocated.get((node, res), (0.0, 0.0))
        idle = table.setdefault((IDLE, node, ()), Line())
        setattr(idle, _QTY[res], getattr(idle, _QTY[res]) + max(cap - q, 0.0))
        setattr(idle, _COST[res], getattr(idle, _COST[res]) + node_cost - c)
    return result


_ASSET_FIELD = {"storage": "pv_cost", "load_balancer": "lb_cost", "network": "network_cost"}
_EGRESS_FIELD = {"egress-zone": "network_zone_cost", "egress-region": "network_region_cost",
                 "egress-internet": "network_internet_cost"}


def add_assets(result: CostResult, assets: Iterable[AssetCost], owner: Callable[[str], Attrs]) -> None:
    """Book PV, load-balancer and network costs to their namespaces (node ""), and to the assets' total."""
    for a in assets:
        line = result.table.setdefault((a.namespace, "", owner(a.namespace)), Line())
        setattr(line, _ASSET_FIELD[a.resource], getattr(line, _ASSET_FIELD[a.resource]) + a.cost)
        if a.resource == "storage":
            line.pv_byte_seconds += a.quantity
            add_parts(result.pv_parts, {(a.namespace, a.asset): (a.quantity, a.cost)})
        elif a.resource == "load_balancer":
            add_parts(result.lb_parts, {(a.namespace, a.asset): (a.quantity, a.cost)})
        elif a.resource == "network" and (part := _EGRESS_FIELD.get(a.asset)):
            setattr(line, part, getattr(line, part) + a.cost)
        key = (a.asset, a.resource)
        result.asset_cost[key] = result.asset_cost.get(key, 0.0) + a.cost


def add_parts(into: dict[K, tuple[float, float]], parts: Mapping[K, tuple[float, float]]) -> None:
    """Add (quantity, cost) pairs by key: a volume's byte-seconds and cost, a load balancer's seconds and cost."""
    for key, (q, c) in parts.items():
        q0, c0 = into.get(key, (0.0, 0.0))
        into[key] = (q0 + q, c0 + c)


def node_labels(nodes: Mapping[str, NodeFacts], keys: Iterable[str]) -> dict[str, dict[str, str]]:
    """The `keys` (Kubernetes label keys) each node carries, as kube-state-metrics exported them."""
    out = {}
    for name, facts in nodes.items():
        found = {k: v for k in keys if (v := facts.labels.get(ksm_label(k)))}
        if found:
            out[name] = found
    return out


def efficiency(used: float, requested: float) -> float:
    """OpenCost's definition: usage / request; 1 when something is used with no request."""
    if requested > 0:
        return used / requested
    return 1.0 if used > 0 else 0.0


def merge_all(results: Iterable[CostResult]) -> CostResult | None:
    merged: CostResult | None = None
    for r in results:
        if merged is None:
            merged = CostResult(r.start, r.end)
        merged.merge(r)
    return merged
