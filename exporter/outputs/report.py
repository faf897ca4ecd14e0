"""Showback reports: cost per team (or namespace, cost centre) over a window, against the previous one.

Two sources, and the report says which it used:

* `exporter`: the exporter's own counters in Prometheus, when its watermark passed exactly
  through both window bounds. Cost is `increase()` between those two scrapes, which is exact
  (no extrapolation: the range starts and ends on samples) and cheap.
* `computed`: otherwise, the same computation as `chargeback allocate`, from raw metrics.

Workloads, GPU waste and the daily chart always come from the engine (outputs/reportdetail.py). A change
against the previous period is shown only where the engine had data for all of that period.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from exporter.config.schema import Config
from exporter.core.allocation import CostResult
from exporter.core.gpuwaste import GpuWaste, by_group
from exporter.core.names import IDLE, is_pseudo
from exporter.core.window import Window, iso
from exporter.engine.pipeline import Pipeline, command_pipeline
from exporter.outputs.reportdetail import Day, Detail, Workload, engine_detail, group_of
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import OwnSeries, duration, matcher
from exporter.vocab.errors import DataError

log = logging.getLogger(__name__)

# (namespace, attribution values, component) -> cost
Entries = dict[tuple[str, tuple[str, ...], str], float]
# (namespace, owner attrs) -> (CPU used, CPU requested, allocated CPU cost), over the window.
Efficiency = dict[tuple[str, tuple[str, ...]], tuple[float, float, float]]


@dataclass
class Group:
    name: str
    total: float = 0.0
    by_component: dict[str, float] = field(default_factory=lambda: {"allocated": 0.0, "shared": 0.0, "idle": 0.0})
    previous: float = 0.0
    namespaces: dict[str, float] = field(default_factory=dict)
    cpu_efficiency: float | None = None
    unused_request_cost: float = 0.0
    budgets: list[dict[str, Any]] = field(default_factory=list)
    workloads: dict[str, Workload] = field(default_factory=dict)  # namespace/name -> workload (the engine's)
    gpu: GpuWaste | None = None  # GPU cost, utilisation and waste (dcgm-exporter), None without GPU cost
    comparable: bool = True  # the previous period is covered: a change means something
    energy_kwh: float = 0.0  # the engine's energy and carbon (exporter/core/energy.py): not money
    carbon_kg: float = 0.0

    def ranked_workloads(self) -> list[Workload]:
        return sorted(self.workloads.values(), key=lambda w: (-w.total, w.key))

    def top_workloads(self, n: int = 3) -> list[tuple[str, float]]:
        return [(w.key, w.total) for w in self.ranked_workloads()[:n]]

    def top_gpu_workloads(self, n: int = 3) -> list[tuple[str, float]]:
        wasting = sorted((w for w in self.workloads.values() if w.gpu.waste_cost > 0),
                         key=lambda w: (-w.gpu.waste_cost, w.key))
        return [(w.key, w.gpu.waste_cost) for w in wasting[:n]]

    @property
    def change(self) -> float | None:
        return self.total - self.previous if self.comparable else None

    @property
    def change_pct(self) -> float | None:
        """None where a percentage would mislead: an uncovered previous period, or one under a cent."""
        return change_pct(self.total, self.previous, self.comparable)

    def top_namespaces(self, n: int = 3) -> list[tuple[str, float]]:
        return sorted(self.namespaces.items(), key=lambda kv: -kv[1])[:n]


def change_pct(total: float, previous: float, comparable: bool) -> float | None:
    if not comparable or abs(previous) < 0.005 or abs(total) < 0.005:
        return None  # nothing to compare, or a group that is gone: "-100%" on 0.00 says nothing
    return 100 * (total - previous) / previous


@dataclass
class Report:
    window: Window
    previous: Window
    by: str
    source: str
    currency: str
    groups: list[Group]
    cluster_total: float
    previous_total: float
    days: list[Day] = field(default_factory=list)  # per UTC day of the window: cost per group (the engine's)
    covered_seconds: int | None = None  # of the window, with data (None: not known, taken as whole)
    previous_covered_seconds: int | None = None  # of the previous period; a change needs all of it

    @property
    def comparable(self) -> bool:
        return self.previous_covered_seconds is None or self.previous_covered_seconds >= self.previous.seconds

    @property
    def groups_total(self) -> float:
        return sum(g.total for g in self.groups)

    @property
    def adds_up(self) -> bool:
        return abs(self.groups_total - self.cluster_total) <= 1e-9 * max(1.0, abs(self.cluster_total))

    def only(self, name: str) -> Report:
        """The same report restricted to one group (what a team lead receives)."""
        days = [replace(d, groups={k: v for k, v in d.groups.items() if k == name}) for d in self.days]
        return replace(self, groups=[g for g in self.groups if g.name == name], days=days)


def entries_of(result: CostResult) -> Entries:
    out: Entries = defaultdict(float)
    for (ns, attrs, component, _res, _src), cost in result.costs.items():
        out[(ns, attrs, component)] += cost
    return dict(out)


def build(window: Window, previous: Window, by: str, attr_names: tuple[str, ...], source: str, currency: str,
          current: Entries, before: Entries, efficiency: Efficiency | None = None,
          budgets: list[dict[str, Any]] | None = None, previous_covered_seconds: int | None = None) -> Report:
    """Pure: group the entries. `efficiency`: (namespace, attrs) -> (used, requested, allocated cost) for CPU,
    per owner, so the teams that share a split namespace each get their own pods' unused requests."""
    groups: dict[str, Group] = {}
    for (ns, attrs, component), cost in current.items():
        g = groups.setdefault(group_of(by, attr_names, ns, attrs), Group(group_of(by, attr_names, ns, attrs)))
        g.total += cost
        g.by_component[component] = g.by_component.get(component, 0.0) + cost
        g.namespaces[ns] = g.namespaces.get(ns, 0.0) + cost
    for (ns, attrs, _component), cost in before.items():
        name = group_of(by, attr_names, ns, attrs)
        groups.setdefault(name, Group(name)).previous += cost
    report = Report(window, previous, by, source, currency, [], sum(current.values()), sum(before.values()),
                    previous_covered_seconds=previous_covered_seconds)
    cpu: dict[str, tuple[float, float, float]] = {}
    for (ns, attrs), (u, r, c) in (efficiency or {}).items():
        name = group_of(by, attr_names, ns, attrs)
        used, requested, unused = cpu.get(name, (0.0, 0.0, 0.0))
        cpu[name] = (used + u, requested + r, unused + (c * max(0.0, 1 - u / r) if r else 0.0))
    for g in groups.values():
        used, requested, unused = cpu.get(g.name, (0.0, 0.0, 0.0))
        g.cpu_efficiency = used / requested if requested else None
        g.unused_request_cost = unused
        g.budgets = [b for b in (budgets or []) if b.get(by) == g.name or b.get("namespace") in g.namespaces]
        g.comparable = report.comparable
    report.groups = sorted((g for g in groups.values() if listed(g)), key=lambda g: (g.name == IDLE, -g.total))
    return report


def listed(g: Group) -> bool:
    """A group with no cost in the window is listed only to read what it lost: a cent or more of a comparable
    previous period. Else it is a 0.00 row that tells finance nothing (the demo's 24 h report had one:
    `__unallocated__`, its NAT gateway's first minute of history, before any byte was counted, 0.00075 USD
    in a previous period with 34 minutes of data). previousTotal still counts it: it is the cluster's."""
    return g.total != 0 or (g.comparable and abs(g.previous) >= 0.005)


class ReportSource:
    """Fetches entries for a window from the exporter's series when they cover it exactly, else computes."""

    def __init__(self, cfg: Config, client: PrometheusClient, pipeline: Pipeline) -> None:
        self.cfg, self.client, self.pipeline = cfg, client, pipeline
        self.attr_names = tuple(cfg.attribution.labels)
        self.own = OwnSeries.of(cfg.serve, cfg.prometheus.clusterSelector)

    def scrape_at(self, watermark: int, search_until: int) -> float | None:
        """Timestamp of the first scrape whose watermark was exactly `watermark`, if there is one."""
        span = max(search_until - watermark, 60)
        rows = self.client.query_range_raw(
            self.own.watermark_samples(span), search_until)
        hits = [t for _lb, samples in rows for t, v in samples if v == watermark]
        return min(hits) if hits else None

    def from_exporter(self, w: Window, now: float) -> Entries | None:
        horizon = int(min(now, w.end + 86400))
        t_start = self.scrape_at(w.start, int(min(now, w.start + 86400)))
        t_end = self.scrape_at(w.end, horizon)
        if t_start is None or t_end is None or t_end <= t_start:
            return None
        labels = ["namespace", "component", *self.attr_names]
        rng = f"{(t_end - t_start) * 1000:.0f}ms"
        rows = self.client.query(self.own.cost_increase(labels, rng), t_end)
        out: Entries = defaultdict(float)
        for lb, v in rows:
            attrs = tuple(lb.get(n, "") for n in self.attr_names) if not is_pseudo(lb["namespace"]) else ()
            out[(lb["namespace"], attrs, lb["component"])] += v
        return dict(out)

    def efficiency(self, result: CostResult) -> Efficiency:
        eff: Efficiency = {}
        for (ns, _node, attrs), line in result.table.items():
            u, r, c = eff.get((ns, attrs), (0.0, 0.0, 0.0))
            eff[(ns, attrs)] = (u + line.cpu_usage_seconds, r + line.cpu_request_seconds, c + line.cpu_cost)
        return eff

    def exporter_efficiency(self, w: Window) -> Efficiency:
        """Per (namespace, owner): (mean CPU usage/request over the window, 1, allocated CPU cost) from the
        exporter. Its efficiency series is per namespace, so the owners of a split namespace share its ratio."""
        at, own = float(w.end), self.own
        ratio = {lb["namespace"]: v for lb, v in self.client.query(own.mean_efficiency("cpu", w.seconds), at)}
        labels = ["namespace", *self.attr_names]
        eff: Efficiency = {}
        for lb, v in self.client.query(own.cost_increase(labels, duration(w.seconds), matcher("resource", "cpu"),
                                                         matcher("component", "allocated")), at):
            ns = lb["namespace"]
            if ns in ratio:
                eff[(ns, tuple(lb.get(n, "") for n in self.attr_names))] = (ratio[ns], 1.0, v)
        return eff

    def budgets(self, at: float) -> list[dict[str, Any]]:
        rows = self.client.query(OwnSeries.BUDGET_SERIES["usage"], at)
        # the recorded name is the query's, not a property of the budget: rows carry the budget's labels
        return [{**{k: x for k, x in lb.items() if k != "__name__"}, "usage": v} for lb, v in rows]


def make_report(cfg: Config, window: Window, by: str, now: float, source: str = "auto") -> Report:
    """Build the report for `window` against the window of the same length before it."""
    client = PrometheusClient(cfg.prometheus)
    pipeline = command_pipeline(cfg, client)
    src = ReportSource(cfg, client, pipeline)
    previous = Window(window.start - window.seconds, window.start, window.step)
    current = before = None
    if source in ("auto", "exporter"):
        current, before = src.from_exporter(window, now), src.from_exporter(previous, now)
        if (current is None or before is None) and source == "exporter":
            raise DataError(f"the exporter's series do not cover {iso(window.start)}..{iso(window.end)} exactly "
                            "(no scrape with those watermarks); use --source computed")
    detail = engine_detail(pipeline, window, by, src.attr_names)
    if current is not None and before is not None:  # the exporter accrued both periods: both are whole
        report = build(window, previous, by, src.attr_names, "exporter", cfg.pricing.currency, current, before,
                       src.exporter_efficiency(window), src.budgets(window.end))
    else:
        before, covered = previous_entries(pipeline, previous)
        report = build(window, previous, by, src.attr_names, "computed", cfg.pricing.currency,
                       entries_of(detail.merged), before, src.efficiency(detail.merged), src.budgets(window.end),
                       covered)
    report.days, report.covered_seconds = detail.days, detail.merged.coverage.covered_seconds
    _add_engine_detail(report, detail, by, src.attr_names)
    return report


def previous_entries(pipeline: Pipeline, previous: Window) -> tuple[Entries, int]:
    """The previous period's entries and the seconds of it the engine had data for."""
    try:
        result = pipeline.compute(previous)
    except DataError as e:  # e.g. the first week after installing: no history before the window
        log.warning("previous period %s..%s has no data (%s); no change is shown", iso(previous.start),
                    iso(previous.end), e)
        return {}, 0
    if result.coverage.covered_seconds < previous.seconds:
        log.warning("the previous period %s..%s has data for %.1f of its %.1f h; no change is shown",
                    iso(previous.start), iso(previous.end), result.coverage.covered_seconds / 3600,
                    previous.seconds / 3600)
    return entries_of(result), result.coverage.covered_seconds


def describe(report: Report) -> str:
    return f"{iso(report.window.start)} .. {iso(report.window.end)} by {report.by} (source: {report.source})"


def _add_engine_detail(report: Report, detail: Detail, by: str, attr_names: tuple[str, ...]) -> None:
    """Each group's workloads, and its GPU cost, utilisation and waste from the window's cost table."""
    totals = {g.name: g for g in by_group(
        (group_of(by, attr_names, ns, attrs), line) for (ns, _n, attrs), line in detail.merged.table.items()
        if ns != IDLE)}
    energy: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    e = detail.merged.energy
    for key, j in e.joules.items():
        ns, _node, attrs, _c = key
        got = energy[group_of(by, attr_names, ns, attrs)]
        got[0] += j / 3.6e6
        got[1] += e.grams.get(key, 0.0) / 1000
    for g in report.groups:
        g.energy_kwh, g.carbon_kg = energy.get(g.name, [0.0, 0.0])
        gw = totals.get(g.name)
        g.gpu = gw if gw is not None and (gw.gpu_cost > 0 or gw.observed_gpu_hours > 0) else None
        g.workloads = detail.grain.workloads.get(g.name, {})
