"""The raw allocation path in one pass: each per-container expression is evaluated once per step.

PromQL has no common-subexpression elimination, so the former plan (one `sum_over_time` query per
resource and kind, the allocation repeated inside the per-node overflow denominator, the placement
join rebuilt in each) paid for the per-container work about six times per step. Here one query per
chunk tags request, usage, allocation and node capacity with a `part` label, joins the placement once,
and returns per-step rows per (namespace, node, resource, part): namespaces x nodes, never containers.
The overflow scale, `min(1, capacity / sum of the node's allocation)`, is then worked out from the
same numbers, step by step, exactly as the server-side expression did (`node_scales`, `add_sums`, pure;
stepfetch.py's `Pending` applies them to a chunk's answers).

The rows are per step, so a chunk is fetched in sub-windows holding at most `SAMPLE_BUDGET` samples
(sized from the series count of the previous answer), which keeps the client's memory bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from exporter.sources.prometheus import Labels, PrometheusClient
from exporter.sources.promql import matcher, re2_escape, selector
from exporter.sources.queries import KSM_RESOURCE, RESOURCE_FROM_KSM, Queries
from exporter.vocab.durations import format_duration

CONTAINER_MATCHERS = 'container!="",container!="POD",namespace!="",pod!=""'
SAMPLE_BUDGET = 200_000  # per answer
RESOURCE_GROUPS = (("cpu",), ("memory", "gpu"))
REQUESTED = ("cpu", "memory")  # the resources whose requests are reported (GPU requests are its allocation)

Series = tuple[Labels, list[tuple[float, float]]]
Samples = list[tuple[float, float]]
NodeScales = dict[tuple[str, str], dict[float, float]]  # (node, resource) -> step time -> scale


class RowKey(NamedTuple):
    namespace: str
    node: str
    pod: str | None  # only for namespaces split between owners
    resource: str  # cpu, memory, gpu


class ContainerRowKey(NamedTuple):
    namespace: str
    node: str
    pod: str
    container: str
    resource: str


@dataclass
class StepTotals:
    """Per row, the sum over steps of each quantity (unit x steps; multiply by the step for unit-seconds).
    A row appears only if at least one of its steps counted, as with `sum_over_time`."""

    allocated: dict[RowKey, float] = field(default_factory=dict)
    requested: dict[RowKey, float] = field(default_factory=dict)
    used: dict[RowKey, float] = field(default_factory=dict)
    scales: NodeScales = field(default_factory=dict)  # the overflow scale per (node, resource) and step
    held: dict[RowKey, float] = field(default_factory=dict)  # the allocation before the overflow scale


def none_of(label: str, values: Iterable[str]) -> str:
    """A matcher excluding each of `values`, matched literally."""
    return matcher(label, "|".join(re2_escape(v) for v in sorted(values)), "!~")


def _tag(expr: str, **labels: str) -> str:
    for name, value in labels.items():
        expr = f'label_replace({expr}, "{name}", "{value}", "", "")'
    return expr


BY_NAMESPACE = "namespace, node, resource, part"
BY_POD = "namespace, node, pod, resource, part"
BY_NODE = "node, resource, part"  # the node totals the overflow scale needs, and nothing else
PER_POD = "namespace, pod"


def over_steps(expr: str, span: int, step: int) -> str:
    """`expr` at each step of the `span` seconds before the evaluation time, as a subquery. The full span: both
    ends are on the step grid, where Prometheus and VictoriaMetrics agree (VM steps a subquery from
    `at - range`, so a range off the grid would shift every point); `in_span` drops the start point, which
    belongs to the previous sub-window."""
    return f"({expr})[{span}s:{format_duration(step)}]"


def read_steps(client: PrometheusClient, expr: str, at: int, span: int, step: int) -> list[Series]:
    """The rows of the one-step expression `expr` at each step of (at - span, at]. One step is its instant
    value, read as a vector: a one-step subquery also evaluates its start point (Prometheus 2 includes it),
    which `in_span` would drop, so it cost Prometheus twice the work and the client twice the samples to
    decode (serve's cycles, the one-step sub-windows of big chunks). Longer spans are a subquery."""
    if span == step:
        return [(labels, [(float(at), value)]) for labels, value in client.query(expr, float(at))]
    return in_span(client.query_range_raw(over_steps(expr, span, step), float(at)), at, span)


def step_expr(q: Queries, resources: tuple[str, ...], by: str = BY_NAMESPACE, per: str = PER_POD,
              capacity: bool = True, records: frozenset[str] = frozenset(), scope: str = "") -> str:
    """At one step: rows tagged part="request" / "usage" / "allocated" per `by` (namespace, node[, pod],
    resource by default), plus part="capacity" per (node, resource). The mixin records it per resource
    group, without capacity (exporter/sources/recordrules.py).

    Measured (docs/scale.md), the per-container `or` and `label_replace` cost as much as a selector, so
    containers are summed per pod first and tagged there; the placement join then runs once, on pods.
    Only the `max` policy needs a per-container allocation (max is not linear; `r or u` keeps both since
    only the request has a `resource` label); the other policies, and GPUs always, are linear in the
    request and usage sums, so their allocation is derived from those rows (`derived_allocation`). Resources in
    `records` read their usage from kube-prometheus' records, within the namespace matcher `scope`."""
    ksm_res = selector(matcher("resource", "|".join(KSM_RESOURCE[r] for r in resources), "=~"), q.k)
    requests = (f"max by (namespace, pod, container, resource) "
                f"(kube_pod_container_resource_requests{ksm_res}{q._at})")
    parts = [_tag(f"sum by ({per}, resource) ({requests})", part="request")]
    for res in resources:
        if res == "gpu":
            continue
        use = recorded_usage(q, res, scope) if res in records else q.usage(res)
        parts.append(_tag(f"sum by ({per}) ({use})", part="usage", resource=KSM_RESOURCE[res]))
        if q.policy == "max":
            # max is idempotent, so duplicate series (two kube-state-metrics replicas) need no dedupe here.
            req = f"kube_pod_container_resource_requests{selector(matcher('resource', KSM_RESOURCE[res]), q.k)}{q._at}"
            raw_use = use if res in records else q.cadvisor_usage(res)
            alloc = f"max by (namespace, pod, container) ({req} or {raw_use})"
            parts.append(_tag(f"sum by ({per}) ({alloc})", part="allocated", resource=KSM_RESOURCE[res]))
    tagged = " or ".join(parts)
    expr = f"sum by ({by}) (({tagged}) * on (namespace, pod) group_left (node) {q.placement()})"
    if capacity:
        cap = f"max by (node, resource) (kube_node_status_capacity{ksm_res}{q._at} > -Inf < +Inf)"
        expr = f"{expr} or {_tag(cap, part='capacity')}"
    return expr


def in_span(series: list[tuple[Labels, list[tuple[float, float]]]], at: int, span: int
            ) -> list[tuple[Labels, list[tuple[float, float]]]]:
    """The points of (at - span, at], in place: only leading points can be older (the points are in time
    order), and a big answer is not copied to drop them."""
    for _lb, points in series:
        first = 0
        while first < len(points) and points[first][0] <= at - span:
            first += 1
        if first:
            del points[:first]
    return series


# kube-prometheus records per-container usage with the node joined in (its k8s.rules group); reading them
# saves the rate over raw counters. CPU only when the exporter's usage rate window is the rules' 5m.
KUBE_PROMETHEUS_USAGE = {
    "cpu": ("node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m", "5m"),
    "memory": ("node_namespace_pod_container:container_memory_working_set_bytes", None),
}
RULE_SAMPLE_RANGE = 60  # seconds: a step reads a rule sample at most this old (or one step, if longer)


def records_probe(q: Queries, first: int, last: int) -> str:
    """A row per usable record present at both the first and the last step of a chunk."""
    parts = []
    for res, (record, window) in KUBE_PROMETHEUS_USAGE.items():
        if window is None or window == q.rate_window:
            sel = f"{record}{selector(CONTAINER_MATCHERS, q.cluster)}"
            parts.append(_tag(f"count({sel} @ {first}) and count({sel} @ {last})", resource=res))
    return " or ".join(parts)


def recorded_usage(q: Queries, resource: str, scope: str = "") -> str:
    """Per-container usage read from a record: the one rule sample within the last minute (or step), not
    the bare series, so that a finished container does not live on for the lookback."""
    sel = selector(CONTAINER_MATCHERS, q.cluster, scope)
    span = max(q.step, RULE_SAMPLE_RANGE) * 1000 - 1
    return (f"max by (namespace, pod, container) "
            f"(last_over_time({KUBE_PROMETHEUS_USAGE[resource][0]}{sel}[{span}ms]))")


Key = TypeVar("Key", bound=RowKey | ContainerRowKey)


@dataclass
class StepRows(Generic[Key]):
    """One answer's per-step rows, by part; capacity per (node, resource)."""

    capacity: NodeScales = field(default_factory=dict)
    request: dict[Key, Samples] = field(default_factory=dict)
    usage: dict[Key, Samples] = field(default_factory=dict)
    allocated: dict[Key, Samples] = field(default_factory=dict)

    def add(self, labels: Labels, samples: Samples, key: Key) -> None:
        {"request": self.request, "usage": self.usage, "allocated": self.allocated}.get(
            labels.get("part", ""), {})[key] = samples

    def allocation(self, policy: str, weight: float) -> dict[Key, Samples]:
        """Per-step allocation rows under `policy`: the fetched ones for `max` (GPUs: requests), else derived."""
        if policy == "max":
            return {**self.allocated, **{k: v for k, v in self.request.items() if k.resource == "gpu"}}
        return derived_allocation(self.request, self.usage, policy, weight)


def row_key(labels: Labels) -> RowKey | None:
    res = RESOURCE_FROM_KSM.get(labels.get("resource", ""), "")
    return RowKey(labels.get("namespace", ""), labels.get("node", ""), labels.get("pod"), res) if res else None


def parse(series: Iterable[Series], keys: dict[RowKey, RowKey] | None = None) -> StepRows[RowKey]:
    """One answer's rows; with `keys`, each row's key is the one instance `keys` holds, so the sums of a
    chunk (request, usage, allocation, answer after answer) share one key object per row."""
    rows: StepRows[RowKey] = StepRows()
    for labels, samples in series:
        key = row_key(labels)
        if key is None:
            continue
        if keys is not None:
            key = keys.setdefault(key, key)
        if labels.get("part") == "capacity":
            rows.capacity[(key.node, key.resource)] = dict(samples)
        else:
            rows.add(labels, samples, key)
    return rows


def node_scales(capacity: NodeScales, alloc: Mapping[Key, Samples]) -> NodeScales:
    """The overflow scales (`overflow_scales`) of the nodes that `alloc`'s rows are on."""
    totals: NodeScales = {}
    for key, samples in alloc.items():
        node_total = totals.setdefault((key.node, key.resource), {})
        for t, v in samples:
            node_total[t] = node_total.get(t, 0.0) + v
    return overflow_scales(capacity, totals)


def overflow_scales(capacity: NodeScales, totals: NodeScales) -> NodeScales:
    """Per (node, resource) and step, `min(1, capacity / the node's total allocation)`, at the steps where
    the capacity is known and the total above 0 (no scale: the step is not costed, as in PromQL)."""
    out: NodeScales = {}
    for node_res, node_total in totals.items():
        cap = capacity.get(node_res, {})
        out[node_res] = {t: min(c / total, 1.0) for t, total in node_total.items()
                         if (c := cap.get(t)) is not None and total > 0}
    return out


def scaled(samples: Samples, scales: Mapping[float, float]) -> float | None:
    """Sum over steps of `v * scale` where the step has a scale; None when none had."""
    acc, counted = 0.0, False
    for t, v in samples:
        s = scales.get(t)
        if s is not None:
            acc += v * s
            counted = True
    return acc if counted else None


def add_sums(rows: StepRows[Key], alloc: Mapping[Key, Samples], scales: NodeScales, requested: dict[Key, float],
             used: dict[Key, float], allocated: dict[Key, float], held: dict[Key, float] | None = None) -> None:
    """Requests and usage summed over steps; the allocation scaled step by step by its node's overflow scale
    (and, into `held`, as it was, at the steps it was scaled: OpenCost's cpuCores and ramBytes)."""
    for part, out in ((rows.request, requested), (rows.usage, used)):
        for key, samples in part.items():
            if samples and key.resource in REQUESTED:
                out[key] = out.get(key, 0.0) + sum(v for _t, v in samples)
    for key, samples in alloc.items():
        by_step = scales.get((key.node, key.resource), {})
        acc = scaled(samples, by_step)
        if acc is not None:
            allocated[key] = allocated.get(key, 0.0) + acc
            if held is not None and key.resource in REQUESTED:
                held[key] = held.get(key, 0.0) + unscaled(samples, by_step)


def unscaled(samples: Samples, scales: Mapping[float, float]) -> float:
    """Sum over steps of `v` where the step has a scale (the steps `scaled` counts)."""
    return sum(v for t, v in samples if t in scales)


def derived_allocation(req: dict[Key, Samples], use: dict[Key, Samples], policy: str, weight: float
                       ) -> dict[Key, Samples]:
    """The allocation rows of the linear policies, per step: requests, usage, or w * request + (1 - w) *
    usage where a container had either (a container with only one contributes that one, as in PromQL's
    `sum` over the tagged pair). GPUs are always allocated by request."""
    out = {k: v for k, v in req.items() if k.resource == "gpu" or policy == "request"}
    if policy == "usage":
        out.update((k, v) for k, v in use.items() if k.resource != "gpu")
    elif policy == "weighted":
        for key in set(req) | set(use):
            if key.resource == "gpu":
                continue
            steps: dict[float, float] = {}
            for t, v in req.get(key, ()):
                steps[t] = steps.get(t, 0.0) + weight * v
            for t, v in use.get(key, ()):
                steps[t] = steps.get(t, 0.0) + (1 - weight) * v
            out[key] = sorted(steps.items())
    return out
