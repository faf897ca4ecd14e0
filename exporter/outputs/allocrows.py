"""Allocation rows with OpenCost's properties, filtered, then grouped by any aggregate keys. Pure.

A row is (namespace, node, owner) for allocated cost and quantities (from the cost table), and
(namespace, owner) for what sharing moved (shared cost, shared idle), whose node is unknown. Requests
that need pods, controllers or containers split the node rows further (exporter/outputs/podrows.py); those
rows only fill more properties, and are grouped here the same way.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from exporter.core.allocation import CostResult, Line, RowKey, add_parts, join_spans
from exporter.core.names import IDLE, UNALLOCATED, UNATTRIBUTED, is_pseudo
from exporter.outputs.allocfilter import Node, Props
from exporter.outputs.allocitem import Row
from exporter.outputs.opencost_api import AggKey
from exporter.vocab.labels import either_key, prom_key

_RES_COST = {"cpu": "cpu_cost", "memory": "ram_cost", "gpu": "gpu_cost", "storage": "pv_cost",
             "load_balancer": "lb_cost", "network": "network_cost"}


@dataclass(slots=True)
class AllocRow:
    name: str  # "" for tenants; the pseudo-namespace (__idle__, __unmounted__, ...) otherwise
    props: Props
    row: Row = field(default_factory=Row)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    attrs: tuple[str, ...] = ()  # the owner (attribution values) of the cost-table row it comes from
    namespace_annotations: Mapping[str, str] | None = None  # set on pod rows, whose annotations are the pod's
    moved: bool = False  # what sharing moved to this owner (shared cost, shared idle): no node
    pvs: Mapping[str, tuple[float, float]] | None = None  # PV -> (byte-seconds, cost) of a volume row
    lbs: Mapping[str, tuple[float, float]] | None = None  # "namespace/service" -> (seconds, cost), likewise


def _labels(attrs: tuple[str, ...], keys: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in zip(keys, attrs, strict=False) if v and v != UNATTRIBUTED}


def build_rows(result: CostResult, label_keys: tuple[str, ...], cluster: str,
               ns_labels: Mapping[str, Mapping[str, str]] | None = None,
               ns_annotations: Mapping[str, Mapping[str, str]] | None = None) -> list[AllocRow]:
    """Rows whose cost adds up to `result.costs` exactly: allocated and kept idle cost per node from the
    table (scaled to the cost entries, so sharing is honoured), everything sharing moved without a node."""
    rows = RowBuilder(result, label_keys, cluster, ns_labels, ns_annotations)
    return [*rows.table_rows(sorted(result.table)), *rows.nodeless(), *rows.energy_rows()]


class RowBuilder:
    """build_rows in parts: the rows of some table keys at a time (podrows builds one batch of namespaces'
    rows at a time, not a whole segment's), then the rows with no node."""

    def __init__(self, result: CostResult, label_keys: tuple[str, ...], cluster: str,
                 ns_labels: Mapping[str, Mapping[str, str]] | None = None,
                 ns_annotations: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.table, self.label_keys, self.cluster = result.table, label_keys, cluster
        self.energy = result.energy
        self.ns_labels, self.ns_annotations = ns_labels or {}, ns_annotations or {}
        # (ns, attrs, res): allocated or kept idle
        self.kept: dict[tuple[str, tuple[str, ...], str], float] = {}
        self.moved: dict[tuple[str, tuple[str, ...]], Row] = {}
        for (ns, attrs, component, res, _src), c in result.costs.items():
            if component == "allocated" or (ns == IDLE and component == "idle"):
                self.kept[(ns, attrs, res)] = self.kept.get((ns, attrs, res), 0.0) + c
            else:
                r = self.moved.setdefault((ns, attrs), Row())
                if component == "shared":
                    r.shared += c
                else:
                    r.cost[res] += c
        self.table_sum: dict[tuple[str, tuple[str, ...], str], float] = {}
        # In key order: the table's order follows the fetch threads, and sums in another order differ in the
        # last bit (allocate with and without concurrent chunks must print the same bits).
        for (ns, _node, attrs), line in sorted(result.table.items(), key=lambda kv: kv[0]):
            for res, c in line.cost_by_resource().items():
                self.table_sum[(ns, attrs, res)] = self.table_sum.get((ns, attrs, res), 0.0) + c
        # One dict per (namespace, node if it has allocation.nodeLabels, owner), read-only, shared.
        self.owner_labels: dict[tuple[str, str, tuple[str, ...]], dict[str, str]] = {}
        self.node_labels = result.node_labels
        self.volumes = _by_namespace(result.pv_parts)  # namespace -> PV -> (byte-seconds, cost)
        self.balancers = _by_namespace(result.lb_parts)  # namespace -> "namespace/service" -> (seconds, cost)

    def _props(self, ns: str, node: str, attrs: tuple[str, ...]) -> Props:
        real = "" if is_pseudo(ns) else ns
        on_node = self.node_labels.get(node, {})
        labels = self.owner_labels.get((real, node if on_node else "", attrs))
        if labels is None:  # OpenCost's: the node's (allocation.nodeLabels), the namespace's, then the owner's
            labels = self.owner_labels[(real, node if on_node else "", attrs)] = {
                **on_node, **self.ns_labels.get(real, {}), **_labels(attrs, self.label_keys)}
        return Props(cluster=self.cluster, node=node, namespace=real, labels=labels,
                     annotations=self.ns_annotations.get(real, {}))

    def _row(self, ns: str, node: str, attrs: tuple[str, ...], r: Row, moved: bool = False) -> AllocRow:
        return AllocRow(ns if is_pseudo(ns) else "", self._props(ns, node, attrs), r, self.ns_labels.get(ns, {}),
                        attrs, moved=moved)

    def table_rows(self, keys: Iterable[RowKey]) -> Iterator[AllocRow]:
        """The rows of these keys of the table (in their order), but shared namespaces': their cost reached
        the tenants as shared cost."""
        kept, table_sum = self.kept, self.table_sum
        for key in keys:
            ns, node, attrs = key
            if not any((ns, attrs, res) in kept for res in _RES_COST):
                continue
            line = self.table[key]
            # The table's own Line, not a copy: rows are read, never added into.
            r = Row(line=line) if ns != IDLE else Row()
            for res, c in line.cost_by_resource().items():
                total = table_sum.get((ns, attrs, res), 0.0)
                r.cost[res] += c * kept.get((ns, attrs, res), 0.0) / total if total else 0.0
            if ns == IDLE:  # idle has no requests or usage; keep the allocated-capacity quantities
                # OpenCost's views of idle are the same unused capacity (allocitem reads them).
                r.line = Line(cpu_core_seconds=line.cpu_core_seconds, ram_byte_seconds=line.ram_byte_seconds,
                              gpu_seconds=line.gpu_seconds, cpu_held_seconds=line.cpu_core_seconds,
                              ram_held_byte_seconds=line.ram_byte_seconds, gpu_request_seconds=line.gpu_seconds,
                              gpu_opencost_seconds=line.gpu_seconds)
            row = self._row(ns, node, attrs, r)
            if not node:  # the namespace's volumes and load balancers, each kept as its pvCost and lbCost are
                row.pvs = _kept_parts(self.volumes.get(ns), r.cost["storage"], line.pv_cost)
                row.lbs = _kept_parts(self.balancers.get(ns), r.cost["load_balancer"], line.lb_cost)
            yield row

    def energy_rows(self) -> Iterator[AllocRow]:
        """Energy and carbon per (namespace, node, owner), rows of their own with no cost: they group with the
        cost rows of the same properties (exporter/core/energy.py)."""
        e = self.energy
        for key in sorted(e.joules):
            ns, node, attrs, _component = key
            yield self._row(ns, node, attrs, Row(energy=e.joules[key], carbon=e.grams.get(key, 0.0)))

    def nodeless(self) -> list[AllocRow]:
        """What sharing moved to each owner; fixed costs no tenant could take, and kept entries with no table
        row (none today)."""
        rows = [self._row(ns, "", attrs, r, moved=True) for (ns, attrs), r in self.moved.items()]
        for (ns, attrs, res), c in self.kept.items():
            if not self.table_sum.get((ns, attrs, res)) and c:
                r = Row()
                r.cost[res] = c
                rows.append(self._row(ns, "", attrs, r))
        return rows


def _by_namespace(parts: Mapping[tuple[str, str], tuple[float, float]]) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for (ns, name), part in sorted(parts.items()):
        out.setdefault(ns, {})[name] = part
    return out


def _kept_parts(parts: Mapping[str, tuple[float, float]] | None, kept: float, whole: float
                ) -> dict[str, tuple[float, float]] | None:
    """Each volume's (or load balancer's) quantity and the share of its cost the row kept (sharing may have
    moved the rest to the tenants)."""
    if not parts or not whole:
        return None
    return {name: (q, c * kept / whole) for name, (q, c) in parts.items()}


def _value(row: AllocRow, key: AggKey) -> str:
    p = row.props
    if key.kind in ("cluster", "node", "namespace", "controllerKind", "pod", "container"):
        return str(getattr(p, key.kind))
    if key.kind == "controller":  # OpenCost names a controller kind:name (deployment:api)
        return f"{p.controllerKind}:{p.controller}" if p.controller else ""
    if key.kind == "service":  # OpenCost groups a pod behind several Services under its first one
        return p.services[0] if p.services else ""
    # Pod rows keep labels and annotations as kube-state-metrics spells them (app_kubernetes_io_name).
    return either_key(p.labels if key.kind == "label" else p.annotations, key.key) or ""


def row_group_name(row: AllocRow, keys: list[AggKey]) -> str:
    """OpenCost's key: values joined with '/', `__unallocated__` where a row lacks one; pseudo rows keep
    their own name (__idle__, __unmounted__, __shared__)."""
    if row.name:
        return row.name
    return "/".join(_value(row, k) or UNALLOCATED for k in keys)


def _intersect(a: Props, b: Props) -> Props:
    """Keep what both share: a property of an aggregate is kept only when every item has it. `a` itself
    when `b` takes nothing from it (a pod's group meets its pod's props twice per segment)."""
    if all(getattr(a, n) in (getattr(b, n), "", ()) for n in _PLAIN) and _kept(a.labels, b.labels) \
            and _kept(a.annotations, b.annotations):
        return a
    same = {n: getattr(a, n) for n in _PLAIN if getattr(a, n) == getattr(b, n)}
    blank = {n: ("" if n != "services" else ()) for n in _PLAIN}
    return replace(a, **{**blank, **same}, labels=_common(a.labels, b.labels),
                   annotations=_common(a.annotations, b.annotations))


def _kept(mine: Mapping[str, str], theirs: Mapping[str, str]) -> bool:
    return mine is theirs or mine.items() <= theirs.items()


def _common(mine: Mapping[str, str], theirs: Mapping[str, str]) -> Mapping[str, str]:
    """The items both hold: `mine` itself when it holds nothing else (no new dict per row added)."""
    return mine if _kept(mine, theirs) else {k: v for k, v in mine.items() if theirs.get(k) == v}


_PLAIN = tuple(f.name for f in fields(Props) if f.name not in ("labels", "annotations"))
_LINE = tuple(f.name for f in fields(Line))
_RUN_START, _RUN_END = _LINE.index("run_start"), _LINE.index("run_end")
_COSTS = tuple(Row().cost)
_SHARED = len(_LINE) + len(_COSTS)
_ENERGY, _CARBON = _SHARED + 1, _SHARED + 2


class Group:
    """One allocation of the answer. Its quantities and costs are one array of floats (the Line's fields,
    the cost per resource, then shared cost), not a Row of float objects: a pod-level answer holds a group
    per pod. `row` builds the Row when it is read."""

    __slots__ = ("by_node", "lbs", "namespace_annotations", "namespace_labels", "props", "pvs", "values")

    def __init__(self, props: Props, row: Row, namespace_labels: Mapping[str, str],
                 by_node: dict[str, dict[str, float]] | None = None,
                 namespace_annotations: Mapping[str, str] | None = None) -> None:
        self.props = props
        self.values = array("d", bytes(8 * (_CARBON + 1)))
        self.add(row)
        # Read-only, shared with the rows (a merge makes a new dict), not a copy per pod group.
        self.namespace_labels = namespace_labels
        self.by_node = by_node if by_node is not None else {}  # node -> cpu/memory/gpu cost on it
        self.namespace_annotations = namespace_annotations  # None: the same as props.annotations
        self.pvs: dict[str, tuple[float, float]] | None = None  # PV -> (byte-seconds, cost), as OpenCost's `pvs`
        self.lbs: dict[str, tuple[float, float]] | None = None  # service -> (seconds, cost): `lbAllocations`

    def add(self, row: Row) -> None:
        v, line = self.values, row.line
        span = join_spans(v[_RUN_START], v[_RUN_END], line.run_start, line.run_end)
        for i, name in enumerate(_LINE):
            v[i] += getattr(line, name)
        v[_RUN_START], v[_RUN_END] = span
        for res, c in row.cost.items():
            v[len(_LINE) + _COSTS.index(res)] += c
        v[_SHARED] += row.shared
        v[_ENERGY] += row.energy
        v[_CARBON] += row.carbon

    @property
    def row(self) -> Row:
        v = self.values
        return Row(Line(*v[:len(_LINE)]), dict(zip(_COSTS, v[len(_LINE):_SHARED], strict=True)), v[_SHARED],
                   v[_ENERGY], v[_CARBON])


def aggregate(rows: Iterable[AllocRow], keys: list[AggKey], flt: Node | None, include_idle: bool,
              by_node: bool = True) -> dict[str, Group]:
    """Filter rows (before grouping, as OpenCost does), then group them by the keys."""
    out: dict[str, Group] = {}
    add_rows(out, rows, keys, flt, include_idle, by_node)
    return finish(out)


def finish(groups: dict[str, Group]) -> dict[str, Group]:
    """Groups with no cost are left out (idle stays, as OpenCost reports it)."""
    return {k: g for k, g in groups.items() if g.row.total or k == IDLE}


def add_rows(out: dict[str, Group], rows: Iterable[AllocRow], keys: list[AggKey], flt: Node | None,
             include_idle: bool, by_node: bool = True) -> None:
    """Add rows into `out` as they come, so a caller streaming pod rows holds only the groups. `by_node`
    keeps each group's cost per node, which only includeProportionalAssetResourceCosts reads (a dict
    per group, a fifth of a pod group's size)."""
    for r in rows:
        if flt is not None and not flt.matches(r.props):
            continue
        if r.name == IDLE and not include_idle:
            continue
        name = row_group_name(r, keys)
        g = out.get(name)
        ns_notes = r.namespace_annotations
        if g is None:
            out[name] = Group(r.props, Row(), r.namespace_labels, namespace_annotations=ns_notes)
            g = out[name]
        else:
            g.props = _intersect(g.props, r.props)
            g.namespace_labels = _common(g.namespace_labels, r.namespace_labels)
            if g.namespace_annotations is not None or ns_notes is not None:
                mine = g.props.annotations if g.namespace_annotations is None else g.namespace_annotations
                theirs = r.props.annotations if ns_notes is None else ns_notes
                g.namespace_annotations = _common(mine, theirs)
        g.add(r.row)
        if r.pvs:
            g.pvs = g.pvs if g.pvs is not None else {}
            add_parts(g.pvs, r.pvs)
        if r.lbs:
            g.lbs = g.lbs if g.lbs is not None else {}
            add_parts(g.lbs, r.lbs)
        if by_node and r.props.node:
            on = g.by_node.setdefault(r.props.node, dict.fromkeys(("cpu", "memory", "gpu"), 0.0))
            for res in on:
                on[res] += r.row.cost[res]


def _keys(values: Mapping[str, str], kubernetes: bool) -> dict[str, str]:
    return dict(values) if kubernetes else {prom_key(k): v for k, v in values.items()}


def properties_json(g: Group, kubernetes_keys: bool = False) -> dict[str, Any]:
    """OpenCost's `properties`: only what every aggregated item shares, empty values left out. Label and
    annotation keys in OpenCost's sanitised spelling (cost_center), or as Kubernetes spells them."""
    p = g.props
    out: dict[str, Any] = {f.name: getattr(p, f.name) for f in fields(Props)
                           if f.name not in ("labels", "annotations", "services") and getattr(p, f.name)}
    if p.services:
        out["services"] = list(p.services)
    if p.labels:
        out["labels"] = _keys(p.labels, kubernetes_keys)
    if g.namespace_labels:
        out["namespaceLabels"] = _keys(g.namespace_labels, kubernetes_keys)
    # Namespace-level rows carry the namespace's annotations only, so both of OpenCost's names hold them;
    # pod rows carry the pod's over the namespace's in `annotations`.
    ns_notes = p.annotations if g.namespace_annotations is None else g.namespace_annotations
    if p.annotations:
        out["annotations"] = _keys(p.annotations, kubernetes_keys)
    if ns_notes:
        out["namespaceAnnotations"] = _keys(ns_notes, kubernetes_keys)
    return out


def proportional_costs(g: Group, node_cost: Mapping[tuple[str, str], float], cluster: str) -> dict[str, Any]:
    """OpenCost's proportionalAssetResourceCosts: the share of each node's cpu, ram and gpu cost (and of
    their sum) that this allocation's rows on that node carry, keyed "cluster,node"."""
    out: dict[str, Any] = {}
    for node, cost in sorted(g.by_node.items()):
        total = {res: node_cost.get((node, res), 0.0) for res in cost}
        pct = {res: cost[res] / total[res] if total[res] else 0.0 for res in cost}
        whole = sum(total.values())
        out[f"{cluster},{node}"] = {"cluster": cluster, "node": node, "cpuPercentage": pct["cpu"],
                                    "gpuPercentage": pct["gpu"], "ramPercentage": pct["memory"],
                                    "nodeResourceCostPercentage": sum(cost.values()) / whole if whole else 0.0}
    return out


def cluster_name(cluster_selector: str) -> str:
    """The `cluster` property: the value of a cluster="..." matcher in prometheus.clusterSelector, else
    "cluster" (the name `aggregate=cluster` has always answered with)."""
    m = re.search(r'\bcluster\s*=\s*"((?:[^"\\]|\\.)*)"', cluster_selector)
    return m.group(1) if m else "cluster"
