"""Allocation rows below (namespace, node): per container, with controller, pod, services and annotations.

The cost model does not change: every segment is costed per (namespace, node, owner) as always
(max(request, usage), the per-step overflow scale per node, idle per node, sharing), and each of
those rows is then split between its containers in proportion to their allocated quantity of each
resource on that node (the same integrals, per container). A node's price is one rate per resource,
so the split is the cost each container's quantity would have cost, and a namespace's container rows
add up to its namespace-level row. A namespace's volumes go to the pods that mounted them
(exporter/outputs/podvolumes.py), load balancers and network to theirs (exporter/outputs/podservices.py);
what sharing moved goes to the owner's containers; the pseudo-namespaces (__idle__, ...) stay as they are.

Bounded memory: pod metadata is read once per window; per-container quantities are read per segment
(a chunk), turned into rows, and added into the groups the request asks for at once, so what stays is
the groups (plus the pod metadata), never a window's container rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from exporter.core.allocation import RESOURCES, CostResult, Line, RowKey
from exporter.core.attribution import Owners
from exporter.core.coverage import Coverage
from exporter.core.gpu import GpuPodCost
from exporter.core.gpuwaste import row_waste
from exporter.core.names import is_pseudo
from exporter.core.window import Window
from exporter.engine.spans import running_spans
from exporter.outputs.allocbody import AllocationBody, SetGroups
from exporter.outputs.allocfilter import Node, Props
from exporter.outputs.allocitem import GpuInfo, Row
from exporter.outputs.allocrows import AllocRow, Group, RowBuilder, add_rows, finish
from exporter.outputs.opencost_api import AggKey, AllocationQuery
from exporter.outputs.podmeta import PodMeta, fetch_meta
from exporter.outputs.podservices import PodBytes, pod_bytes, split_services
from exporter.outputs.podvolumes import Shares, VolumeShares, split_volumes, volume_shares, volume_shares_by_chunk
from exporter.sources.allocsteps import NodeScales
from exporter.sources.podsteps import ContainerFetcher, ContainerTotals
from exporter.sources.promql import one_of
from exporter.sources.queries import RESOURCE_FROM_KSM, Queries
from exporter.sources.stepfetch import namespace_batches, usage_records
from exporter.vocab.labels import Attrs, Metadata

if TYPE_CHECKING:
    from exporter.engine.pipeline import Pipeline

ContainerKey = tuple[str, str, str, str]  # (namespace, node, pod, container)

# Pods per batch of per-container queries: a batch's answers (six rows per pod and step, with six labels
# each) set the client's peak (docs/scale.md). The node scales come once per segment, so smaller batches
# cost only more, smaller queries.
BATCH_PODS = 1000
_QTY = {"cpu": "cpu_core_seconds", "memory": "ram_byte_seconds", "gpu": "gpu_seconds"}
_REQ = {"cpu": "cpu_request_seconds", "memory": "ram_request_byte_seconds"}
_USE = {"cpu": "cpu_usage_seconds", "memory": "ram_usage_byte_seconds"}
_HELD = {"cpu": "cpu_held_seconds", "memory": "ram_held_byte_seconds"}
_LIMIT = {"cpu": "cpu_limit_seconds", "memory": "ram_limit_byte_seconds"}


def container_lines(totals: ContainerTotals, step: int, limits: Mapping[ContainerKey, Mapping[str, float]]
                    | None = None) -> dict[ContainerKey, Line]:
    """Per-container sums over steps as unit-seconds on Lines, the shape split_rows takes; `limits`: each
    container's limit integrals (unit-seconds) per resource, of those containers only. Pure."""
    out: dict[ContainerKey, Line] = {}
    for rows, names in ((totals.allocated, _QTY), (totals.requested, _REQ), (totals.used, _USE),
                        (totals.held, _HELD)):
        for key, v in rows.items():
            if key.resource in names:
                line = out.setdefault((key.namespace, key.node, key.pod, key.container), Line())
                setattr(line, names[key.resource], getattr(line, names[key.resource]) + v * step)
    for ckey, per_res in (limits or {}).items():
        if ckey in out:
            for res, v in per_res.items():
                setattr(out[ckey], _LIMIT[res], getattr(out[ckey], _LIMIT[res]) + v)
    return out


def with_gpus(usage: dict[ContainerKey, Line], held: Mapping[ContainerKey, GpuPodCost],
              dcgm: Mapping[tuple[str, str, str], Mapping[str, float]], namespaces: Container[str]) -> None:
    """Each container's GPU-seconds as the engine holds them (physical devices: a MIG slice or a time-sliced
    replica is a fraction of one), not kube-state-metrics' advertised units, which are not even read for
    MIG, HAMi or AMD resources; and its pod's dcgm-exporter seconds (`dcgm`: (namespace, node, pod) ->
    kind -> GPU-seconds) in proportion to what it holds of the pod's GPUs. Pure; `namespaces`: this batch's."""
    pods: dict[tuple[str, str, str], float] = {}
    for line in usage.values():
        line.gpu_seconds = 0.0
    for key, h in held.items():
        if key[0] in namespaces and h.gpu_seconds > 0:
            line = usage.setdefault(key, Line())
            line.gpu_seconds, line.gpu_request_seconds = h.gpu_seconds, h.requested_seconds
            line.gpu_opencost_seconds = h.opencost_seconds
            pods[key[:3]] = pods.get(key[:3], 0.0) + h.gpu_seconds
    for key, line in usage.items():
        pod = pods.get(key[:3], 0.0)
        seen = dcgm.get(key[:3]) if pod else None
        if seen:
            share = line.gpu_seconds / pod
            line.gpu_usage_seconds = seen.get("gpu", 0.0) * share
            line.gpu_observed_seconds = seen.get("gpu_observed", 0.0) * share
            line.gpu_memory_used_byte_seconds = seen.get("gpu_memory", 0.0) * share
            line.gpu_memory_byte_seconds = seen.get("gpu_memory_total", 0.0) * share
            line.gpu_pod_busy_seconds = seen.get("gpu_pod_mean", 0.0) * share


def with_spans(usage: Mapping[ContainerKey, Line], spans: Mapping[tuple[str, ...], tuple[float, float]]) -> None:
    """Each container's Line takes in its pod's running span ((namespace, node, pod) -> span). Pure."""
    for key, line in usage.items():
        if (span := spans.get(key[:3])) is not None:
            line.widen(*span)


def container_limits(pipeline: Pipeline, q: Queries, w: Window) -> dict[ContainerKey, dict[str, float]]:
    """Each container's CPU and memory limit integrals (unit-seconds) over a segment, of what `q` selects."""
    out: dict[ContainerKey, dict[str, float]] = {}
    by = "namespace, node, pod, container, resource"
    for lb, v in pipeline.client.query(q.limits_integral(w.seconds, by), float(w.end)):
        res = RESOURCE_FROM_KSM.get(lb.get("resource", ""), "")
        if res in _LIMIT:
            key = (lb.get("namespace", ""), lb.get("node", ""), lb.get("pod", ""), lb.get("container", ""))
            out.setdefault(key, {})[res] = v * pipeline.step
    return out


def split_rows(rows: Iterable[AllocRow], usage: Mapping[ContainerKey, Line], attrs_of: Callable[[str, str], Attrs],
               meta: PodMeta, volumes: VolumeShares | None = None, traffic: PodBytes | None = None,
               node_labels: Mapping[str, Mapping[str, str]] | None = None) -> Iterator[AllocRow]:
    """Each tenant row on a node, split between its containers by allocated quantity per resource; then
    what sharing moved to an owner (shared idle, shared namespaces and fixed costs), split between that
    owner's containers by their cost of each resource (shared cost: by their total). Pure.

    What a row holds that no container can carry (a resource none of them was allocated, load balancers and
    what no pod can take, below) stays on a row with no pod, so the parts add up to the row. Volumes go to the
    pods that mounted them (`volumes`, exporter/outputs/podvolumes.py), load balancers to the pods behind
    their Service and network to the pods by transmitted bytes (`traffic`, exporter/outputs/podservices.py)."""
    members: dict[tuple[str, str, Attrs], list[tuple[ContainerKey, Line]]] = {}
    pods: dict[tuple[str, str], list[ContainerKey]] = {}
    for key, line in usage.items():
        ns, node, pod, _c = key
        members.setdefault((ns, node, attrs_of(ns, pod)), []).append((key, line))
        pods.setdefault((ns, pod), []).append(key)
    services = {k: v.services for k, v in meta.pods_info.items() if v.services}

    def pod_row(r: AllocRow, key: ContainerKey, part: Row, pvs: dict[str, tuple[float, float]]) -> AllocRow:
        # A node-less row (a volume's, a Service's, traffic) moves onto its pod's node, and takes that node's
        # labels (allocation.nodeLabels) as the pod's other rows have them: else the pod's group drops them.
        on_node = (node_labels or {}).get(key[1]) if not r.props.node else None
        ns_props = replace(r.props, node=key[1], labels=_over(on_node, r.props.labels)) if on_node else \
            replace(r.props, node=key[1])
        props = _pod_props(ns_props, key[2], key[3], meta)
        return AllocRow("", props, part, r.namespace_labels, r.attrs, r.props.annotations, pvs=pvs)
    moved: list[AllocRow] = []
    # (namespace, owner) -> container -> (its props without a node, its cost per resource): for moved rows.
    owned: dict[tuple[str, Attrs], dict[tuple[str, str], tuple[Props, dict[str, float]]]] = {}
    for r in rows:
        if r.moved and not r.name:
            moved.append(r)
            continue
        if not r.name and not r.props.node and (r.pvs or r.lbs or r.row.cost["network"]):
            for piece in split_volumes(r, volumes, pods, pod_row) if r.pvs and volumes else (r,):
                if piece.props.pod:
                    yield piece
                else:
                    yield from split_services(piece, services, traffic or {}, pods, pod_row)
            continue
        mine = members.get((r.props.namespace, r.props.node, r.attrs)) if not r.name and r.props.node else None
        if not mine:
            yield r
            continue
        weight = {res: sum(getattr(line, _QTY[res]) for _k, line in mine) for res in RESOURCES}
        rest = Row()
        for res, c in r.row.cost.items():
            if res not in weight or not weight[res]:
                rest.cost[res] = c
        by_container = owned.setdefault((r.props.namespace, r.attrs), {})
        for ((_ns, _node, pod, container), line), waste in zip(mine, waste_shares(r.row, mine), strict=True):
            part = Row(line=line)
            for res in RESOURCES:
                if weight[res]:
                    part.cost[res] = r.row.cost[res] * getattr(line, _QTY[res]) / weight[res]
            line.gpu_waste_cost = waste
            if part.total or any(getattr(line, f) for f in (*_QTY.values(), *_REQ.values(), *_USE.values())):
                props = _pod_props(r.props, pod, container, meta)
                yield AllocRow("", props, part, r.namespace_labels, r.attrs, r.props.annotations)
                _, costs = by_container.setdefault((pod, container), (replace(props, node="", providerID=""), {}))
                for res in RESOURCES:
                    costs[res] = costs.get(res, 0.0) + part.cost[res]
        if rest.total:
            yield AllocRow(r.name, r.props, rest, r.namespace_labels, r.attrs)
    for r in moved:
        yield from _split_moved(r, owned.get((r.props.namespace, r.attrs), {}))


def waste_shares(row: Row, mine: list[tuple[ContainerKey, Line]]) -> list[float]:
    """The row's GPU waste (the engine's, on the whole row) split between its containers by the waste each
    would show alone (the same formula on its share of the row), or by GPU held where none was seen: the
    parts add up to the row's, as its cost does. Alone they need not: two pods on one GPU that dcgm-exporter
    shows under one of them (a stale request) are one observed GPU for the row, and half a GPU each."""
    total, held = row.line.gpu_waste_cost, sum(line.gpu_seconds for _k, line in mine)
    if not total or not held:
        return [0.0] * len(mine)
    alone = [row_waste(replace(line, gpu_cost=row.cost["gpu"] * line.gpu_seconds / held)) for _k, line in mine]
    seen = sum(alone)
    return [total * (a / seen if seen else line.gpu_seconds / held) for a, (_k, line) in zip(alone, mine, strict=True)]


def _split_moved(r: AllocRow, containers: Mapping[tuple[str, str], tuple[Props, dict[str, float]]]
                 ) -> Iterator[AllocRow]:
    """A moved row, split by the owner's containers' cost: per resource, and shared cost by their total."""
    weight = {res: sum(c[res] for _p, c in containers.values()) for res in RESOURCES}
    whole = sum(weight.values())
    rest = Row(shared=0.0 if whole else r.row.shared)
    for res, c in r.row.cost.items():
        if not weight.get(res):
            rest.cost[res] = c
    for props, costs in containers.values():
        part = Row(shared=r.row.shared * sum(costs.values()) / whole if whole else 0.0)
        for res in RESOURCES:
            if weight[res]:
                part.cost[res] = r.row.cost[res] * costs[res] / weight[res]
        if part.total:
            yield AllocRow("", props, part, r.namespace_labels, r.attrs, r.props.annotations, moved=True)
    if rest.total:
        yield AllocRow(r.name, r.props, rest, r.namespace_labels, r.attrs, moved=True)


def _pod_props(ns_props: Props, pod: str, container: str, meta: PodMeta) -> Props:
    info = meta.of(ns_props.namespace, pod)
    # The owner's (attribution) values win over the pod's raw labels, so label:team agrees at every level.
    return Props(cluster=ns_props.cluster, node=ns_props.node, namespace=ns_props.namespace,
                 controllerKind=info.controller_kind, controller=info.controller, pod=pod, container=container,
                 providerID=meta.provider_ids.get(ns_props.node, ""), services=info.services,
                 labels=_over(info.labels, ns_props.labels), annotations=_over(ns_props.annotations, info.annotations))


def _over(under: Mapping[str, str], over: Mapping[str, str]) -> Mapping[str, str]:
    """`{**under, **over}`, but one of them itself when the other adds nothing: pod rows and groups then
    share their pod's dict (read-only everywhere) instead of each holding a copy."""
    if not over or over.items() <= under.items():
        return under
    if not under:
        return over
    return {**under, **over}


class PodGranularity:
    """`Pipeline.compute(..., granularity=...)`: container rows for one window, grouped as they come."""

    def __init__(self, keys: list[AggKey], flt: Node | None, include_idle: bool, label_keys: tuple[str, ...],
                 cluster: str, batch_pods: int = BATCH_PODS, by_node: bool = True) -> None:
        self.keys, self.filter, self.include_idle = keys, flt, include_idle
        self.batch_pods, self.by_node = batch_pods, by_node
        self.label_keys, self.cluster = label_keys, cluster
        self.groups: dict[str, Group] = {}
        self.meta = PodMeta()
        self.volumes: dict[int, Shares] = {}  # chunk end -> volume shares, read once for a long window
        self._lock = threading.Lock()

    def begin(self, pipeline: Pipeline, window: Window) -> None:
        self.meta = fetch_meta(pipeline.client, pipeline.queries, window)
        if window.seconds > pipeline.chunk:
            self.volumes = volume_shares_by_chunk(pipeline.client, pipeline.queries, window, pipeline.chunk,
                                                  pipeline.step)

    def add_segment(self, pipeline: Pipeline, w: Window, q: Queries, meta: Metadata, owners: Owners,
                    result: CostResult, node_scales: NodeScales | None = None) -> None:
        """Called by the pipeline for every costed segment, with the queries (bridged or not) it used and,
        from the raw path, the nodes' overflow scales (the recorded path has none: read them here).
        Namespaces are split batch by batch, so one batch's containers are held at a time."""
        builder = RowBuilder(result, self.label_keys, self.cluster, meta.namespaces, meta.annotations)
        # Each tenant namespace's table keys and node-less rows; the pseudo-namespaces' rows are `rest`.
        keys: dict[str, list[RowKey]] = {}
        for key in result.table:
            keys.setdefault("" if is_pseudo(key[0]) else key[0], []).append(key)
        nodeless: dict[str, list[AllocRow]] = {}
        for r in builder.nodeless():
            nodeless.setdefault(r.props.namespace, []).append(r)  # "" for the pseudo-namespaces
        rest = [*builder.table_rows(keys.pop("", [])), *nodeless.pop("", [])]
        tenants = set(keys) | set(nodeless)

        def attrs_of(ns: str, pod: str) -> Attrs:
            return owners.of(ns, pod) if ns in owners.split else owners.of(ns)

        plan = namespace_batches(tenants, self.meta.pods, self.batch_pods)
        alloc = pipeline.cfg.allocation
        fetcher = ContainerFetcher(pipeline.client, alloc.policy, alloc.requestWeight)
        records = usage_records(pipeline.client, q, w.start, w.end)
        scales = node_scales if node_scales is not None else fetcher.scales(q, w.start, w.end, records,
                                                                            len(self.meta.provider_ids))
        dcgm: dict[tuple[str, str, str], dict[str, float]] = {}
        if result.gpu_pods:  # dcgm-exporter's busy and observed seconds per pod, as the engine reads them per row
            for lb, v in pipeline.client.query(q.gpu_usage_integral(w.seconds, every_pod=True), float(w.end)):
                kinds = dcgm.setdefault((lb.get("namespace", ""), lb.get("node", ""), lb.get("pod", "")), {})
                kinds[lb.get("kind", "")] = kinds.get(lb.get("kind", ""), 0.0) + v * pipeline.step
        volumes: Shares = {}
        if result.pv_parts:  # a whole chunk read with the window, else (a bridged or cut piece) its own query
            whole = w.seconds == pipeline.chunk and q.ksm_at is None and q.ksm_after is None
            volumes = self.volumes.get(w.end, {}) if whole and w.end in self.volumes else \
                volume_shares(pipeline.client, q, w, pipeline.step)
        traffic: PodBytes = {}
        if any(line.network_cost for (ns, node, _a), line in result.table.items() if not node and not is_pseudo(ns)):
            traffic = pod_bytes(pipeline.client, q, w, pipeline.step)
        for batch in plan:
            whole = len(plan) == 1
            totals = fetcher.totals(q if whole else q.scoped(batch), w.start, w.end, scales, records,
                                    "" if whole else one_of("namespace", batch),
                                    sum(self.meta.pods.get(ns, 1) for ns in batch))
            scoped = q if whole else q.scoped(batch)
            usage = container_lines(totals, pipeline.step, container_limits(pipeline, scoped, w))
            with_gpus(usage, result.gpu_pods, dcgm, set(batch))
            if pipeline.running_spans:
                with_spans(usage, running_spans(pipeline.client, scoped, w, "namespace, node, pod"))
            del totals
            rows = [r for ns in batch for r in (*builder.table_rows(keys.pop(ns, [])), *nodeless.pop(ns, []))]
            split = split_rows(rows, usage, attrs_of, self.meta, volumes, traffic, result.node_labels)
            with self._lock:
                self.add(split)
            del usage, split, rows  # this batch's rows are in the groups now
        with self._lock:
            self.add(rest)

    def add(self, rows: Iterable[AllocRow]) -> None:
        """Group rows as they come (under the lock); reports group them their own way (outputs/report.py)."""
        add_rows(self.groups, rows, self.keys, self.filter, self.include_idle, self.by_node)


def response(pipeline: Pipeline, query: AllocationQuery, label_keys: tuple[str, ...], cluster: str,
             cancel: threading.Event | None = None, volume_ids: Mapping[str, str] | None = None) -> AllocationBody:
    """allocbody.response for requests that need pod-level rows: one compute per set, one set's groups held
    at a time (an earlier set is encoded as soon as it is computed, the last as it is sent)."""
    body = AllocationBody()
    coverage = Coverage()
    for s in query.sets:
        grain = PodGranularity(query.aggregate, query.filter, query.include_idle, label_keys, cluster,
                               by_node=query.proportional)
        result = pipeline.compute(s.compute, cancel=cancel, granularity=grain)
        one = {(g.props.namespace, g.props.pod, g.props.container) for g in grain.groups.values() if g.props.container}
        gpu = frozenset((g.props.namespace, g.props.pod, g.props.container) for g in grain.groups.values()
                        if g.props.container and g.row.line.gpu_seconds > 0)
        peaks = pipeline.usage_max(s.compute, one, cancel, gpu) if one else None
        found = pipeline.gpu_devices(s.compute, {k[:2] for k in gpu}) if gpu else {}
        gpus = {k: GpuInfo(*found[k[:2]]) for k in gpu if k[:2] in found}
        if body.last is not None:
            body.done.append(b"".join(body.last.encode()))
        body.last = SetGroups(finish(grain.groups), result.start, result.end, (s.bounds.start, s.bounds.end),
                              cluster, result.node_cost if query.proportional else None, query.kubernetes_keys,
                              peaks, gpus=gpus, volume_ids=volume_ids)
        coverage.merge(result.coverage)
        del grain, result
    span = (query.sets[0].compute.start, query.sets[-1].compute.end) if query.sets else None
    body.coverage = coverage.to_json(span)
    return body
