"""Per-container quantities for rows below (namespace, node), read in allocsteps' one pass.

A segment's per-step overflow scale per node is read once, from node-level rows of the one-pass query
(a few rows per node, the whole cluster); then each batch of namespaces is read per container and step,
and each container's allocation is scaled by its node's scale at that step. Every per-container
expression is thus evaluated twice per step in all, however many batches: the former plan re-evaluated
the whole cluster's allocation inside every batch's and resource's overflow denominator, which grew
with the square of the cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.sources.allocsteps import (
    BY_NODE,
    RESOURCE_GROUPS,
    ContainerRowKey,
    NodeScales,
    Series,
    StepRows,
    add_sums,
    node_scales,
    parse,
    read_steps,
    step_expr,
)
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.queries import RESOURCE_FROM_KSM, Queries
from exporter.sources.stepfetch import SubWindows

BY_CONTAINER = "namespace, node, pod, container, resource, part"
PER_CONTAINER = "namespace, pod, container"


@dataclass
class ContainerTotals:
    """Per container row, the sum over steps of each quantity (unit x steps), as allocsteps.StepTotals."""

    allocated: dict[ContainerRowKey, float] = field(default_factory=dict)
    requested: dict[ContainerRowKey, float] = field(default_factory=dict)
    used: dict[ContainerRowKey, float] = field(default_factory=dict)
    held: dict[ContainerRowKey, float] = field(default_factory=dict)  # before the overflow scale


def container_key(labels: dict[str, str]) -> ContainerRowKey | None:
    res = RESOURCE_FROM_KSM.get(labels.get("resource", ""), "")
    if not res:
        return None
    return ContainerRowKey(labels.get("namespace", ""), labels.get("node", ""), labels.get("pod", ""),
                           labels.get("container", ""), res)


def add_containers(series: list[Series], scales: NodeScales, policy: str, weight: float,
                   into: ContainerTotals) -> None:
    """One answer's per-container rows into `into`, scaled by the segment's node `scales`. Pure."""
    rows: StepRows[ContainerRowKey] = StepRows()
    for labels, samples in series:
        key = container_key(labels)
        if key is not None:
            rows.add(labels, samples, key)
    add_sums(rows, rows.allocation(policy, weight), scales, into.requested, into.used, into.allocated, into.held)


class ContainerFetcher:
    """The two passes over one segment: node scales, then containers batch by batch."""

    def __init__(self, client: PrometheusClient, policy: str, weight: float) -> None:
        self.client, self.policy, self.weight = client, policy, weight

    def _each(self, start: int, end: int, step: int, expected: int,
              build: Callable[[tuple[str, ...]], str], take: Callable[[list[Series]], None]) -> None:
        """(start, end] in sub-windows of at most SAMPLE_BUDGET samples per answer, a query per resource group
        (`build`: its one-step expression, read per step by `read_steps`)."""
        windows = SubWindows(start, end, step, max(expected, 1))
        for at, span in windows:
            seen = 0
            for resources in RESOURCE_GROUPS:
                series = read_steps(self.client, build(resources), at, span, step)
                seen += len(series)
                take(series)
            windows.saw(seen // len(RESOURCE_GROUPS))

    def scales(self, q: Queries, start: int, end: int, records: frozenset[str], nodes: int) -> NodeScales:
        """Each node's overflow scale per resource and step, from the whole cluster's allocation."""
        out: NodeScales = {}

        def take(series: list[Series]) -> None:
            rows = parse(series)
            for node_res, by_step in node_scales(rows.capacity, rows.allocation(self.policy, self.weight)).items():
                out.setdefault(node_res, {}).update(by_step)

        self._each(start, end, q.step, 4 * nodes,
                   lambda res: step_expr(q, res, by=BY_NODE, records=records), take)
        return out

    def totals(self, q: Queries, start: int, end: int, scales: NodeScales, records: frozenset[str], scope: str,
               pods: int) -> ContainerTotals:
        """Per-container sums over (start, end] for what `q` selects (a batch's namespaces, in `scope` too)."""
        out = ContainerTotals()
        self._each(start, end, q.step, 6 * pods,  # about two containers a pod, three parts each
                   lambda res: step_expr(q, res, by=BY_CONTAINER, per=PER_CONTAINER, capacity=False,
                                         records=records, scope=scope),
                   lambda series: add_containers(series, scales, self.policy, self.weight, out))
        return out
