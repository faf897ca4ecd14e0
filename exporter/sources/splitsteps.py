"""Per-step rows of the namespaces split between owners, on a chunk the recorded series cover.

The recorded series are per (namespace, node); which owner holds what of a split namespace only raw
per-pod rows tell. So only those namespaces' containers are evaluated, once per step, by the one-pass
query of `allocsteps.py` (per pod, no node capacity: the overflow scale comes with the recorded
allocation), next to the recorded allocation of the same namespaces per step. The engine splits the
recorded amounts between owners in proportion to these rows (`exporter/core/ownershare.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from exporter.sources.allocsteps import BY_POD, RowKey, Samples, in_span, parse, read_steps, row_key, step_expr
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import one_of
from exporter.sources.queries import Queries
from exporter.sources.recordedqueries import recorded_allocated_steps
from exporter.sources.stepfetch import SubWindows

# Two queries per sub-window, as on the raw path, so that a NaN in one resource's series costs only that
# resource. No GPUs: what each pod holds of them is read per container on every path (engine/gpufetch.py).
SPLIT_GROUPS = (("cpu",), ("memory",))


@dataclass
class SplitRows:
    """One sub-window's per-step rows: per pod of the split namespaces, its allocation under the policy
    (before the node's overflow scale), requests and usage; per (namespace, node, resource), the recorded
    allocation (after it; `pod` is None)."""

    allocation: dict[RowKey, Samples]
    request: dict[RowKey, Samples]
    usage: dict[RowKey, Samples]
    recorded: dict[RowKey, Samples]


def split_rows(client: PrometheusClient, q: Queries, start: int, end: int, split: list[str], policy: str,
               weight: float, records: frozenset[str] = frozenset(), pods: int = 0) -> Iterator[SplitRows]:
    """The rows of (start, end], in sub-windows of at most about `SAMPLE_BUDGET` samples (the first sized
    from the split namespaces' `pods`, the next from the previous answer's series count)."""
    scoped, scope = q.scoped(split), one_of("namespace", split)
    windows = SubWindows(start, end, q.step, 3 * pods)  # rows per step: at most request, usage and allocation a pod
    for at, span in windows:
        series = []
        for resources in SPLIT_GROUPS:
            expr = step_expr(scoped, resources, by=BY_POD, capacity=False, records=records, scope=scope)
            series += read_steps(client, expr, at, span, q.step)
        rows = parse(series)
        recorded = {key: samples
                    for lb, samples in in_span(client.query_range_raw(recorded_allocated_steps(q, span, split),
                                                                      float(at)), at, span)
                    if (key := row_key(lb)) is not None}
        yield SplitRows(rows.allocation(policy, weight), rows.request, rows.usage, recorded)
        windows.saw(len(series) // len(SPLIT_GROUPS))
