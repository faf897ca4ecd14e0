"""Synthetic Istio telemetry: the byte series its sidecars export, for a Cluster's `extra`.

Kept apart from synthetic.py's standard series. A `Flow` is one source -> destination edge at constant
rates; it yields what both sidecars report (`reporter="source"` and, for in-mesh destinations,
`reporter="destination"`), so a reader that counts both doubles the bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from demo.synthetic import GIB, Cluster, Series
from exporter.core.allocation import CostResult
from exporter.core.assets import AssetCost

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


# The demo's mesh: calls between the six teams' workloads, a card processor and a mail service on the
# internet (PassthroughCluster), and S3 through a ServiceEntry. GiB an hour, request then response.
DEMO_FLOWS = (
    Flow(("web", "frontend"), ("search", "query"), 0.5, 6.0, "http"),
    Flow(("web", "bff"), ("payments", "api"), 0.3, 0.6, "http"),
    Flow(("payments", "api"), ("", ""), 0.8, 2.0, host=PASSTHROUGH),
    Flow(("data-eng", "etl"), ("", ""), 12.0, 0.5, "http", host="s3.us-east-1.amazonaws.com"),
    Flow(("ml", "serving"), ("search", "query"), 1.0, 3.0),
    Flow(("search", "indexer"), ("data-eng", "spark"), 0.2, 4.0),
    Flow(("growth", "email"), ("", ""), 0.4, 0.1, "http", host=PASSTHROUGH),
)


def with_mesh(cluster: Cluster, flows: tuple[Flow, ...] = DEMO_FLOWS) -> Cluster:
    """The cluster with Istio sidecars reporting `flows`."""
    return replace(cluster, extra=(*cluster.extra, *istio_series(flows)))


def egress_table(result: CostResult, assets: list[AssetCost]) -> str:
    """Network cost by team and class, from a RecordingPipeline's priced assets, and each namespace's source."""
    meta = result.metadata.namespaces if result.metadata else {}
    cols = ("egress-zone", "egress-region", "egress-internet")
    rows: dict[str, dict[str, float]] = {}
    for a in assets:
        if a.resource == "network":
            row = rows.setdefault(meta.get(a.namespace, {}).get("team", a.namespace), {})
            key = a.asset if a.asset in cols else "monthly"
            row[key + ":gib"] = row.get(key + ":gib", 0.0) + a.quantity / GIB
            row[key] = row.get(key, 0.0) + a.cost
    lines = [f"{'team':<16}{'cross-zone GiB':>16}{'cross-region GiB':>18}{'internet GiB':>14}{'NAT etc.':>10}"
             f"{'network':>10}"]
    for team, r in sorted(rows.items(), key=lambda kv: -sum(v for k, v in kv[1].items() if ":" not in k)):
        total = sum(v for k, v in r.items() if ":" not in k)
        gib = "".join(f"{r.get(c + ':gib', 0.0):>{w}.1f}" for c, w in zip(cols, (16, 18, 14), strict=True))
        lines.append(f"{team:<16}{gib}{r.get('monthly', 0.0):>10.2f}{total:>10.2f}")
    for source, namespaces in sorted(result.coverage.network.items()):
        lines.append(f"  egress from {source}: {', '.join(sorted(namespaces))}")
    return "\n".join(lines)
