"""Classified egress from Istio for one window: the flow, placement and node-label queries run, and the
bytes classified (the glue between sources/meshqueries.py and core/egress.py; Fetch.fetch_assets calls it)."""

from __future__ import annotations

from collections.abc import Mapping

from exporter.core.egress import classify, istio_flows, node_places, shares, workload_steps
from exporter.core.window import Window
from exporter.sources.meshqueries import istio_bytes, pod_nodes
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.queries import Queries


def istio_classified(client: PrometheusClient, q: Queries, w: Window, step: int,
                     workloads: Mapping[tuple[str, str], str]) -> dict[tuple[str, str], float]:
    """(sender namespace, class) -> bytes over `w`; empty when no sidecar reported a byte."""
    at = float(w.end)
    rows = [(lb, v * step) for lb, v in client.query(istio_bytes(q, w.seconds), at)]
    if not rows:
        return {}
    pods = {(lb.get("namespace", ""), lb.get("pod", ""), lb.get("node", "")): v
            for lb, v in client.query(pod_nodes(q, w.seconds), at)}
    labels = {lb.get("node", ""): lb for lb, _ in client.query(q.node_labels(w.seconds), at)}
    placed = shares(workload_steps(pods, workloads), node_places(labels))
    return classify(istio_flows(rows), placed)
