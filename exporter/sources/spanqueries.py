"""When pods ran: the first and last step of a chunk each (namespace, node) pair, or pod, had a running pod.

OpenCost reports an allocation's start and end as its pods' first and last running sample in the window, and
averages its per-time fields (cpuCores, gpuCount, the *Average fields) over that span, not the window's. The
span is read at the steps the integrals sum (`Queries._sub`, the same placement), so a pod running every step
of its span holds exactly its request on average over it."""

from __future__ import annotations

from exporter.sources.queries import Queries


def running_edge(q: Queries, chunk_seconds: int, edge: str, by: str = "namespace, node") -> str:
    """The evaluation time of the first (`edge` "min") or last ("max") step of the chunk at which a pod of
    each `by` group was placed and running."""
    stamped = f"({q.placement()}) * 0 + time()"
    return f"{edge} by ({by}) ({edge}_over_time(({stamped}){q._sub(chunk_seconds)}))"
