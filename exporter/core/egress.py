"""Egress classified from a service mesh's flows (Istio's standard metrics). Pure, no I/O.

A flow is bytes one workload sent to a peer. Each end is placed in (region, zone) by where its pods ran
(kube-state-metrics: workload -> pods -> nodes -> topology labels). A workload whose pods ran in several
zones is split by pod-steps: its bytes are spread as if it talked from each place in proportion to the
time its pods spent there, independently of where its peer's pods were (docs/network.md says what
locality-aware routing does to that). The result has the shape of Kubecost's classified bytes,
(namespace, class) -> bytes, so one pricing function (core/assets.price_network) prices both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.core.names import UNALLOCATED
from exporter.core.workloads import name_of

Place = tuple[str, str]  # (region, zone) of a node; "" where its label is missing
UNPLACED = "unclassified"  # an end whose place is unknown: priced as pricing.network.unclassified
UNKNOWN = ("", "unknown")  # Istio's values for an end it could not identify


@dataclass(frozen=True)
class Flow:
    """Bytes `sender` sent to `peer`, both (namespace, workload); `internet` when the peer is out of the mesh
    and out of the cluster (Istio's PassthroughCluster, or a ServiceEntry host)."""

    sender: tuple[str, str]
    peer: tuple[str, str]
    internet: bool
    bytes: float


def istio_flows(rows: Iterable[tuple[Mapping[str, str], float]]) -> list[Flow]:
    """Flows from source-reported rows (one per flow: the destination's report of it is not read).

    A row's `part` says which way its bytes went: request bytes (TCP received, HTTP request) went from
    source to destination, response bytes (TCP sent, HTTP response) back. Bytes an internet host sent
    back are ingress, which clouds do not charge: they are left out.
    """
    out = []
    for lb, v in rows:
        src = (lb.get("source_workload_namespace", ""), lb.get("source_workload", ""))
        dst = (lb.get("destination_workload_namespace", ""), lb.get("destination_workload", ""))
        internet = is_external(lb)
        if lb.get("part", "").endswith("request"):
            out.append(Flow(src, dst, internet, v))
        elif not internet:
            out.append(Flow(dst, src, False, v))
    return out


def is_external(lb: Mapping[str, str]) -> bool:
    """Out of the cluster: Envoy's passthrough to an unregistered host, or a host no workload of the cluster
    serves (a ServiceEntry's `destination_service`, which is not a `*.svc.*` name)."""
    if lb.get("destination_service_name") == "PassthroughCluster":
        return True
    service = lb.get("destination_service", "")
    return lb.get("destination_workload", "") in UNKNOWN and bool(service) and ".svc." not in service + "."


def shares(pod_steps: Mapping[tuple[tuple[str, str], str], float], node_place: Mapping[str, Place]
           ) -> dict[tuple[str, str], dict[Place, float]]:
    """(namespace, workload) -> place -> fraction of its pod-steps there, from ((namespace, workload), node)
    steps (`workload_steps`)."""
    totals: dict[tuple[str, str], dict[Place, float]] = {}
    for (key, node), steps in pod_steps.items():
        place = node_place.get(node, ("", ""))
        per = totals.setdefault(key, {})
        per[place] = per.get(place, 0.0) + steps
    out = {}
    for k, per in totals.items():
        total = sum(per.values())
        if total > 0:
            out[k] = {p: s / total for p, s in per.items() if s > 0}
    return out


def workload_steps(pods: Mapping[tuple[str, str, str], float], workload_of: Mapping[tuple[str, str], str]
                   ) -> dict[tuple[tuple[str, str], str], float]:
    """(namespace, pod, node) steps -> ((namespace, workload), node) steps. Istio names a workload by its
    controller's name (`api`), kube-state-metrics' owners resolve to `deployment:api`: the name is compared."""
    out: dict[tuple[tuple[str, str], str], float] = {}
    for (ns, pod, node), steps in pods.items():
        key = ((ns, name_of(workload_of, ns, pod).split(":", 1)[-1]), node)
        out[key] = out.get(key, 0.0) + steps
    return out


def klass(a: Place, b: Place) -> str:
    """Same zone is free; another zone of the same region is cross-zone; another region is cross-region."""
    if not a[1] or not b[1] or (a[0] != b[0] and (not a[0] or not b[0])):
        return UNPLACED
    if a[0] != b[0]:
        return "region"
    return "free" if a[1] == b[1] else "zone"


def classify(flows: Iterable[Flow], placed: Mapping[tuple[str, str], Mapping[Place, float]]
             ) -> dict[tuple[str, str], float]:
    """(sender namespace, class) -> bytes. Classes: internet, region, zone, free, and `unclassified` where an
    end is not placed (a workload without pods the window saw, a node without topology labels). Bytes a
    sender Istio could not name sent go to __unallocated__. Every byte of every flow lands in one class."""
    out: dict[tuple[str, str], float] = {}

    def add(ns: str, k: str, b: float) -> None:
        if b > 0:
            out[(ns, k)] = out.get((ns, k), 0.0) + b

    for f in flows:
        ns = f.sender[0] if f.sender[0] not in UNKNOWN else UNALLOCATED
        if f.internet:
            add(ns, "internet", f.bytes)
            continue
        src, dst = placed.get(f.sender), placed.get(f.peer)
        if not src or not dst:
            add(ns, UNPLACED, f.bytes)
            continue
        for a, fa in src.items():
            for b, fb in dst.items():
                add(ns, klass(a, b), f.bytes * fa * fb)
    return out


def node_places(node_labels: Mapping[str, Mapping[str, str]]) -> dict[str, Place]:
    """Node -> (region, zone) from kube_node_labels' `label_topology_kubernetes_io_*` (or the deprecated
    `failure-domain.beta.kubernetes.io/*` labels)."""
    def first(lb: Mapping[str, str], *keys: str) -> str:
        return next((lb[k] for k in keys if lb.get(k)), "")

    return {node: (first(lb, "label_topology_kubernetes_io_region", "label_failure_domain_beta_kubernetes_io_region"),
                   first(lb, "label_topology_kubernetes_io_zone", "label_failure_domain_beta_kubernetes_io_zone"))
            for node, lb in node_labels.items()}
