"""Showback reports: cost per team (or namespace, cost centre) over a window, against the previous one.

Two sources, and the report says which it used:

* `exporter`: the exporter's own counters in Prometheus, when its watermark passed exactly
  through both window bounds. Cost is `increase()` between those two scrapes, which is exact
  (no extrapolation: the range starts and ends on samples) and cheap.
* `computed`: otherwise, the same computation as `chargeback allocate`, from raw metrics.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from exporter.config.schema import Config
from exporter.core.allocation import CostResult, merge_all
from exporter.core.gpuwaste import GpuWaste, PodGpu, by_group, workload_waste
from exporter.core.names import IDLE, is_pseudo
from exporter.core.window import Window, iso
from exporter.engine.pipeline import Pipeline, command_pipeline
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import OwnSeries, duration, matcher
from exporter.vocab.errors import DataError

log = logging.getLogger(__name__)

# (namespace, attribution values, component) -> cost
Entries = dict[tuple[str, tuple[str, ...], str], float]


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
    workloads: dict[str, float] = field(default_factory=dict)  # namespace/workload -> allocated compute cost
    gpu: GpuWaste | None = None  # GPU cost, utilisation and waste (dcgm-exporter), None without GPU cost
    gpu_workloads: dict[str, float] = field(default_factory=dict)  # namespace/workload -> GPU waste

    def top_gpu_workloads(self, n: int = 3) -> list[tuple[str, float]]:
        return sorted(((k, v) for k, v in self.gpu_workloads.items() if v > 0), key=lambda kv: -kv[1])[:n]

    def top_workloads(self, n: int = 3) -> list[tuple[str, float]]:
        return sorted(self.workloads.items(), key=lambda kv: -kv[1])[:n]

    @property
    def change(self) -> float:
        return self.total - self.previous

    @property
    def change_pct(self) -> float | None:
        return 100 * self.change / self.previous if self.previous else None

    def top_namespaces(self, n: int = 3) -> list[tuple[str, float]]:
        return sorted(self.namespaces.items(), key=lambda kv: -kv[1])[:n]


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
    daily: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # group -> [(day start, cost)]

    @property
    def groups_total(self) -> float:
        return sum(g.total for g in self.groups)

    @property
    def adds_up(self) -> bool:
        return abs(self.groups_total - self.cluster_total) <= 1e-9 * max(1.0, abs(self.cluster_total))

    def only(self, name: str) -> Report:
        """The same report restricted to one group (what a team lead receives)."""
        return Report(self.window, self.previous, self.by, self.source, self.currency,
                      [g for g in self.groups if g.name == name], self.cluster_total, self.previous_total,
                      {k: v for k, v in self.daily.items() if k == name})


def group_of(by: str, attr_names: tuple[str, ...], namespace: str, attrs: tuple[str, ...]) -> str:
    if is_pseudo(namespace):
        return namespace
    if by == "namespace":
        return namespace
    i = attr_names.index(by)
    return attrs[i] if i < len(attrs) else namespace


def daily_groups(rows: list[tuple[dict[str, str], float]], by: str) -> dict[str, float]:
    """One day's exporter rows by group. Pseudo-namespaces carry no owner label: each is its own group,
    as `group_of` makes them in the report's table."""
    out: dict[str, float] = defaultdict(float)
    for lb, v in rows:
        ns = lb.get("namespace", "")
        out[ns if is_pseudo(ns) else lb.get(by, "")] += v
    return dict(out)


def entries_of(result: CostResult) -> Entries:
    out: Entries = defaultdict(float)
    for (ns, attrs, component, _res, _src), cost in result.costs.items():
        out[(ns, attrs, component)] += cost
    return dict(out)


def build(window: Window, previous: Window, by: str, attr_names: tuple[str, ...], source: str, currency: str,
          current: Entries, before: Entries, efficiency: dict[str, tuple[float, float, float]] | None = None,
          budgets: list[dict[str, Any]] | None = None) -> Report:
    """Pure: group the entries. `efficiency`: namespace -> (used, requested, allocated cost) for CPU."""
    groups: dict[str, Group] = {}
    for (ns, attrs, component), cost in current.items():
        g = groups.setdefault(group_of(by, attr_names, ns, attrs), Group(group_of(by, attr_names, ns, attrs)))
        g.total += cost
        g.by_component[component] = g.by_component.get(component, 0.0) + cost
        g.namespaces[ns] = g.namespaces.get(ns, 0.0) + cost
    for (ns, attrs, _component), cost in before.items():
        name = group_of(by, attr_names, ns, attrs)
        groups.setdefault(name, Group(name)).previous += cost
    for g in groups.values():
        used = requested = unused = 0.0
        for ns in g.namespaces:
            u, r, c = (efficiency or {}).get(ns, (0.0, 0.0, 0.0))
            used, requested = used + u, requested + r
            unused += c * max(0.0, 1 - u / r) if r else 0.0
        g.cpu_efficiency = used / requested if requested else None
        g.unused_request_cost = unused
        g.budgets = [b for b in (budgets or []) if b.get(by) == g.name or b.get("namespace") in g.namespaces]
    ordered = sorted(groups.values(), key=lambda g: (g.name == IDLE, -g.total))
    return Report(window, previous, by, source, currency, ordered, sum(current.values()), sum(before.values()))


class ReportSource:
    """Fetches entries for a window from the exporter's series when they cover it exactly, else computes."""

    def __init__(self, cfg: Config, client: PrometheusClient, pipeline: Pipeline) -> None:
        self.cfg, self.client, self.pipeline = cfg, client, pipeline
        self.attr_names = tuple(cfg.attribution.labels)
        self.own = OwnSeries(cfg.serve.watermarkSelector, cfg.prometheus.clusterSelector)

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

    def efficiency(self, result: CostResult) -> dict[str, tuple[float, float, float]]:
        eff: dict[str, tuple[float, float, float]] = {}
        for (ns, _node, _attrs), line in result.table.items():
            u, r, c = eff.get(ns, (0.0, 0.0, 0.0))
            eff[ns] = (u + line.cpu_usage_seconds, r + line.cpu_request_seconds, c + line.cpu_cost)
        return eff

    def exporter_efficiency(self, w: Window) -> dict[str, tuple[float, float, float]]:
        """Per namespace: (mean CPU usage/request over the window, 1, allocated CPU cost) from the exporter."""
        at, own = float(w.end), self.own
        ratio = {lb["namespace"]: v for lb, v in self.client.query(own.mean_efficiency("cpu", w.seconds), at)}
        cost = {lb["namespace"]: v for lb, v in self.client.query(own.cost_increase(
            ["namespace"], duration(w.seconds), matcher("resource", "cpu"), matcher("component", "allocated")), at)}
        return {ns: (r, 1.0, cost.get(ns, 0.0)) for ns, r in ratio.items()}

    def exporter_daily(self, days: list[Window], by: str) -> dict[str, list[tuple[int, float]]]:
        """Approximate daily cost per group for the chart (increase over each day)."""
        out: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for day in days:
            expr = self.own.cost_increase(sorted({by, "namespace"}), duration(day.seconds))
            for group, v in daily_groups(self.client.query(expr, float(day.end)), by).items():
                out[group].append((day.start, v))
        return dict(out)

    def budgets(self, at: float) -> list[dict[str, Any]]:
        rows = self.client.query(OwnSeries.BUDGET_SERIES["usage"], at)
        return [{**lb, "usage": v} for lb, v in rows]


def workload_costs(pipeline: Pipeline, window: Window, by: str, attr_names: tuple[str, ...]
                   ) -> dict[str, dict[str, float]]:
    """Allocated CPU/memory/GPU cost per group and workload (namespace/name), one day at a time."""
    from exporter.core.allocation import priced
    from exporter.core.attribution import resolve
    from exporter.core.pricing import price_nodes
    from exporter.core.workloads import name_of

    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    keys = list(pipeline.cfg.attribution.labels.values())
    for day in window.chunks(86400, boundary=86400):
        _capacity, nodes = pipeline.fetcher.node_facts(day)
        rates = price_nodes(nodes, pipeline.cfg.pricing, pipeline.shipped)
        owners = resolve(pipeline.metadata(day), keys)
        controllers = pipeline.fetcher.workloads(day)
        for res in ("cpu", "memory", "gpu"):
            expr = pipeline.queries.allocated_integral(res, day.seconds, every_pod=True)
            for lb, v in pipeline.client.query(expr, float(day.end)):
                node, ns, pod = lb.get("node", ""), lb.get("namespace", ""), lb.get("pod", "")
                if node not in rates:
                    continue
                cost = priced(res, v * pipeline.step, rates[node])
                out[group_of(by, attr_names, ns, owners.of(ns, pod))][f"{ns}/{name_of(controllers, ns, pod)}"] += cost
    return {g: dict(w) for g, w in out.items()}


def make_report(cfg: Config, window: Window, by: str, now: float, source: str = "auto") -> Report:
    """Build the report for `window` against the window of the same length before it."""
    client = PrometheusClient(cfg.prometheus)
    pipeline = command_pipeline(cfg, client)
    src = ReportSource(cfg, client, pipeline)
    previous = Window(window.start - window.seconds, window.start, window.step)
    days = list(window.chunks(86400, boundary=86400))  # a report period: a few dozen days
    if source in ("auto", "exporter"):
        current, before = src.from_exporter(window, now), src.from_exporter(previous, now)
        if current is not None and before is not None:
            report = build(window, previous, by, src.attr_names, "exporter", cfg.pricing.currency, current, before,
                           src.exporter_efficiency(window), src.budgets(window.end))
            report.daily = src.exporter_daily(days, by)
            _add_workloads(report, workload_costs(pipeline, window, by, src.attr_names))
            _add_gpu(report, None, pipeline, by, src.attr_names)
            return report
        if source == "exporter":
            raise DataError(f"the exporter's series do not cover {iso(window.start)}..{iso(window.end)} exactly "
                            "(no scrape with those watermarks); use --source computed")
    results = [pipeline.compute(day) for day in days]
    merged = merge_all(results)
    assert merged is not None
    try:
        before = entries_of(pipeline.compute(previous))
    except DataError as e:  # e.g. the first week after installing: no history before the window
        log.warning("previous period %s..%s has no data (%s); changes are shown as new",
                    iso(previous.start), iso(previous.end), e)
        before = {}
    report = build(window, previous, by, src.attr_names, "computed", cfg.pricing.currency, entries_of(merged),
                   before, src.efficiency(merged), src.budgets(window.end))
    daily: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for day, result in zip(days, results, strict=True):
        per: dict[str, float] = defaultdict(float)
        for (ns, attrs, _component), cost in entries_of(result).items():
            per[group_of(by, src.attr_names, ns, attrs)] += cost
        for name, cost in per.items():
            daily[name].append((day.start, cost))
    report.daily = dict(daily)
    _add_workloads(report, workload_costs(pipeline, window, by, src.attr_names))
    _add_gpu(report, merged, pipeline, by, src.attr_names)
    return report


def _add_workloads(report: Report, costs: dict[str, dict[str, float]]) -> None:
    for g in report.groups:
        g.workloads = costs.get(g.name, {})


def describe(report: Report) -> str:
    return f"{iso(report.window.start)} .. {iso(report.window.end)} by {report.by} (source: {report.source})"


def gpu_workloads(pipeline: Pipeline, window: Window, by: str, attr_names: tuple[str, ...]
                  ) -> dict[str, dict[str, GpuWaste]]:
    """GPU cost and waste per group and workload (namespace/name), one day at a time (per-pod queries)."""
    from exporter.core.attribution import resolve
    from exporter.core.pricing import price_nodes
    from exporter.core.workloads import name_of

    out: dict[str, dict[str, GpuWaste]] = defaultdict(dict)
    keys = list(pipeline.cfg.attribution.labels.values())
    for day in window.chunks(86400, boundary=86400):
        _capacity, nodes = pipeline.fetcher.node_facts(day)
        rates = {n: r.gpu for n, r in price_nodes(nodes, pipeline.cfg.pricing, pipeline.shipped).items()}
        owners = resolve(pipeline.metadata(day), keys)
        pods: dict[tuple[str, str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for expr in (pipeline.queries.allocated_integral("gpu", day.seconds, every_pod=True),
                     pipeline.queries.gpu_usage_integral(day.seconds, every_pod=True)):
            for lb, v in pipeline.client.query(expr, float(day.end)):
                pods[(lb.get("namespace", ""), lb.get("node", ""), lb.get("pod", ""))][lb.get("kind", "held")] += v
        rows = [PodGpu(ns, node, pod, q["held"] * pipeline.step, q["gpu"] * pipeline.step,
                       q["gpu_observed"] * pipeline.step) for (ns, node, pod), q in pods.items()]
        controllers = pipeline.fetcher.workloads(day)
        names = {(p.namespace, p.pod): name_of(controllers, p.namespace, p.pod) for p in rows}
        for p in rows:
            group = out[group_of(by, attr_names, p.namespace, owners.of(p.namespace, p.pod))]
            for name, w in workload_waste([p], rates, names).items():
                group.setdefault(name, GpuWaste(name)).add(w)
    return dict(out)


def _add_gpu(report: Report, result: CostResult | None, pipeline: Pipeline, by: str,
             attr_names: tuple[str, ...]) -> None:
    """Each group's GPU cost, utilisation and waste (from the window's table, else summed from the
    workloads), and its top workloads by GPU waste."""
    workloads = gpu_workloads(pipeline, report.window, by, attr_names)
    if result is not None:
        totals = {g.name: g for g in by_group(
            (group_of(by, attr_names, ns, attrs), line) for (ns, _n, attrs), line in result.table.items()
            if ns != IDLE)}
    else:
        totals = {name: GpuWaste(name) for name in workloads}
        for name, ws in workloads.items():
            for w in ws.values():
                totals[name].add(w)
    for g in report.groups:
        gw = totals.get(g.name)
        g.gpu = gw if gw is not None and (gw.gpu_cost > 0 or gw.observed_gpu_hours > 0) else None
        g.gpu_workloads = {k: w.waste_cost for k, w in workloads.get(g.name, {}).items()}
