"""A chunk's one-pass rows, fetched: in sub-windows of bounded size, and on big clusters in namespace shards.

allocsteps.py builds the query and integrates its rows; this module decides what is asked in which
answer. On a cluster of more than `SHARD_PODS` pods one answer of the one-pass query would hold three
rows a pod and step (docs/scale.md), so a chunk is read per shard of namespaces; the allocation rows wait
per step index until every node's total is known, so shards cost no extra Prometheus work.
"""

from __future__ import annotations

import copy
import math
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from exporter.sources.allocsteps import (
    BY_NAMESPACE,
    BY_POD,
    REQUESTED,
    RESOURCE_GROUPS,
    SAMPLE_BUDGET,
    NodeScales,
    RowKey,
    StepRows,
    StepTotals,
    add_sums,
    none_of,
    overflow_scales,
    parse,
    read_steps,
    records_probe,
    scaled,
    step_expr,
    unscaled,
)
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import join_matchers, one_of
from exporter.sources.queries import Queries

# Pods per namespace shard of a chunk's one-pass query (see the module's docstring).
SHARD_PODS = 10_000


class SubWindows:
    """(start, end] as (end, length) of sub-windows whose answers hold about `SAMPLE_BUDGET` samples each: the
    first sized from an `expected` series count (none: one step), each next from the count the last answer
    had (`saw`). The one sizing rule of the raw, pod-level and split-namespace reads."""

    def __init__(self, start: int, end: int, step: int, expected: int) -> None:
        self.start, self.end, self.step = start, end, step
        self.steps = max(1, (end - start) // step)
        self.per_query = self._fit(expected) if expected else 1  # steps per sub-window

    def _fit(self, series: int) -> int:
        return max(1, min(self.steps, SAMPLE_BUDGET // series))

    def saw(self, series: int) -> None:
        """The series count of an answer of the last sub-window (at least 1), which sizes the next."""
        self.per_query = self._fit(max(series, 1))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        at = self.start
        while at < self.end:
            span = min(self.per_query * self.step, self.end - at)
            at += span
            yield at, span


@dataclass(frozen=True)
class Part:
    """One query's share of a chunk: the namespaces `q` selects (also matched by `scope` for recorded
    usage), rows per `by`."""

    q: Queries
    by: str
    scope: str
    pods: int
    capacity: bool = False  # node capacity rows too: on the one part whose selectors are not narrowed to
    # namespaces (a `namespace!~` matcher still matches the capacity series, which have no namespace)


def narrowed(q: Queries, only: str) -> Queries:
    """A copy of `q` whose kube-state-metrics and cAdvisor selectors also carry the namespace matcher `only`."""
    out = copy.copy(q)
    out.k, out.only = join_matchers(q.k, only), (*q.only, only)
    return out


def namespace_batches(namespaces: Iterable[str], pods: Mapping[str, int], limit: int) -> list[list[str]]:
    """Namespaces in groups of at most `limit` pods (a bigger namespace alone), in name order. Pure."""
    out: list[list[str]] = [[]]
    held = 0
    for ns in sorted(namespaces):
        n = max(pods.get(ns, 1), 1)
        if out[-1] and held + n > limit:
            out.append([])
            held = 0
        out[-1].append(ns)
        held += n
    return [b for b in out if b]


def chunk_parts(q: Queries, split: list[str], pod_counts: Mapping[str, int], shard_pods: int) -> list[Part]:
    """The queries a chunk is read in. Usually one (plus one per-pod query over the split namespaces);
    on a cluster of more than `shard_pods` pods, shards of namespaces of about that many pods each, so
    that no answer holds much more than 3 x shard_pods rows a step, plus a last query over every
    namespace no shard names (pods the counts missed are never lost)."""
    total = sum(pod_counts.values())
    plain = sorted(ns for ns in pod_counts if ns not in split)
    shards = namespace_batches(plain, pod_counts, shard_pods) if total > shard_pods else []
    listed = [*split, *(ns for shard in shards for ns in shard)]
    rest = none_of("namespace", listed) if listed else ""
    parts = [Part(narrowed(q, one_of("namespace", shard)), BY_NAMESPACE, one_of("namespace", shard),
                  sum(pod_counts.get(ns, 0) for ns in shard)) for shard in shards]
    parts.append(Part(narrowed(q, rest) if rest else q, BY_NAMESPACE, rest,
                      total - sum(p.pods for p in parts) - sum(pod_counts.get(ns, 0) for ns in split), True))
    if split:
        parts.append(Part(q.scoped(split), BY_POD, one_of("namespace", split),
                          sum(pod_counts.get(ns, 0) for ns in split)))
    return parts


class Pending:
    """One sub-window's allocation rows across the parts of a chunk, kept per step index until every
    node's total is known; requests and usage are summed into the totals at once. The node totals are
    added in the order rows arrive, as `allocsteps.node_scales` adds them, and scaled by the same formula."""

    def __init__(self, first: int, step: int, steps: int) -> None:
        self.first, self.step, self.steps = first, step, steps
        self.alloc: dict[RowKey, array[float]] = {}
        self.node_totals: dict[tuple[str, str], dict[float, float]] = {}
        self.capacity: NodeScales = {}

    def add(self, rows: StepRows[RowKey], policy: str, weight: float, into: StepTotals) -> None:
        self.capacity.update(rows.capacity)
        alloc = rows.allocation(policy, weight)
        add_sums(rows, {}, {}, into.requested, into.used, into.allocated)
        for key, samples in alloc.items():
            values = array("d", [math.nan]) * self.steps
            node_total = self.node_totals.setdefault((key.node, key.resource), {})
            for t, v in samples:
                values[round((t - self.first) / self.step)] = v
                node_total[t] = node_total.get(t, 0.0) + v
            self.alloc[key] = values

    def finish(self, into: StepTotals) -> None:
        scales = overflow_scales(self.capacity, self.node_totals)
        for key, values in self.alloc.items():
            by_step = scales[(key.node, key.resource)]
            samples = [(float(self.first + i * self.step), v) for i, v in enumerate(values) if not math.isnan(v)]
            acc = scaled(samples, by_step)
            if acc is not None:
                into.allocated[key] = into.allocated.get(key, 0.0) + acc
                if key.resource in REQUESTED:
                    into.held[key] = into.held.get(key, 0.0) + unscaled(samples, by_step)
        for node_res, by_step in scales.items():
            into.scales.setdefault(node_res, {}).update(by_step)


class StepFetcher:
    """Fetches a chunk's per-step rows in sub-windows of bounded size and integrates them."""

    def __init__(self, client: PrometheusClient, policy: str, weight: float, shard_pods: int = SHARD_PODS) -> None:
        self.client, self.policy, self.weight = client, policy, weight
        self.shard_pods = shard_pods
        self.series_seen = 0  # the largest series count of one part's answer: sizes the next sub-windows
        self.usage_sources: Counter[str] = Counter()  # per chunk and resource: "kube-prometheus" or "raw"

    def totals(self, q: Queries, start: int, end: int, split: list[str],
               pod_counts: Mapping[str, int] | None = None) -> StepTotals:
        """Sums over the steps of (start, end]; namespaces in `split` get per-pod rows, from a query over
        those namespaces only (every container is still evaluated once per step). Big clusters are read
        in namespace shards (`chunk_parts`). The first sub-window is sized from the pod counts (rows per
        step are at most 3 per pod: request, usage, allocation) until an answer tells the real count."""
        step, out = q.step, StepTotals()
        parts = chunk_parts(q, split, pod_counts or {}, self.shard_pods)
        records = self.kube_prometheus_usage(q, start, end)
        windows = SubWindows(start, end, step, self.series_seen or 3 * max(p.pods for p in parts))
        keys: dict[RowKey, RowKey] = {}  # one key object per row for all of the chunk's sums
        for at, span in windows:
            seen = 0
            # Two queries per sub-window and part, CPU and memory+GPU, so that a bad answer for one
            # resource's series (NaN, Inf) costs only that resource, as when each had its own query.
            for resources in RESOURCE_GROUPS:
                pending = Pending(at - span + step, step, span // step)
                for part in parts:
                    expr = step_expr(part.q, resources, by=part.by, capacity=part.capacity,
                                     records=records, scope=part.scope)
                    series = read_steps(self.client, expr, at, span, step)
                    seen = max(seen, len(series))
                    pending.add(parse(series, keys), self.policy, self.weight, out)
                    del series
                pending.finish(out)
            self.series_seen = max(seen, 1)
            windows.saw(self.series_seen)
        return out

    def kube_prometheus_usage(self, q: Queries, start: int, end: int) -> frozenset[str]:
        found = usage_records(self.client, q, start, end)
        for res in ("cpu", "memory"):
            self.usage_sources[f"{res}:{'kube-prometheus' if res in found else 'raw'}"] += 1
        return found


def usage_records(client: PrometheusClient, q: Queries, start: int, end: int) -> frozenset[str]:
    """The resources whose usage kube-prometheus' records give, present at the chunk's first and last
    step (never across a bridged gap, whose usage is read around it)."""
    probe = records_probe(q, start + q.step, end) if q.cadvisor_bridge is None else ""
    rows = client.query(probe, float(end)) if probe else []
    return frozenset(lb.get("resource", "") for lb, _ in rows)
