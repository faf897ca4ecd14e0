"""GPU waste: what allocated GPU time cost while dcgm-exporter saw the GPUs idle. Pure, no I/O.

Allocation stays on requests: a GPU a pod holds is a GPU nobody else can use, so its cost is the
pod's whether it computes or not. Waste is a view on top of that cost, never a cost of its own
(it is not in any total, and conservation is untouched):

* utilisation of a row (namespace, node, owner) = busy GPU-seconds / observed GPU-seconds, where a
  GPU is busy by dcgm-exporter's graphics-engine activity (or GPU_UTIL / 100) and observed at every
  step dcgm-exporter reported it for a running pod;
* waste of a row = GPU cost x (observed - busy) / held GPU-seconds: the allocated GPU cost x
  (1 - utilisation) when dcgm-exporter saw the GPUs throughout. GPU time it did not see (no
  dcgm-exporter on the node, a scrape gap) is neither busy nor wasted: no data is not idleness.

Summed per row, an idle hour of an expensive GPU weighs more than one of a cheap GPU, which a
namespace-wide ratio applied to its whole GPU cost would not get right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.core.allocation import CostResult, Line
from exporter.core.names import IDLE


def row_waste(line: Line) -> float:
    """The share of a row's allocated GPU cost that paid for observed, idle GPU time."""
    held = line.gpu_seconds
    if held <= 0 or line.gpu_cost <= 0:
        return 0.0
    # dcgm-exporter reports a MIG instance, or a time-sliced device, as one GPU for every pod on it, while
    # the row holds a fraction of a physical GPU: scale its observed and busy time down to what is held,
    # so the waste is the cost times the idle share dcgm-exporter saw (never more than the cost).
    scale = min(1.0, held / line.gpu_observed_seconds) if line.gpu_observed_seconds > 0 else 0.0
    observed = line.gpu_observed_seconds * scale
    busy = min(line.gpu_usage_seconds * scale, observed)
    return line.gpu_cost * (observed - busy) / held


def add_waste(result: CostResult) -> None:
    """Set each tenant row's GPU waste for one chunk (idle capacity is idle cost, not waste)."""
    for (ns, _node, _attrs), line in result.table.items():
        line.gpu_waste_cost = 0.0 if ns == IDLE else row_waste(line)


def efficiency(line: Line) -> float | None:
    """Time-weighted utilisation of the GPUs a row held while observed; None when never observed."""
    if line.gpu_observed_seconds <= 0:
        return None
    return min(line.gpu_usage_seconds / line.gpu_observed_seconds, 1.0)


def memory_ratio(line: Line) -> float | None:
    """Framebuffer used over used+free, time-weighted; None without framebuffer series."""
    if line.gpu_memory_byte_seconds <= 0:
        return None
    return line.gpu_memory_used_byte_seconds / line.gpu_memory_byte_seconds


@dataclass
class GpuWaste:
    """One group's (namespace, team, workload) GPU time, cost and waste over a window."""

    name: str
    gpu_hours: float = 0.0  # held (requested) GPU-hours
    busy_gpu_hours: float = 0.0
    observed_gpu_hours: float = 0.0
    gpu_cost: float = 0.0
    waste_cost: float = 0.0

    @property
    def efficiency(self) -> float | None:
        return min(self.busy_gpu_hours / self.observed_gpu_hours, 1.0) if self.observed_gpu_hours > 0 else None

    def add_line(self, line: Line) -> None:
        self.gpu_hours += line.gpu_seconds / 3600
        self.busy_gpu_hours += line.gpu_usage_seconds / 3600
        self.observed_gpu_hours += line.gpu_observed_seconds / 3600
        self.gpu_cost += line.gpu_cost
        self.waste_cost += line.gpu_waste_cost


    def add(self, other: GpuWaste) -> None:
        self.gpu_hours += other.gpu_hours
        self.busy_gpu_hours += other.busy_gpu_hours
        self.observed_gpu_hours += other.observed_gpu_hours
        self.gpu_cost += other.gpu_cost
        self.waste_cost += other.waste_cost


def by_group(rows: Iterable[tuple[str, Line]]) -> list[GpuWaste]:
    """Group (name, line) pairs; groups with GPU cost or observed GPU time, most waste first."""
    groups: dict[str, GpuWaste] = {}
    for name, line in rows:
        groups.setdefault(name, GpuWaste(name)).add_line(line)
    kept = [g for g in groups.values() if g.gpu_cost > 0 or g.observed_gpu_hours > 0]
    return sorted(kept, key=lambda g: (-g.waste_cost, g.name))


def table_groups(result: CostResult, by_index: int | None) -> list[GpuWaste]:
    """Per namespace (by_index None) or per attribution label value, from a window's cost table."""
    def name(ns: str, attrs: tuple[str, ...]) -> str:
        if by_index is None:
            return ns
        return (attrs[by_index] if by_index < len(attrs) else "") or "__unallocated__"

    return by_group((name(ns, attrs), line) for (ns, _node, attrs), line in result.table.items() if ns != IDLE)


@dataclass(frozen=True)
class PodGpu:
    """One pod's GPU quantities on one node over a window (per-pod query rows), in GPU-seconds."""

    namespace: str
    node: str
    pod: str
    held: float = 0.0
    busy: float = 0.0
    observed: float = 0.0


def workload_waste(pods: Iterable[PodGpu], gpu_rate: Mapping[str, float],
                   workload: Mapping[tuple[str, str], str]) -> dict[str, GpuWaste]:
    """Per workload ("namespace/name"): held GPU cost at each node's hourly GPU rate, and its waste.
    `workload` maps (namespace, pod) to the workload name (exporter/core/workloads.py's name_of)."""
    out: dict[str, GpuWaste] = {}
    for p in pods:
        rate = gpu_rate.get(p.node)
        if rate is None:
            continue  # a node the engine cannot price is not costed either
        line = Line(gpu_seconds=p.held, gpu_usage_seconds=p.busy, gpu_observed_seconds=p.observed,
                    gpu_cost=p.held / 3600 * rate)
        line.gpu_waste_cost = row_waste(line)
        key = f"{p.namespace}/{workload.get((p.namespace, p.pod), p.pod)}"
        out.setdefault(key, GpuWaste(key)).add_line(line)
    return out
