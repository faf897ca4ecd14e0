"""The running spans of a segment's cost-table rows and pods (exporter/sources/spanqueries.py): a view that
OpenCost's start, end, minutes and per-time averages stand on, never a cost."""

from __future__ import annotations

from collections.abc import MutableMapping

from exporter.core.allocation import Line, RowKey
from exporter.core.attribution import Owners
from exporter.core.window import Window
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.queries import Queries
from exporter.sources.spanqueries import running_edge

Span = tuple[float, float]


def running_spans(client: PrometheusClient, q: Queries, w: Window, by: str) -> dict[tuple[str, ...], Span]:
    """Per `by` group, (start of its first running step, end of its last): a step's sample at t stands for
    (t - step, t], as the integrals count it."""
    keys = [k.strip() for k in by.split(",")]

    def edge(fn: str) -> dict[tuple[str, ...], float]:
        return {tuple(lb.get(k, "") for k in keys): v
                for lb, v in client.query(running_edge(q, w.seconds, fn, by), float(w.end))}

    first, last = edge("min"), edge("max")
    return {key: (first[key] - q.step, end) for key, end in last.items() if key in first}


def widen_table(table: MutableMapping[RowKey, Line], client: PrometheusClient, q: Queries, w: Window,
                owners: Owners) -> None:
    """Each (namespace, node, owner) row of a segment's table takes in the span its pods ran: per (namespace,
    node) where the namespace has one owner, per pod in namespaces split between owners."""
    for (ns, node), span in running_spans(client, q, w, "namespace, node").items():
        if ns not in owners.split and (line := table.get((ns, node, owners.of(ns)))) is not None:
            line.widen(*span)
    if owners.split:
        for (ns, node, pod), span in running_spans(client, q.scoped(sorted(owners.split)), w,
                                                   "namespace, node, pod").items():
            if (line := table.get((ns, node, owners.of(ns, pod)))) is not None:
                line.widen(*span)
