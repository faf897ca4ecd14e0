"""Synthetic Istio telemetry: the byte series its sidecars export, for a Cluster's `extra`.

Kept apart from synthetic.py's standard series. A `Flow` is one source -> destination edge at constant
rates; it yields what both sidecars report (`reporter="source"` and, for in-mesh destinations,
`reporter="destination"`), so a reader that counts both doubles the bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from demo.synthetic import GIB, Series

GIB_H = GIB / 3600  # bytes per second for 1 GiB an hour
PASSTHROUGH = "PassthroughCluster"
TOPOLOGY = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone")


@dataclass(frozen=True)
class Flow:
    """`source` (namespace, workload) to `destination` (namespace, workload), or to an external host
    (`host`: PassthroughCluster, or a ServiceEntry's host) with destination ("", "")."""

    source: tuple[str, str]
    destination: tuple[str, str]
    request_gib_h: float  # source -> destination
    response_gib_h: float  # destination -> source
    protocol: str = "tcp"  # tcp | http
    host: str = ""


def place(region: str, zone: str) -> dict[str, str]:
    """Node labels putting a node in `region`/`zone`."""
    return dict(zip(TOPOLOGY, (region, zone), strict=True))


def istio_series(flows: tuple[Flow, ...]) -> Iterator[Series]:
    job = {"job": "istio-sidecars"}
    for f in flows:
        internal = not f.host
        dns, dwl = f.destination if internal else ("unknown", "unknown")
        service = f"{dwl}.{dns}.svc.cluster.local" if internal else f.host
        name = dwl if internal else f.host
        labels = {**job, "source_workload_namespace": f.source[0], "source_workload": f.source[1],
                  "destination_workload_namespace": dns, "destination_workload": dwl,
                  "destination_service": service, "destination_service_name": name}
        if f.host and f.host != PASSTHROUGH:
            labels["destination_service_namespace"] = f.source[0]  # the ServiceEntry's namespace
        for reporter in ("source", "destination") if internal else ("source",):
            lb = {**labels, "reporter": reporter}
            if f.protocol == "tcp":
                yield Series("istio_tcp_received_bytes_total", lb, f.request_gib_h * GIB_H)
                yield Series("istio_tcp_sent_bytes_total", lb, f.response_gib_h * GIB_H)
            else:
                yield Series("istio_request_bytes_sum", lb, f.request_gib_h * GIB_H)
                yield Series("istio_response_bytes_sum", lb, f.response_gib_h * GIB_H)
                yield Series("istio_request_bytes_count", lb, 10.0)
