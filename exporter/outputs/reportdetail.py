"""What a report takes from `Pipeline.compute` beyond namespace totals: its workloads, its days, and the
cost table its GPU and efficiency figures come from. Every number is the engine's (no query of its own).

Workloads are the engine's pod-level rows (exporter/outputs/podrows.py, as /allocation aggregates them by
controller and pod), grouped by the report's group and workload, so a namespace's workloads add up to
its amount in the table above them, GPU included: a MIG slice or a time-sliced replica costs what the
engine charged for it, not an advertised unit at a whole GPU's price.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.core.allocation import CostResult, Line, RowKey, merge_all
from exporter.core.attribution import Owners
from exporter.core.gpuwaste import GpuWaste
from exporter.core.names import UNALLOCATED, is_pseudo
from exporter.core.window import Window
from exporter.engine.pipeline import Pipeline
from exporter.outputs.allocrows import AllocRow
from exporter.outputs.podrows import PodGranularity
from exporter.sources.allocsteps import NodeScales
from exporter.sources.queries import Queries
from exporter.vocab.labels import Metadata

DAY = 86400


def group_of(by: str, attr_names: tuple[str, ...], namespace: str, attrs: tuple[str, ...]) -> str:
    if is_pseudo(namespace):
        return namespace
    if by == "namespace":
        return namespace
    i = attr_names.index(by)
    return attrs[i] if i < len(attrs) else namespace


@dataclass
class Workload:
    """A group's workload in one namespace: a controller (`deployment:api`), a bare pod (its own name), or
    `__unallocated__`: what no pod of the namespace carries (volumes, load balancers, network, and shared
    cost of a namespace with no pods), as /allocation names a row without the aggregate key."""

    namespace: str
    name: str
    total: float = 0.0
    gpu: GpuWaste = field(default_factory=lambda: GpuWaste(""))

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def add(self, r: AllocRow) -> None:
        line = r.row.line
        self.total += r.row.total
        self.gpu.add(GpuWaste("", line.gpu_seconds / 3600, line.gpu_usage_seconds / 3600,
                              line.gpu_observed_seconds / 3600, r.row.cost["gpu"], line.gpu_waste_cost))


@dataclass(frozen=True)
class Day:
    """One UTC day of the window (cut by its bounds) and its cost per group. `covered_seconds`: the
    seconds the engine had data for; a day with fewer than 86,400 is partial and drawn as such."""

    start: int
    seconds: int
    covered_seconds: int
    groups: dict[str, float]

    @property
    def partial(self) -> bool:
        return self.covered_seconds < DAY


class ReportDetail(PodGranularity):
    """The engine's pod-level rows grouped by (report group, workload), and the namespace-level cost table
    (which the pipeline drops from a result computed with a granularity) summed over the window."""

    def __init__(self, by: str, attr_names: tuple[str, ...]) -> None:
        super().__init__([], None, False, (), "", by_node=False)
        self.by, self.attr_names = by, attr_names
        self.workloads: dict[str, dict[str, Workload]] = {}  # group -> namespace/name -> workload
        self.table: dict[RowKey, Line] = {}

    def add_segment(self, pipeline: Pipeline, w: Window, q: Queries, meta: Metadata, owners: Owners,
                    result: CostResult, node_scales: NodeScales | None = None) -> None:
        with self._lock:
            for key, line in result.table.items():
                self.table.setdefault(key, Line()).add(line)
        super().add_segment(pipeline, w, q, meta, owners, result, node_scales)

    def add(self, rows: Iterable[AllocRow]) -> None:
        for r in rows:
            if r.name:  # the pseudo-namespaces (__idle__, __unmounted__, ...) are groups, not workloads
                continue
            p = r.props
            name = f"{p.controllerKind}:{p.controller}" if p.controller else (p.pod or UNALLOCATED)
            group = self.workloads.setdefault(group_of(self.by, self.attr_names, p.namespace, r.attrs), {})
            w = group.get(f"{p.namespace}/{name}")
            if w is None:
                w = group[f"{p.namespace}/{name}"] = Workload(p.namespace, name)
            w.add(r)


@dataclass
class Detail:
    merged: CostResult
    days: list[Day]
    grain: ReportDetail


def engine_detail(pipeline: Pipeline, window: Window, by: str, attr_names: tuple[str, ...]) -> Detail:
    """The window computed one UTC day at a time at pod level: each day's cost per group, the workloads
    and the namespace-level table over the whole window."""
    grain = ReportDetail(by, attr_names)
    days: list[Day] = []
    results = []
    for day in window.chunks(DAY, boundary=DAY):  # a report period: a few dozen days
        result = pipeline.compute(day, granularity=grain)
        per: dict[str, float] = {}
        for (ns, attrs, _component, _res, _src), cost in result.costs.items():
            name = group_of(by, attr_names, ns, attrs)
            per[name] = per.get(name, 0.0) + cost
        days.append(Day(day.start, day.seconds, result.coverage.covered_seconds, per))
        results.append(result)
    # An empty window (`today` at 00:00:30) has no day: the engine's empty answer, with its coverage.
    merged = merge_all(results) or pipeline.compute(window, granularity=grain)
    merged.table = grain.table
    return Detail(merged, days, grain)
