"""Pod metadata for pod-level allocation rows (exporter/outputs/podrows.py): each pod's controller, labels,
annotations and Services, and each node's provider id, read from kube-state-metrics once per window."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from sys import intern

from exporter.core.attribution import LabelSets, shared_labels
from exporter.core.window import Window
from exporter.core.workloads import resolve as resolve_workloads
from exporter.sources.podqueries import PodQueries
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.queries import Queries

PodKey = tuple[str, str]  # (namespace, pod)


@dataclass(slots=True)
class PodInfo:
    """What OpenCost reports about one pod beyond its namespace. Label and annotation dicts are shared
    between pods with the same set, and read-only."""

    controller_kind: str = ""  # in lower case; "" for a bare pod
    controller: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # label_ stripped: app_kubernetes_io_name
    annotations: Mapping[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = ()


_NO_POD = PodInfo()


@dataclass
class PodMeta:
    """Pod metadata from kube-state-metrics over one window: one record per pod, in one dict (not five
    dicts keyed by pod, each with its own key tuples)."""

    pods_info: dict[PodKey, PodInfo] = field(default_factory=dict)
    provider_ids: dict[str, str] = field(default_factory=dict)  # node -> providerID
    pods: dict[str, int] = field(default_factory=dict)  # namespace -> pods seen in the window

    def of(self, namespace: str, pod: str) -> PodInfo:
        return self.pods_info.get((namespace, pod), _NO_POD)


def _stripped(labels: Mapping[str, str], prefix: str, seen: LabelSets) -> dict[str, str]:
    """The labels under `prefix`, shared (every pod row and group of the window points at its pod's dict)."""
    n = len(prefix)
    return shared_labels({k[n:]: v for k, v in labels.items() if k.startswith(prefix) and v}, seen)


def controllers_of(workloads: Mapping[PodKey, str]) -> dict[PodKey, tuple[str, str]]:
    """workloads.resolve's `kind:name` as (kind, name); a bare pod (its own name) has no controller."""
    out = {}
    for key, name in workloads.items():
        kind, sep, rest = name.partition(":")
        if sep:  # interned: a Deployment's pods then share its name
            out[key] = (intern(kind), intern(rest))
    return out


def services_of(pod_ips: Mapping[PodKey, str],
                endpoints: Iterable[tuple[str, str, str]]) -> dict[PodKey, tuple[str, ...]]:
    """Each pod's Services: the Endpoints objects listing its IP in its namespace, sorted.

    A pod IP seen by several pods over the window (reused, or host-network pods on one node) gives each
    of them the Services of that IP: kube-state-metrics does not say which pod an address was."""
    by_ip: dict[tuple[str, str], set[str]] = {}
    for ns, service, ip in endpoints:
        by_ip.setdefault((ns, ip), set()).add(service)
    one: dict[tuple[str, ...], tuple[str, ...]] = {}  # a Service's pods share one tuple
    return {key: one.setdefault(t := tuple(sorted(svcs)), t)
            for key, ip in pod_ips.items() if (svcs := by_ip.get((key[0], ip)))}


def fetch_meta(client: PrometheusClient, q: Queries, w: Window) -> PodMeta:
    """Pod metadata as last seen in `w`: owners resolved to controllers, labels, annotations, Services."""
    pq, at, span = PodQueries(q), float(w.end), w.seconds

    def owners(metric: str, label: str) -> dict[PodKey, tuple[str, str]]:
        return {(lb.get("namespace", ""), lb.get(label, "")): (lb.get("owner_kind", ""), lb.get("owner_name", ""))
                for lb, _ in client.query(q.owners(metric, label, span), at)}

    pods = owners("kube_pod_owner", "pod")
    workloads = resolve_workloads(pods, owners("kube_replicaset_owner", "replicaset"),
                                  owners("kube_job_owner", "job_name")) if pods else {}
    seen: LabelSets = {}
    labels = {(lb.get("namespace", ""), lb.get("pod", "")): _stripped(lb, "label_", seen)
              for lb, _ in client.query(pq.pod_labels(span), at)}
    counts: dict[str, int] = {}
    for ns, _pod in labels:  # kube-state-metrics exports kube_pod_labels for every pod
        counts[ns] = counts.get(ns, 0) + 1
    notes = {(lb.get("namespace", ""), lb.get("pod", "")): _stripped(lb, "annotation_", seen)
             for lb, _ in client.query(pq.pod_annotations(span), at)}
    ips = {(lb.get("namespace", ""), lb.get("pod", "")): lb.get("pod_ip", "")
           for lb, _ in client.query(pq.pod_ips(span), at)}
    endpoints = [(lb.get("namespace", ""), lb.get("endpoint", ""), lb.get("ip", ""))
                 for lb, _ in client.query(pq.endpoint_addresses(span), at)]
    providers = {lb.get("node", ""): lb.get("provider_id", "") for lb, _ in client.query(pq.provider_ids(span), at)}
    info: dict[PodKey, PodInfo] = {}
    for key, (kind, name) in controllers_of(workloads).items():
        info[key] = PodInfo(kind, name)
    for key, lb in labels.items():
        if lb:
            info.setdefault(key, PodInfo()).labels = lb
    for key, notes_of in notes.items():
        if notes_of:
            info.setdefault(key, PodInfo()).annotations = notes_of
    for key, svcs in services_of(ips, endpoints).items():
        info.setdefault(key, PodInfo()).services = svcs
    return PodMeta(info, providers, counts)
