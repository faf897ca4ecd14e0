"""A synthetic cluster that emits the exact series cAdvisor, kube-state-metrics and OpenCost do.

One module serves the tests, `make demo` and `make bench`: it writes OpenMetrics for
`promtool tsdb create-blocks-from openmetrics` (history) and renders a live exposition
for Prometheus to scrape. It deliberately includes the traps real clusters have:
pod-level (`container=""`) and pause (`container="POD"`) cAdvisor series, namespace-less
system cgroups, cAdvisor series without a `node` label, completed pods that still export
requests, and node capacity resources (`pods`, `ephemeral_storage`) that must be ignored.
"""

from __future__ import annotations

import math
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TextIO

from exporter.core.pricing import SPOT_LABELS
from exporter.vocab.labels import ksm_label

GIB = 1024**3
DAY = 86400

Sampler = Callable[[int], float | None]


@dataclass(frozen=True)
class Container:
    name: str
    cpu_request: float | None = None  # cores; None = not set (BestEffort)
    mem_request: float | None = None  # bytes
    gpu_request: float = 0.0
    cpu_usage: float = 0.0  # cores (mean)
    mem_usage: float = 0.0  # bytes (mean)
    wave: float = 0.0  # daily usage swing as a fraction of the mean (0 = constant)
    # dcgm-exporter's view of each GPU the container holds (on a node with `dcgm`): busy fraction, MiB used.
    gpu_util: float = 0.0
    gpu_fb_mib: float = 0.0
    # Other requests by kube-state-metrics resource name: MIG slices, HAMi gpumem/gpucores, Neuron, AMD.
    resources: dict[str, float] = field(default_factory=dict)
    mem_limit: float | None = None  # bytes (kube_pod_container_resource_limits; no cost reads it)
    cpu_limit: float | None = None  # cores (the same series; OpenCost's cpuCoreLimitAverage reads them)
    # The resource `gpu_request` is of: nvidia.com/gpu, or a time-sliced replica under GFD's renameByDefault=true
    # (nvidia_com_gpu_shared); and OpenCost's container_gpu_allocation when it differs from the request (a
    # shared replica: its physical share).
    gpu_resource: str = "nvidia_com_gpu"
    gpu_allocation: float | None = None


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    node: str
    containers: tuple[Container, ...]
    start: int | None = None  # first running timestamp; None = before the data begins
    end: int | None = None  # last running timestamp; after it the pod is Succeeded
    deleted: int | None = None  # last timestamp the pod exists at all; after it, no series
    labels: dict[str, str] = field(default_factory=dict)
    # The controller that owns the pod, as (kind, name): Deployment, StatefulSet, DaemonSet, Job or
    # CronJob. A Deployment owns it through a ReplicaSet, a CronJob through a Job, as in a cluster.
    owner: tuple[str, str] | None = None
    # Pod annotations (kube_pod_annotations, as if allow-listed), and the pod IP with the Services whose
    # Endpoints list it (kube_pod_info{pod_ip}, kube_endpoint_address{endpoint, ip}).
    annotations: dict[str, str] = field(default_factory=dict)
    ip: str = ""
    services: tuple[str, ...] = ()


@dataclass(frozen=True)
class Node:
    name: str
    cores: float
    mem_bytes: float
    gpus: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    opencost: dict[str, float] = field(default_factory=dict)  # cpu, ram, gpu, total (hourly)
    provider_id: str = ""  # e.g. aws:///us-east-1a/i-0abc (kube_node_info{provider_id})
    resources: dict[str, float] = field(default_factory=dict)  # other capacity: nvidia_com_mig_1g_10gb: 4, ...
    dcgm: Dcgm | None = None  # dcgm-exporter runs on the node (GPU utilisation series)
    gpu_resource: str = "nvidia_com_gpu"  # the resource `gpus` is advertised as (nvidia_com_gpu_shared: replicas)


@dataclass(frozen=True)
class Dcgm:
    """dcgm-exporter on a GPU node: the GPU model, its framebuffer, and whether it profiles (DCP)."""

    model: str = "NVIDIA A100-SXM4-80GB"
    fb_mib: int = 81920
    profiling: bool = True  # DCGM_FI_PROF_GR_ENGINE_ACTIVE too, not only DCGM_FI_DEV_GPU_UTIL


@dataclass(frozen=True)
class Series:
    """Any other series: value = base + slope * t (a gauge with slope 0, a counter otherwise).

    Used for PVs, Services, ingress requests, network bytes and OpenCost asset prices.
    """

    name: str
    labels: dict[str, str]
    slope: float = 0.0
    base: float = 1000.0
    # A gauge that changes: from each (timestamp, value) on, the value (None: no sample), e.g. a live grid
    # intensity of 200 until t0 + 1800 and 400 after: ((t0 + 1801, 400),). Overrides base and slope there.
    changes: tuple[tuple[int, float | None], ...] = ()


@dataclass(frozen=True)
class Gap:
    """A source's outage: no sample of its series strictly between `start` and `end`.

    source: "ksm" (kube_* series), "cadvisor" (container_*), "opencost" (prices) or "dcgm" (DCGM_*)."""

    source: str
    start: int
    end: int


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[Node, ...]
    pods: tuple[Pod, ...]
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # namespace -> Kubernetes labels
    extra: tuple[Series, ...] = ()
    gaps: tuple[Gap, ...] = ()
    # Namespace annotations kube-state-metrics exports (as if allow-listed): namespace -> {key: value}.
    namespace_annotations: dict[str, dict[str, str]] = field(default_factory=dict)
    # cAdvisor's series carry the pod's `node`, as kube-prometheus' kubelet scrape adds it (the suite of
    # OpenCost selects node!=""); off by default, so the scenarios keep the node-less trap.
    cadvisor_node: bool = False
    # cAdvisor exports the pause container (container="POD", a trap with real usage) as under dockershim;
    # containerd, the demo's runtime, exports none. The pod-level cgroup (container="") is there either way.
    pause: bool = True
    # OpenCost runs in the cluster and exports its own series besides its node prices (Node.opencost):
    # the v1-style node capacity series, node_total_hourly_cost, node_gpu_count, kubecost_node_is_spot and
    # container_*_allocation. Off by default, so a scenario's price sources stay exactly as written.
    opencost: bool = False


def uid_of(kind: str, *names: str) -> str:
    """A stable RFC 4122 UUID per object, as the API server gives each (kube-state-metrics' `uid` label)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"k8s:{kind}/" + "/".join(names)))


# Days before the data an object was created (kube_namespace_created): older than any window under test.
CREATED = 1_600_000_000


def source_of(metric: str) -> str:
    """Which exporter a synthetic series comes from, for `Gap`."""
    if metric.startswith("kube_"):
        return "ksm"
    if metric.startswith("container_"):
        return "cadvisor"
    if metric.startswith(("node_", "kubecost_", "pv_hourly")):
        return "opencost"
    if metric.startswith("DCGM_"):
        return "dcgm"
    return "other"


def _gapped(fn: Sampler, gaps: list[Gap]) -> Sampler:
    return lambda t: None if any(g.start < t < g.end for g in gaps) else fn(t)


def _escape(v: str) -> str:
    """An OpenMetrics label value: backslash, double quote and line feed escaped."""
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in kv.items()) + "}"


def _const(v: float) -> Sampler:
    return lambda t: v


def _line(base: float, slope: float, t: int) -> float:
    return base + slope * t


def _changing(s: Series, t: int) -> float | None:
    value: float | None = _line(s.base, s.slope, t)
    for since, v in s.changes:
        if t >= since:
            value = v
    return value


def _memory(c: Container, t: int) -> float:
    return c.mem_usage * (1 + c.wave * math.sin(2 * math.pi * t / DAY))


def _cpu_counter(c: Container, t: int) -> float:
    # Integral of the usage curve: a counter that starts high, so rate() never sees a reset.
    base = 1e6 + c.cpu_usage * t
    if c.wave:
        base -= c.cpu_usage * c.wave * DAY / (2 * math.pi) * math.cos(2 * math.pi * t / DAY)
    return base


def series(cluster: Cluster, lean: bool = False) -> Iterator[tuple[str, str, Sampler]]:
    """Every series of the cluster as (metric name, label string, value at t or None if absent).

    `lean` (the benchmark) leaves out series no query selects: pod-level, pause and system
    cgroups, phases other than Running. It keeps the query work the same and the backfill small.
    A source's `gaps` blank its series.
    """
    for name, lb, fn in _series(cluster, lean):
        gaps = [g for g in cluster.gaps if g.source == source_of(name)]
        yield name, lb, _gapped(fn, gaps) if gaps else fn


def _series(cluster: Cluster, lean: bool) -> Iterator[tuple[str, str, Sampler]]:
    ksm = {"job": "kube-state-metrics", "instance": "ksm:8080"}

    for n in cluster.nodes:
        node_uid = {"uid": uid_of("node", n.name)}
        for res, unit, cap, alloc in (
            ("cpu", "core", n.cores, n.cores - 0.1),
            ("memory", "byte", n.mem_bytes, n.mem_bytes - 0.5 * GIB),
            ("pods", "integer", 110, 110),
            ("ephemeral_storage", "byte", 100 * GIB, 90 * GIB),
        ) + (((n.gpu_resource, "integer", n.gpus, n.gpus),) if n.gpus else ()) + tuple(
                (res, "integer", v, v) for res, v in sorted(n.resources.items())):
            lb = _labels(**ksm, node=n.name, **node_uid, resource=res, unit=unit)
            yield "kube_node_status_capacity", lb, _const(cap)
            yield "kube_node_status_allocatable", lb, _const(alloc)
        node_labels = {ksm_label(k): v for k, v in sorted(n.labels.items())}
        yield "kube_node_labels", _labels(**ksm, node=n.name, **node_uid, **node_labels), _const(1)
        pid = n.provider_id or f"aws:///us-east-1a/i-{n.name}"
        yield "kube_node_info", _labels(**ksm, node=n.name, **node_uid, provider_id=pid), _const(1)
        oc = {"job": "opencost", "instance": "opencost:9003", "node": n.name}
        if cluster.opencost:  # OpenCost's own labels on its node series
            oc |= {"instance_type": n.labels.get("node.kubernetes.io/instance-type", ""), "provider_id": pid}
        for kind, metric in (("cpu", "node_cpu_hourly_cost"), ("ram", "node_ram_hourly_cost"),
                             ("gpu", "node_gpu_hourly_cost"), ("total", "node_total_hourly_cost")):
            if kind in n.opencost:
                yield metric, _labels(**oc), _const(n.opencost[kind])
        if cluster.opencost and not lean:
            yield from _opencost_node_series(n, oc, node_uid)
        # The node's root cgroup (all of its usage): the coverage probe reads it, one series per node.
        root = _labels(id="/", instance=n.name, job="kubelet", metrics_path="/metrics/cadvisor")
        yield "container_cpu_usage_seconds_total", root, partial(_line, 1e7, n.cores / 2)
        # A system cgroup with no namespace: cAdvisor exports it, it must never be costed.
        if not lean:
            sys_lb = _labels(id="/system.slice/kubelet.service", instance=n.name, job="kubelet")
            yield "container_cpu_usage_seconds_total", sys_lb, partial(_line, 5e5, 2.0)
            yield "container_memory_working_set_bytes", sys_lb, _const(3 * GIB)

    for ns, ns_labels in sorted(cluster.namespaces.items()):
        ns_uid = uid_of("namespace", ns)
        kv = {ksm_label(k): v for k, v in sorted(ns_labels.items())}
        yield "kube_namespace_labels", _labels(**ksm, namespace=ns, uid=ns_uid, **kv), _const(1)
        notes = {"annotation_" + ksm_label(k)[6:]: v
                 for k, v in sorted(cluster.namespace_annotations.get(ns, {}).items())}
        if notes or not lean:
            yield "kube_namespace_annotations", _labels(**ksm, namespace=ns, uid=ns_uid, **notes), _const(1)
        if not lean:
            yield "kube_namespace_created", _labels(**ksm, namespace=ns, uid=ns_uid), _const(CREATED)
    for c in cluster.extra:
        yield c.name, _labels(**c.labels), partial(_changing, c) if c.changes else partial(_line, c.base, c.slope)
    for p in cluster.pods:
        yield from _pod_series(p, ksm, lean, cluster.cadvisor_node, cluster.pause)
        if cluster.opencost and not lean:
            yield from _opencost_allocation(p)
    for n in cluster.nodes:
        if n.dcgm is not None:
            yield from dcgm_series(n, n.dcgm, [p for p in cluster.pods if p.node == n.name])
    yield from _owner_series(cluster.pods, ksm)  # pod-level allocation reads them, in the bench too
    if cluster.opencost and not lean:
        yield from _deployment_labels(cluster.pods)


# A controller's intermediate owner: a Deployment's ReplicaSet, a CronJob's Job.
_VIA = {"Deployment": ("ReplicaSet", "kube_replicaset_owner", "replicaset"),
        "CronJob": ("Job", "kube_job_owner", "job_name")}


def _direct_owner(p: Pod) -> tuple[str, str]:
    """What kube_pod_owner names: `<none>` for a bare pod, else the pod's controller or its go-between."""
    if p.owner is None:
        return "<none>", "<none>"
    kind, name = p.owner
    if kind in _VIA:
        return _VIA[kind][0], f"{name}-{zlib.crc32(name.encode()) % 10**9}"
    return kind, name


def _owner_series(pods: tuple[Pod, ...], ksm: dict[str, str]) -> Iterator[tuple[str, str, Sampler]]:
    """One kube_replicaset_owner / kube_job_owner per go-between (pods share them)."""
    via: dict[tuple[str, str, str], tuple[str, str]] = {}
    for p in pods:
        if p.owner is not None and p.owner[0] in _VIA:
            via[(p.namespace, p.owner[0], _direct_owner(p)[1])] = p.owner
    for (ns, top_kind, name), (kind, top) in sorted(via.items()):
        _, metric, label = _VIA[top_kind]
        yield metric, _labels(**ksm, namespace=ns, **{label: name}, owner_kind=kind, owner_name=top,
                              owner_is_controller="true"), _const(1)


def _opencost_node_series(n: Node, oc: dict[str, str], node_uid: dict[str, str]
                          ) -> Iterator[tuple[str, str, Sampler]]:
    """What OpenCost exports per node besides the prices Node.opencost sets; none changes a price."""
    if "total" not in n.opencost and "cpu" in n.opencost and "ram" in n.opencost:
        total = n.opencost["cpu"] * n.cores + n.opencost["ram"] * n.mem_bytes / GIB + n.opencost.get("gpu", 0) * n.gpus
        yield "node_total_hourly_cost", _labels(**oc), _const(total)
    # every node, 0 without GPUs; OpenCost counts a time-sliced node's physical GPUs (GFD's count label)
    count = float(n.labels.get("nvidia.com/gpu.count", 0)) if "nvidia.com/gpu.replicas" in n.labels else n.gpus
    yield "node_gpu_count", _labels(**oc), _const(count)
    spot = any(n.labels.get(k) == v for k, v in SPOT_LABELS.items())
    yield "kubecost_node_is_spot", _labels(**oc), _const(1.0 if spot else 0.0)
    for metric, v in (("kube_node_status_capacity_cpu_cores", n.cores), ("kube_node_status_allocatable_cpu_cores",
                      n.cores - 0.1), ("kube_node_status_capacity_memory_bytes", n.mem_bytes),
                      ("kube_node_status_allocatable_memory_bytes", n.mem_bytes - 0.5 * GIB)):
        yield metric, _labels(job="opencost", instance="opencost:9003", node=n.name, **node_uid), _const(v)


def _deployment_labels(pods: tuple[Pod, ...]) -> Iterator[tuple[str, str, Sampler]]:
    """OpenCost's deployment_match_labels: each Deployment's selector (its pods' labels), with its uid."""
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for p in pods:
        if p.owner is not None and p.owner[0] == "Deployment":
            seen.setdefault((p.namespace, p.owner[1]), p.labels)
    for (ns, name), labels in sorted(seen.items()):
        kv = {ksm_label(k): v for k, v in sorted(labels.items())}
        yield "deployment_match_labels", _labels(job="opencost", instance="opencost:9003", namespace=ns,
                                                 deployment=name, uid=uid_of("deployment", ns, name), **kv), _const(1)


def _opencost_allocation(p: Pod) -> Iterator[tuple[str, str, Sampler]]:
    """OpenCost's container_*_allocation: the larger of request and usage while the pod runs."""
    on = partial(_running, p)
    for c in p.containers:
        lb = _labels(job="opencost", instance="opencost:9003", namespace=p.namespace, pod=p.name, container=c.name,
                     node=p.node)
        cpu = partial(_alloc, on, c.cpu_request or 0.0, partial(_cpu_rate, c))
        yield "container_cpu_allocation", lb, cpu
        yield "container_memory_allocation_bytes", lb, partial(_alloc, on, c.mem_request or 0.0, partial(_memory, c))
        if c.gpu_request:
            gpus = c.gpu_request if c.gpu_allocation is None else c.gpu_allocation
            yield "container_gpu_allocation", lb, partial(_when, on, gpus)


def _cpu_rate(c: Container, t: int) -> float:
    """The derivative of _cpu_counter: cores in use at t."""
    return c.cpu_usage * (1 + c.wave * math.sin(2 * math.pi * t / DAY))


def _alloc(on: Callable[[int], bool], request: float, usage: Sampler, t: int) -> float | None:
    u = usage(t)
    return max(request, u or 0.0) if on(t) else None


def _pod_series(p: Pod, ksm: dict[str, str], lean: bool, cadvisor_node: bool = False, pause: bool = True
                ) -> Iterator[tuple[str, str, Sampler]]:
    start, end, deleted = p.start, p.end, p.deleted

    def exists(t: int) -> bool:
        return (start is None or t >= start) and (deleted is None or t <= deleted)

    def running(t: int) -> bool:
        return exists(t) and (end is None or t <= end)

    def when(pred: Callable[[int], bool], f: Callable[[int], float | None]) -> Sampler:
        return lambda t: f(t) if pred(t) else None

    uid = uid_of("pod", p.namespace, p.name)
    pod_kv = {"namespace": p.namespace, "pod": p.name}
    ip = {"pod_ip": p.ip} if p.ip else {}
    yield ("kube_pod_info", _labels(**ksm, **pod_kv, uid=uid, node=p.node, host_ip="10.0.0.1", **ip),
           when(exists, lambda t: 1))
    for svc in p.services if p.ip else ():
        lb = _labels(**ksm, namespace=p.namespace, endpoint=svc, ip=p.ip, ready="true")
        yield "kube_endpoint_address", lb, when(running, lambda t: 1)
    if p.annotations or not lean:  # for every pod, with annotation_* columns only when allow-listed
        notes = {"annotation_" + ksm_label(k)[6:]: v for k, v in sorted(p.annotations.items())}
        yield "kube_pod_annotations", _labels(**ksm, **pod_kv, uid=uid, **notes), when(exists, lambda t: 1)
    for phase in ("Running",) if lean else ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
        def val(t: int, ph: str = phase) -> float:
            return 1.0 if (ph == "Running" and running(t)) or (ph == "Succeeded" and not running(t)) else 0.0
        yield "kube_pod_status_phase", _labels(**ksm, **pod_kv, uid=uid, phase=phase), when(exists, val)
    # kube-state-metrics exports kube_pod_labels for every pod, with label_* columns only when allow-listed.
    kv = {ksm_label(k): v for k, v in sorted(p.labels.items())}
    yield "kube_pod_labels", _labels(**ksm, **pod_kv, uid=uid, **kv), when(exists, lambda t: 1)
    kind, name = _direct_owner(p)
    lb = _labels(**ksm, **pod_kv, uid=uid, owner_kind=kind, owner_name=name,
                 owner_is_controller="<none>" if p.owner is None else "true")
    yield "kube_pod_owner", lb, when(exists, lambda t: 1)
    cad = {"job": "kubelet", "metrics_path": "/metrics/cadvisor", "instance": p.node}  # no `node` label ...
    if cadvisor_node:  # ... unless the scrape adds it
        cad["node"] = p.node
    for c in p.containers:
        for res, unit, req in (("cpu", "core", c.cpu_request), ("memory", "byte", c.mem_request),
                               (c.gpu_resource, "integer", c.gpu_request or None),
                               *((r, "integer", v) for r, v in sorted(c.resources.items()))):
            if req is not None:
                lb = _labels(**ksm, **pod_kv, uid=uid, container=c.name, node=p.node, resource=res, unit=unit)
                yield "kube_pod_container_resource_requests", lb, when(exists, _const(req))
        if not lean:  # per container: its state, image and limits (no query of chargeback's selects them)
            yield from _container_state(p, c, uid, ksm, exists, running)
            for res, unit, limit in (("memory", "byte", c.mem_limit), ("cpu", "core", c.cpu_limit)):
                if limit is not None:
                    lb = _labels(**ksm, **pod_kv, uid=uid, container=c.name, node=p.node, resource=res, unit=unit)
                    yield "kube_pod_container_resource_limits", lb, when(exists, _const(limit))
        lb = _labels(**cad, **pod_kv, container=c.name, id=f"/kubepods/{uid}/{c.name}", image=f"img/{c.name}")
        yield "container_cpu_usage_seconds_total", lb, when(running, partial(_cpu_counter, c))
        yield "container_memory_working_set_bytes", lb, when(running, partial(_memory, c))
    # Pod-level cgroup (container="") and pause container (container="POD"): both must be ignored.
    total_cpu = sum(c.cpu_usage for c in p.containers)
    for cname, factor in () if lean else (("", 1.0), ("POD", 0.5))[:2 if pause else 1]:
        lb = _labels(**cad, **pod_kv, container=cname, id=f"/kubepods/{uid}{'/pause' if cname else ''}")
        yield "container_cpu_usage_seconds_total", lb, when(running, partial(_line, 1e6, total_cpu + factor))
        yield "container_memory_working_set_bytes", lb, when(running, _const((factor + 1) * GIB))


def _container_state(p: Pod, c: Container, uid: str, ksm: dict[str, str], exists: Callable[[int], bool],
                     running: Callable[[int], bool]) -> Iterator[tuple[str, str, Sampler]]:
    """kube-state-metrics' per-container series: running (1/0), terminated reason once done, and info."""
    kv = {**ksm, "namespace": p.namespace, "pod": p.name, "uid": uid, "container": c.name}
    yield "kube_pod_container_status_running", _labels(**kv), partial(_state, exists, running, 1.0, 0.0)
    yield ("kube_pod_container_status_terminated_reason", _labels(**kv, reason="Completed"),
           partial(_state, exists, running, None, 1.0))
    image = f"img/{c.name}:1.0"
    cid = f"containerd://{zlib.crc32(f'{uid}/{c.name}'.encode()):08x}"
    yield "kube_pod_container_info", _labels(
        **kv, image=image, image_spec=image, image_id=f"{image}@sha256:{zlib.crc32(c.name.encode()):08x}",
        container_id=cid), partial(_state, exists, _always, 1.0, 1.0)


def _state(exists: Callable[[int], bool], running: Callable[[int], bool], yes: float | None, no: float | None,
           t: int) -> float | None:
    if not exists(t):
        return None
    return yes if running(t) else no


def dcgm_series(n: Node, d: Dcgm, pods: list[Pod]) -> Iterator[tuple[str, str, Sampler]]:
    """dcgm-exporter in its Kubernetes mode: one series per GPU and field, with namespace/pod/container
    while a running container holds the GPU (device plugin order: pods in turn), bare when none does."""
    held: list[tuple[Pod, Container]] = [(p, c) for p in pods for c in p.containers for _ in range(int(c.gpu_request))]
    job = {"job": "dcgm-exporter", "instance": f"{n.name}:9400"}
    for i in range(int(n.gpus)):
        gpu = {"gpu": str(i), "UUID": f"GPU-{zlib.crc32(f'{n.name}/{i}'.encode()):08x}-0000-0000-0000-000000000000",
               "device": f"nvidia{i}", "modelName": d.model, "Hostname": n.name, "DCGM_FI_DRIVER_VERSION": "550.54.15"}
        owner = held[i] if i < len(held) else None
        if owner is None:
            yield from _dcgm_fields(d, _labels(**gpu, **job), 0.0, 0.0, _always)
            continue
        pod, c = owner
        pod_kv = {"container": c.name, "namespace": pod.namespace, "pod": pod.name}
        on = partial(_running, pod)
        yield from _dcgm_fields(d, _labels(**gpu, **job, **pod_kv), c.gpu_util, c.gpu_fb_mib, on)
        yield from _dcgm_fields(d, _labels(**gpu, **job), 0.0, 0.0, partial(_not, on))


def with_dcgm(cluster: Cluster, util: float, fb_mib: float = 0.0, dcgm: Dcgm | None = None) -> Cluster:
    """The cluster with dcgm-exporter on every GPU node and its GPU containers `util` busy (the demo's view)."""
    nodes = tuple(replace(n, dcgm=n.dcgm or dcgm or Dcgm()) if n.gpus else n for n in cluster.nodes)
    pods = tuple(replace(p, containers=tuple(replace(c, gpu_util=util, gpu_fb_mib=fb_mib) if c.gpu_request else c
                                             for c in p.containers)) for p in cluster.pods)
    return replace(cluster, nodes=nodes, pods=pods)


def _always(t: int) -> bool:
    return True


def _not(pred: Callable[[int], bool], t: int) -> bool:
    return not pred(t)


def _when(pred: Callable[[int], bool], v: float, t: int) -> float | None:
    return v if pred(t) else None


def _running(p: Pod, t: int) -> bool:
    return (p.start is None or t >= p.start) and (p.end is None or t <= p.end) and (p.deleted is None or t <= p.deleted)


def _dcgm_fields(d: Dcgm, lb: str, util: float, fb: float, when: Callable[[int], bool]
                 ) -> Iterator[tuple[str, str, Sampler]]:
    fields = [("DCGM_FI_DEV_GPU_UTIL", min(100.0, util * 100 + (20 if d.profiling else 0))),  # coarser than DCP
              ("DCGM_FI_DEV_FB_USED", fb), ("DCGM_FI_DEV_FB_FREE", d.fb_mib - fb), ("DCGM_FI_DEV_DEC_UTIL", 0.0)]
    if d.profiling:
        fields.append(("DCGM_FI_PROF_GR_ENGINE_ACTIVE", util))
    for metric, value in fields:
        yield metric, lb, partial(_when, when, value)


Rewrite = Callable[[Iterator[tuple[str, str, Sampler]]], Iterator[tuple[str, str, Sampler]]]


def write_openmetrics(cluster: Cluster, start: int, end: int, interval: int, out: TextIO, lean: bool = False,
                      extra_labels: dict[str, str] | None = None, rewrite: Rewrite | None = None) -> int:
    """Write samples at start, start+interval, ..., end (inclusive) for promtool backfill; returns sample count.

    `extra_labels` (e.g. cluster="a") go on every series, as a global store's external labels would.
    `rewrite` turns the series into another stack's scrape shape (tests/shapes.py), e.g. two replicas.
    """
    n = 0
    stamps = range(start, end + 1, interval)
    extra = ",".join(f'{k}="{_escape(v)}"' for k, v in (extra_labels or {}).items())
    rows = series(cluster, lean)
    for name, lb, fn in rewrite(rows) if rewrite else rows:
        if extra:
            lb = "{" + extra + ("," + lb[1:] if lb != "{}" else "}")
        prefix = name + lb + " "
        lines = []
        for t in stamps:
            v = fn(t)
            if v is not None:
                lines.append(f"{prefix}{v!r} {t}\n")
        out.writelines(lines)
        n += len(lines)
    out.write("# EOF\n")
    return n


def exposition(cluster: Cluster, t: int) -> str:
    """The cluster's series at time t, in text exposition format (no timestamps), for live scraping."""
    lines = [f"{name}{lb} {v!r}\n" for name, lb, fn in series(cluster) if (v := fn(t)) is not None]
    return "".join(lines)
