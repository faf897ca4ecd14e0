"""The recorded-rule queries: what the mixin's allocation rules recorded, read per chunk.

Built over a `Queries` (its selectors, policy labels and the chunk's subquery range), as gpuqueries.py
is; the rules themselves are exporter/sources/recordrules.py (rules/rules/allocation.libsonnet records them).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from exporter.sources.promql import join_matchers, matcher, one_of, quote
from exporter.sources.queries import KSM_RESOURCE, Queries, _finite, _sel
from exporter.vocab.durations import format_duration

# What the mixin records every rule interval: per resource group, one labelled series per (namespace, node,
# resource, part), part "request", "usage" and, for the `max` policy, "allocated" (the rows of the raw path's
# one-pass query, exporter/sources/recordrules.py), and its evaluation heartbeat, labelled layout="v2". No
# GPUs: what each container holds of physical devices is read per container on every path (engine/gpufetch.py).
RECORDED_PARTS = "namespace_node:chargeback_allocation:sum"
LAYOUT = 'layout="v2"'
PART = {"requested": "request", "used": "usage"}
# The per-pair sums recorded before it (layout v1), deprecated: read where history holds only them.
UNITS = {"cpu": "cpu_cores", "memory": "memory_bytes"}
RECORDED = {(kind, res): f"namespace_node:chargeback_{kind}_{UNITS[res]}:sum"
            for kind in ("allocated", "requested", "used") for res in UNITS}
RULES_EVALUATED = "cluster:chargeback_allocation_rules_evaluated:count"


def _just_under(seconds: int) -> str:
    """A range a millisecond short of `seconds`: it holds one rule sample per interval, whatever the phase."""
    return f"[{seconds * 1000 - 1}ms]"


def recorded_coverage(q: Queries, chunk_seconds: int) -> str:
    """Three counts over the chunk, by label `count`: `steps`, the steps holding a rule evaluation in what
    they read (their last step, less 1 ms), `v2`, those holding one of the labelled record's rules, and
    `evaluations`, all of them. The rules cover the chunk only if every step holds one: at an interval
    shorter than the resolution a missed evaluation can empty a step while the total still exceeds the
    steps (core/coverage.rule_gap). Steps of any series: replicated rules (an HA pair writing into one
    store) record the heartbeat twice, and the recorded amounts are read from whichever replica recorded
    the step (`_recorded`); evaluations per series, so one replica's do not add to the other's."""
    def steps(matchers: str) -> str:
        beat = f"{RULES_EVALUATED}{_sel(matchers)}{_just_under(q.step)}"
        return f"count_over_time((max(last_over_time({beat}))){q._sub(chunk_seconds)})"

    evaluations = f"count_over_time({RULES_EVALUATED}{_sel(q.r)}{_just_under(chunk_seconds)})"
    return " or ".join(f'label_replace(max({expr}), "count", "{name}", "", "")' for name, expr in (
        ("steps", steps(q.r)), ("v2", steps(join_matchers(q.r, LAYOUT))), ("evaluations", evaluations)))


def recorded_part(q: Queries, kind: str, resource: str, select: Callable[[str], str]) -> str:
    """Per (namespace, node), `kind` of `resource` from the labelled record, each selector (its matchers)
    passed through `select`: a request or usage part, or the allocation under this policy, which only
    `max` records; the linear policies' is derived from the other two, as on the raw path."""
    def part(name: str) -> str:
        return select(join_matchers(matcher("part", name), matcher("resource", KSM_RESOURCE[resource])))

    if kind != "allocated":
        return part(PART[kind])
    if q.policy == "weighted":  # tagged apart, so that a pair with only one of the two keeps it
        weighted = " or ".join(f'label_replace({w} * {part(name)}, "part", "{name}", "", "")'
                               for w, name in zip(q.weights, ("request", "usage"), strict=True))
        return f"sum by (namespace, node) ({weighted})"
    return part({"max": "allocated", "request": "request", "usage": "usage"}[q.policy])


def _recorded(q: Queries, kind: str, resource: str, scope: str = "") -> str:
    """The one sample recorded within each step, per (namespace, node). Not the bare series: a pair that
    vanished (a pod finished) would live on for the 5-minute lookback where no staleness marker was
    written. The range is a millisecond short of the step, so that a group evaluating exactly on the
    step boundary does not also see the previous step's sample, while any other phase is kept. `max`,
    not the series as they are: replicated rules (an HA Prometheus pair writing into Thanos without a
    replica label, two vmalert instances) record each pair twice, under an extra label or none. Where
    history holds both layouts (`mixed`, the release after the labelled record came in), each step reads
    the labelled record and, for the pairs it lacks there, the deprecated name."""
    def last(metric: str, matchers: str = "") -> str:
        span = _just_under(q.step)
        return f"max by (namespace, node) (last_over_time({metric}{_sel(q.r, matchers, scope)}{span}))"

    v2 = recorded_part(q, kind, resource, partial(last, RECORDED_PARTS))
    v1 = last(RECORDED[kind, resource])
    return {"v2": v2, "v1": v1}.get(q.layout, f"({v2} or {v1})")


def _recorded_scaled(q: Queries, resource: str, scope: str = "") -> str:
    """The recorded allocation (of the namespaces `scope` matches) times its node's overflow scale."""
    alloc = _recorded(q, "allocated", resource)
    scale = f"clamp_max({q.capacity(resource)} / on (node) (sum by (node) ({alloc}) > 0), 1)"
    own = _recorded(q, "allocated", resource, scope) if scope else alloc
    return _finite(f"{own} * on (node) group_left () {scale}")


def recorded_allocated_integral(q: Queries, resource: str, chunk_seconds: int) -> str:
    """Allocation per (namespace, node) summed over steps, from the recorded sums; the overflow scale is
    applied at query time."""
    return f"sum_over_time({_recorded_scaled(q, resource)}{q._sub(chunk_seconds)})"


def recorded_allocated_steps(q: Queries, span: int, namespaces: list[str]) -> str:
    """Per step over the `span` seconds before the evaluation time, the scaled recorded allocation of
    `namespaces` per (namespace, node, resource), to split between their owners (core/ownershare.py)."""
    parts = " or ".join(f'label_replace({_recorded_scaled(q, res, one_of("namespace", namespaces))}, '
                        f'"resource", {quote(KSM_RESOURCE[res])}, "", "")' for res in ("cpu", "memory"))
    return f"({parts})[{span}s:{format_duration(q.step)}]"


def recorded_held_integral(q: Queries, resource: str, chunk_seconds: int) -> str:
    """The recorded allocation per (namespace, node) summed over steps before the overflow scale, at the
    steps the scaled integral counts (OpenCost's cpuCores, ramBytes)."""
    alloc = _recorded(q, "allocated", resource)
    counted = f"{alloc} and on (node) (sum by (node) ({alloc}) > 0) and on (node) {q.capacity(resource)}"
    return f"sum_over_time({_finite(counted)}{q._sub(chunk_seconds)})"


def recorded_requested_integral(q: Queries, chunk_seconds: int) -> str:
    parts = " or ".join(f'label_replace({_recorded(q, "requested", res)}, "resource", {quote(res)}, "", "")'
                        for res in ("cpu", "memory"))
    return f"sum_over_time({_finite(parts)}{q._sub(chunk_seconds)})"


def recorded_used_integral(q: Queries, resource: str, chunk_seconds: int) -> str:
    return f"sum_over_time({_finite(_recorded(q, 'used', resource))}{q._sub(chunk_seconds)})"
