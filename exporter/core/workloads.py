"""Workloads: the controller (Deployment, StatefulSet, DaemonSet, CronJob, ...) that owns each pod.

kube-state-metrics' `kube_pod_owner` names a pod's direct owner. A ReplicaSet resolves to its
Deployment through `kube_replicaset_owner`, and a Job to its CronJob through `kube_job_owner`,
as Kubecost's controller aggregation does. Names are `kind:name` in lower case, for example
`deployment:api`; a bare pod is named by itself. Pods without any owner series (an older
kube-state-metrics, or an allowlist that drops them) fall back to a pod-name heuristic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PodKey = tuple[str, str]  # (namespace, pod)
Owner = tuple[str, str]  # (kind, name) as kube-state-metrics labels them

# Generated pod-name suffixes: ReplicaSet/Job random suffix, pod-template-hash, StatefulSet ordinal.
_SUFFIXES = (re.compile(r"-[a-z0-9]{5}$"), re.compile(r"-[a-f0-9]{6,10}$"), re.compile(r"-\d+$"))
NONE = "<none>"


def workload_of(pod: str) -> str:
    """Best-effort workload name from a pod name (`api-7d9f8b6c5d-x2x9q` -> `api`), when no owner is known."""
    name = pod
    for rx in _SUFFIXES:
        stripped = rx.sub("", name)
        if stripped and stripped != name:
            name = stripped
    return name


def resolve(pod_owners: Mapping[PodKey, Owner], replicaset_owners: Mapping[PodKey, Owner],
            job_owners: Mapping[PodKey, Owner]) -> dict[PodKey, str]:
    """Pure: (namespace, pod) -> `kind:name` of the top controller, or the pod's own name if it has none.

    `replicaset_owners` and `job_owners` are keyed by (namespace, ReplicaSet or Job name). A
    ReplicaSet or Job with no owner of its own (created by hand) is the workload itself.
    """
    out = {}
    for (ns, pod), (kind, name) in pod_owners.items():
        if kind == NONE or not name or name == NONE:
            out[(ns, pod)] = pod
            continue
        via = {"ReplicaSet": replicaset_owners, "Job": job_owners}.get(kind, {})
        top_kind, top_name = via.get((ns, name), (kind, name))
        out[(ns, pod)] = f"{top_kind.lower()}:{top_name}"
    return out


def name_of(workloads: Mapping[PodKey, str], namespace: str, pod: str) -> str:
    return workloads.get((namespace, pod)) or workload_of(pod)
