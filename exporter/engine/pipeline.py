"""The pipeline for one window: run the chunk queries, price the nodes, cost, attribute and share.

This is the only place that connects fetching (`prometheus`), pricing, attribution and
the pure allocation and sharing math; `allocate`, `/allocation/compute` and `serve` all
go through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol

from exporter.config.pricebook import NetworkAmount
from exporter.config.schema import Config
from exporter.core.allocation import CostResult, add_assets, cost_chunk, node_labels
from exporter.core.attribution import Owners, annotation_budgets, resolve
from exporter.core.coverage import Coverage, Segment, State, plan
from exporter.core.gpuwaste import add_waste
from exporter.core.pricing import load_shipped_prices, price_nodes, unmatched_rules
from exporter.core.sharing import ShareInputs, distribute
from exporter.core.window import Chunks, Window, iso
from exporter.engine.chunkguard import handed_on, in_halves, partial_coverage, probe_in_halves
from exporter.engine.energyfetch import EnergyFetch
from exporter.engine.fetch import Fetch
from exporter.engine.gpufetch import unpriced_gpus
from exporter.engine.limits import in_order
from exporter.engine.spans import widen_table
from exporter.engine.warnlog import WarningLog
from exporter.sources.promanswer import PartialAnswer
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import with_window
from exporter.sources.queries import LOOKBACK_SECONDS, Queries
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import DataError
from exporter.vocab.labels import Metadata

Progress = Callable[[Window], None]
MetadataSource = Callable[[Window], Metadata]


@dataclass(frozen=True)
class BillPrices:
    """Reconciled prices: a factor per node and per asset that turns the computed cost into the bill's
    effective cost, and unmatched bill lines to share, per second of window (reconcile.bill_prices)."""

    node_factors: dict[str, float] = field(default_factory=dict)
    asset_factors: dict[str, float] = field(default_factory=dict)
    extra_fixed: dict[str, float] = field(default_factory=dict)
    nat: dict[str, float] = field(default_factory=dict)  # NAT gateway lines per second, spread by internet bytes

USAGE_MAX_NAMESPACES = 50  # namespaces per max-usage query (rawAllocationOnly)


class Granularity(Protocol):
    """Rows below (namespace, node), asked for explicitly (exporter/outputs/podrows.py): told the window, then
    handed every costed segment with the queries, metadata, owners and cost it was costed with."""

    def begin(self, pipeline: Pipeline, window: Window) -> None: ...

    def add_segment(self, pipeline: Pipeline, w: Window, q: Queries, meta: Metadata, owners: Owners,
                    result: CostResult, node_scales: dict[tuple[str, str], dict[float, float]] | None) -> None: ...


class Pipeline:
    """Cost one window: plan its chunks, fetch (its `Fetch`, engine/fetch.py), price, cost, attribute and share."""

    fetch_type: type[Fetch] = Fetch  # /assets swaps in one that keeps each chunk's priced assets
    @property
    def running_spans(self) -> bool:
        """Whether rows and pods get their running span (engine/spans.py: two placement subqueries per segment)
        and their limits (Fetch.read_limits). Set by the doors that print OpenCost's allocations (/allocation
        and what is cut from it, allocate); counters, reports and FOCUS read costs only and skip the queries."""
        return self.fetcher.read_limits

    @running_spans.setter
    def running_spans(self, on: bool) -> None:
        self.fetcher.read_limits = on

    def __init__(self, cfg: Config, client: PrometheusClient, metadata: MetadataSource | None = None,
                 warnings: WarningLog | None = None, bill: BillPrices | None = None) -> None:
        self.bill = bill or BillPrices()
        cfg, superseded = with_bill_nat(cfg, self.bill.nat)
        self.cfg = cfg
        self.client = client
        self.queries = Queries(cfg.prometheus, cfg.allocation)
        self.step = parse_duration(cfg.allocation.resolution)
        self.chunk = parse_duration(cfg.allocation.chunk)
        # Bounded: counted per kind, last message per kind (serve passes one that logs a kind hourly).
        self.warnings = warnings if warnings is not None else WarningLog()
        for name in superseded:
            self.warnings.warn("nat-superseded", f"pricing.network.monthly {name!r}: the bill's line for that "
                                                 "NAT gateway is charged instead of the configured amount")
        self.fetcher = self.fetch_type(cfg, client, self.queries, self.step, self.warnings)
        self.metadata = metadata or self.fetcher.prometheus_metadata
        self._meta_from_prometheus = metadata is None  # then a bridged gap reads labels as of its start
        self._ksm_seen: bool | None = None  # whether kube-state-metrics reported lately (asked once)
        # Serve sets this: a partial answer then fails its cycle, retried next cycle, rather than leave
        # accrued history uncovered for good (exporter/engine/chunkguard.py).
        self.partial_fails = False
        self.shipped = load_shipped_prices() if cfg.pricing.shippedPrices else None
        self.energy = EnergyFetch(cfg, client) if cfg.energy.enabled else None

    def compute(self, window: Window, progress: Progress | None = None,
                cancel: threading.Event | None = None, granularity: Granularity | None = None) -> CostResult:
        """Cost a window chunk by chunk; raises a ChargebackError naming the cause on bad input.

        With `allocation.concurrency` > 1, chunks are queried in parallel (as Thanos' query-frontend
        splits by interval) but merged in window order, so the result is the same to the last bit.
        Chunks are made as they are queried; `cancel` (a request's deadline) stops between chunks.
        With `granularity`, each costed segment is also handed to it (pod/container rows); the
        namespace-level queries are the same, and the result is too but for its cost table, left empty:
        the granularity has the rows, and a window's table is the biggest thing it would hold (docs/scale.md).
        """
        merged: CostResult | None = None
        chunk_fn = self.compute_chunk
        if granularity is not None:
            granularity.begin(self, window)
            chunk_fn = partial(self.compute_chunk, detail=granularity)
        pieces = self.chunks(window)
        workers = min(self.cfg.allocation.concurrency, len(pieces))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="chunk") if workers > 1 else None
        try:
            for piece, result in in_order(pieces, chunk_fn, pool, 2 * workers, cancel):
                if granularity is not None:
                    result.table = {}
                merged = adopt_or_merge(merged, result)
                if progress:
                    progress(piece)
        finally:  # on an error, drop the chunks not started rather than wait for them
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if merged is None:
            return CostResult(window.start, window.end)
        merged.start, merged.end = window.start, window.end
        return merged

    def chunks(self, window: Window) -> Chunks:
        """A window's chunks, cut at multiples of the chunk size (UTC), not from the window's start: `24h` asked a
        minute later, `2d` or `12h` share every chunk but the first and the last, so the same queries at the same
        times, which serve's answer cache keeps (sources/resultcache.py), and whole chunks match the pod-level
        volume query's chunk ends (outputs/podvolumes.py). Costs add up step by step: where a window is cut
        does not change them."""
        return window.chunks(self.chunk, boundary=self.chunk)

    def coverage_plan(self, w: Window, now: float | None = None) -> list[Segment]:
        """The chunk's segments (exporter/core/coverage.py) from one probe reaching maxGapBridge either side
        (never past `now`: serve must not mistake "no data after yet" for a bridgeable gap)."""
        q, bridge = self.queries, self.queries.max_gap_bridge
        at = w.end + bridge if now is None else max(w.end, min(w.end + bridge, int(now) // self.step * self.step))
        present: dict[str, set[int]] = {}

        def probe(end: int, span: int, containers: bool = False
                  ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
            return self.client.query_range_raw(q.coverage_probe(span, containers), float(end))

        for labels, samples in probe_in_halves(probe, at, at - w.start + bridge, self.step, self._warn):
            present.setdefault(labels.get("source", ""), set()).update(int(t) for t, _v in samples)
        sources = ("ksm", "cadvisor") if self.cfg.allocation.policy != "request" else ("ksm",)
        if "cadvisor" in sources and present.get("ksm") and not present.get("cadvisor"):
            # No root cgroup at any step while kube-state-metrics has data (not scraped, or dropped with the
            # cgroups that have no `container` label): the container series say, as they always did. Elsewhere
            # the root cgroups' gaps are the containers', from the same scrapes of the same kubelets.
            present["cadvisor"] = {int(t) for _lb, samples in probe_in_halves(
                partial(probe, containers=True), at, at - w.start + bridge, self.step, self._warn) for t, _v in samples}
        segments = plan(w.start, w.end, self.step, present, bridge, sources, horizon=at)
        if not present.get("ksm"):
            self.require_ksm(w)
        return segments

    def require_ksm(self, w: Window) -> None:
        """Data missing around a chunk is reported, not an error, unless Prometheus holds no
        kube-state-metrics series at all: then it is not scraped (or the selector is wrong)."""
        if self._ksm_seen is None:
            self._ksm_seen = self.client.series_exist(self.queries.ksm_series())
        if not self._ksm_seen:
            raise DataError(
                f"no node capacity in Prometheus for {iso(w.start)}..{iso(w.end)}: "
                "kube_node_status_capacity is missing (is kube-state-metrics scraped?)"
            )

    def compute_chunk(self, w: Window, segments: list[Segment] | None = None,
                      detail: Granularity | None = None) -> CostResult:
        """Cost a chunk segment by segment: covered and bridged ones are costed, uncovered ones only recorded.

        A segment over Prometheus' sample limit is costed in halves; a piece answered only in part is
        uncovered (exporter/engine/chunkguard.py), or with `partial_fails` (serve) fails the chunk."""
        result: CostResult | None = None
        coverage = Coverage()
        if segments is None:
            try:
                segments = self.coverage_plan(w)
            except PartialAnswer as e:
                if self.partial_fails:
                    raise
                segments = []
                coverage.merge(partial_coverage(w, e, self._warn))
        for seg in segments:
            ksm, cad = seg.state("ksm"), seg.state("cadvisor")
            if ksm.state is State.UNCOVERED:
                coverage.add_segment(seg)
                continue  # no capacity, no placement: nothing is invented
            q = self.queries if seg.covered else self.queries.bridged(
                (ksm.before, ksm.after) if ksm.state is State.BRIDGED and ksm.before and ksm.after else None,
                (cad.before, cad.after) if cad.state is State.BRIDGED and cad.before and cad.after else None)
            piece = w if len(segments) == 1 else Window(seg.start, seg.end, self.step)
            # Chunks with any gap read raw series: the recorded rules have nothing for the gap either.
            cost = partial(self.cost_segment, q=q, recorded=len(segments) == 1 and seg.covered, detail=detail)
            for sub, part in in_halves(cost, piece, self._warn):
                if isinstance(part, PartialAnswer):
                    if self.partial_fails:
                        raise part
                    coverage.merge(partial_coverage(sub, part, self._warn))
                    continue
                coverage.add_segment(replace(seg, start=sub.start, end=sub.end))
                coverage.merge(part.coverage)
                result = adopt_or_merge(result, part)
        if result is None:
            result = CostResult(w.start, w.end)
        result.start, result.end, result.coverage = w.start, w.end, coverage
        return result

    def cost_segment(self, w: Window, q: Queries, recorded: bool = True,
                     detail: Granularity | None = None) -> CostResult:
        meta = self.fetcher.prometheus_metadata(w, q) if self._meta_from_prometheus else self.metadata(w)
        for problem in annotation_budgets(meta)[1]:
            self._warn(problem, "bad_budget")
        owners = resolve(meta, self.fetcher.attribution_keys)
        usage = self.fetcher.fetch(w, owners, meta, q, recorded)
        rates = price_nodes(usage.nodes, self.cfg.pricing, self.shipped)
        defaulted = sorted(n for n, r in rates.items() if r.source.startswith("default"))
        if defaulted:
            self._warn(f"{len(defaulted)} node(s) priced at default rates (no price-book rule, OpenCost metric "
                       f"or shipped price): {', '.join(defaulted[:10])}", "default_priced")
        unpriced = unpriced_gpus(usage.nodes, rates, self.cfg.pricing)
        if unpriced:
            self._warn(f"{len(unpriced)} GPU node(s) priced at the default GPU rate (no GPU price for their model "
                       f"in gpu.prices or the shipped list): {', '.join(unpriced[:10])}", "default_gpu_priced")
        for i in unmatched_rules(usage.nodes, self.cfg.pricing):
            self._warn(f"pricing.rules.{i} matches no node (match {self.cfg.pricing.rules[i].match})",
                       "unmatched_rule")
        if self.bill.node_factors:
            rates = {n: replace(r, cpu=r.cpu * f, ram=r.ram * f, gpu=r.gpu * f, source=r.source + "+bill")
                     if (f := self.bill.node_factors.get(n)) is not None else r for n, r in rates.items()}
        result = cost_chunk(usage, rates)
        if self.running_spans:
            widen_table(result.table, self.client, q, w, owners)
        result.node_labels = node_labels(usage.nodes, self.cfg.allocation.nodeLabels)
        scales, capacity = usage.node_scales, usage.capacity
        del usage  # the chunk's rows per (namespace, node, owner, resource), not needed below
        add_waste(result)
        assets, network = self.fetcher.fetch_assets(w, q)
        if self.bill.asset_factors:
            assets = [replace(a, cost=a.cost * self.bill.asset_factors.get(a.asset, 1.0)) for a in assets]
        add_assets(result, assets, owners.of)
        result.coverage.add_network(network)
        inputs = self.share_inputs(w, meta)
        shared = distribute(result, self.cfg.sharing, inputs)
        for note in shared.notes:
            self._warn(note, "share_fallback")
        result.costs, result.pools = shared.costs, shared.pools
        if self.energy is not None:  # after costing, from its table: energy never changes a cost
            result.energy = self.energy.compute(w, result, capacity, inputs.shared, q)
            for note in result.energy.notes:
                self._warn(note, "energy")
        result.fallbacks, result.metadata = frozenset(shared.fallbacks), meta
        if detail is not None:
            with handed_on():  # its rows go out batch by batch: the piece cannot be asked again
                detail.add_segment(self, w, q, meta, owners, result, scales)
        return result

    def usage_max(self, window: Window, wanted: set[tuple[str, str, str]], cancel: threading.Event | None = None,
                  gpu: frozenset[tuple[str, str, str]] = frozenset()) -> dict[tuple[str, str, str], dict[str, float]]:
        """(namespace, pod, container) -> the highest cpu and memory usage over the window, for the `wanted`
        containers only: chunk by chunk (a month of 1-minute points in one subquery would be 43,200 per
        container) and USAGE_MAX_NAMESPACES namespaces at a time, so no answer holds every container. The `gpu`
        containers (those holding GPUs) get their pod's highest GPU busy fraction (dcgm-exporter sees pods)."""
        out: dict[tuple[str, str, str], dict[str, float]] = {}
        gpu_pods: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        for key in gpu:
            gpu_pods.setdefault(key[:2], []).append(key)
        namespaces = sorted({ns for ns, _p, _c in wanted})
        for i in range(0, len(namespaces), USAGE_MAX_NAMESPACES):
            q = self.queries.scoped(namespaces[i:i + USAGE_MAX_NAMESPACES])
            for piece in self.chunks(window):
                if cancel is not None and cancel.is_set():
                    return out
                for res in ("cpu", "memory", "gpu"):
                    if res == "gpu" and not gpu_pods:
                        continue
                    expr = q.gpu_busy_max(piece.seconds) if res == "gpu" else q.usage_max(res, piece.seconds)
                    for labels, v in self.client.query(expr, float(piece.end)):
                        pod = (labels.get("namespace", ""), labels.get("pod", ""))
                        keys = gpu_pods.get(pod, []) if res == "gpu" else [(*pod, labels.get("container", ""))]
                        for key in keys:
                            if key in wanted:
                                seen = out.setdefault(key, {})
                                seen[res] = max(seen.get(res, v), v)
        return out

    def gpu_devices(self, window: Window, pods: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str, str]]:
        """(namespace, pod) -> (device, model, UUID) of a GPU dcgm-exporter saw the pod hold over the window (of
        several, the last by UUID, as a Prometheus answer lists them), for the `pods` only."""
        out: dict[tuple[str, str], tuple[str, str, str]] = {}
        namespaces = sorted({ns for ns, _p in pods})
        for i in range(0, len(namespaces), USAGE_MAX_NAMESPACES):
            q = self.queries.scoped(namespaces[i:i + USAGE_MAX_NAMESPACES])
            for lb, _v in self.client.query(q.gpu_devices(window.seconds), float(window.end)):
                pod = (lb.get("namespace", ""), lb.get("pod", ""))
                found = (lb.get("device", ""), lb.get("modelName", ""), lb.get("UUID", ""))
                if pod in pods and found[2] >= out.get(pod, ("", "", ""))[2]:
                    out[pod] = found
        return out

    def _warn(self, text: str, kind: str = "other") -> None:
        self.warnings.warn(kind, text)

    def share_inputs(self, w: Window, meta: Metadata) -> ShareInputs:
        s = self.cfg.sharing
        shared = set(s.shareNamespaces)
        if s.shareLabels:
            shared |= {ns for ns, labels in meta.namespaces.items()
                       if all(labels.get(k) == v for k, v in s.shareLabels.items())}
        fraction = w.seconds / (s.hoursPerMonth * 3600)
        fixed = {name: monthly * fraction for name, monthly in s.fixed_costs().items()}
        for name, per_second in self.bill.extra_fixed.items():
            fixed[name] = fixed.get(name, 0.0) + per_second * w.seconds
        weights: dict[str, dict[str, float]] = {}
        for source, policy in s.policies.items():
            if policy.split == "metric" and policy.query:
                # At least the lookback: a 1-minute serve piece in a scrape gap still gets its weights.
                expr = with_window(policy.query, max(w.seconds, LOOKBACK_SECONDS))
                rows = self.client.query(expr, float(w.end))
                weights[source] = {lb.get(policy.namespaceLabel, ""): v for lb, v in rows if v > 0}
        return ShareInputs(frozenset(shared), fixed, weights, tuple(self.cfg.attribution.labels))


def with_bill_nat(cfg: Config, nat: dict[str, float]) -> tuple[Config, list[str]]:
    """The bill's NAT gateway lines as network amounts spread by internet-bound bytes, next to the configured
    ones: a rate per second is a monthly amount of rate x hoursPerMonth hours, prorated back per window.
    A configured amount named as a billed gateway (`nat-0abc` or `bill:nat-0abc`) is that gateway's estimate:
    the bill supersedes it rather than charge the gateway twice. Returns the superseded names."""
    if not nat:
        return cfg, []
    net = cfg.pricing.network
    month = cfg.sharing.hoursPerMonth * 3600
    billed = set(nat) | {name.removeprefix("bill:") for name in nat}
    superseded = [a.name for a in net.monthly if a.name in billed]
    amounts = [*(a for a in net.monthly if a.name not in billed),
               *(NetworkAmount(name=name, monthly=rate * month, spreadBy="internet")
                 for name, rate in sorted(nat.items()))]
    pricing = cfg.pricing.model_copy(update={"network": net.model_copy(update={"monthly": amounts})})
    return cfg.model_copy(update={"pricing": pricing}), superseded


def adopt_or_merge(merged: CostResult | None, result: CostResult) -> CostResult:
    """The first result becomes the accumulator rather than being copied into an empty one: copying a
    chunk's cost table held two of them at once."""
    if merged is None:
        return result
    merged.merge(result)
    return merged


def command_pipeline(cfg: Config, client: PrometheusClient | None = None, bill: BillPrices | None = None) -> Pipeline:
    """A one-shot command's pipeline: owner labels from the Kubernetes API when `attribution.source`
    says so, as serve reads them (every command, so they all attribute alike)."""
    from exporter.sources.kube import metadata_source

    return Pipeline(cfg, client or PrometheusClient(cfg.prometheus), metadata_source(cfg.attribution, watch=False),
                    bill=bill)
