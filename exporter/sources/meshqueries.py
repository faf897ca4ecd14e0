"""The service-mesh queries: Istio's bytes per flow, and where each pod ran, for classified egress.

Built over a `Queries` (its selectors, `@` for bridged gaps and the chunk's subquery range), as
gpuqueries.py is. Istio's metrics come from the sidecars, scraped under any job: only the cluster
selector narrows them.
"""

from __future__ import annotations

from exporter.sources.promql import one_of, quote, selector
from exporter.sources.queries import Queries

FLOW = ("source_workload, source_workload_namespace, destination_workload, destination_workload_namespace, "
        "destination_service, destination_service_name")
# Istio's standard byte metrics (istio.io/latest/docs/reference/config/metrics): TCP "received during
# request" and HTTP request bodies went source -> destination; "sent during response" and responses came back.
PARTS = {"tcp_request": "istio_tcp_received_bytes_total", "tcp_response": "istio_tcp_sent_bytes_total",
         "http_request": "istio_request_bytes_sum", "http_response": "istio_response_bytes_sum"}


def istio_bytes(q: Queries, span: int) -> str:
    """Per flow and part, the sum over the chunk's steps of source-reported byte rates (multiply by the
    step for bytes). Only `reporter="source"`: the destination's report of the same flow would double it."""
    sel = selector('reporter="source"', 'destination_service_name!="BlackHoleCluster"', q.cluster)
    parts = [f'label_replace(sum by ({FLOW}) (rate({metric}{sel}[{q.rate_window}])), "part", {quote(part)}, "", "")'
             for part, metric in PARTS.items()]
    return f"sum_over_time(({' or '.join(parts)}){q._sub(span)})"


def istio_series(q: Queries) -> str:
    """Whether any Istio byte series exists: the flow query runs only then."""
    return selector(one_of("__name__", PARTS.values()), q.cluster)


def pod_nodes(q: Queries, span: int) -> str:
    """Steps each pod spent on each node over the chunk (kube_pod_info): a workload's pods by place."""
    info = f"max by (namespace, pod, node) (kube_pod_info{selector('node!=' + quote(''), q.k)}{q._at})"
    return f"sum_over_time(({info}){q._sub(span)})"
