"""OpenCost's JSON for /assets: one object keyed by asset, each asset in its type's field order.

OpenCost keys an asset by provider/account/project/category/cluster/type/service/providerID/name,
`__undefined__` standing for an empty part, and writes only the fields of its type (Node, Disk,
LoadBalancer, Network, ClusterManagement, Cloud; assets of several types summed are `Any`, with no
`type`). The filter is OpenCost's asset filter (`assetType:"node"`, `provider:"AWS"`, `label[k]:"v"`)
in the v2 grammar of allocfilter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from exporter.core.window import iso
from exporter.outputs import allocfilter
from exporter.outputs.allocfilter import Node, Schema
from exporter.vocab.errors import ConfigError
from exporter.vocab.labels import aggregate_parts

UNDEFINED = "__undefined__"  # OpenCost's key part for an empty property
KEY_PARTS = ("provider", "account", "project", "category", "cluster", "type", "service", "providerID", "name")
# OpenCost's asset properties, then chargeback's `node`, as `aggregate` takes them (and label:<key>).
ASSET_AGGREGATES = (*KEY_PARTS, "node")
CATEGORY = {"Node": "Compute", "Disk": "Storage", "LoadBalancer": "Network", "Network": "Network",
            "ClusterManagement": "Management", "Cloud": "Other"}
# The numbers of an AssetRow that add up when assets are summed (over steps, or under an aggregate key).
SUMMED = ("cpu_cost", "ram_cost", "gpu_cost", "cpu_core_seconds", "ram_byte_seconds", "gpu_seconds",
          "gpu_opencost_seconds", "cpu_idle_seconds", "ram_idle_byte_seconds", "byte_seconds", "cost", "adjustment")


@dataclass
class AssetRow:
    """One asset over one set's window; costs before adjustment, `adjustment` = bill - computed."""

    type: str
    name: str
    cluster: str
    start: int
    end: int
    provider_id: str = ""
    node: str = ""
    seconds: float = 0.0  # active time
    cpu_cost: float = 0.0
    ram_cost: float = 0.0
    gpu_cost: float = 0.0
    cpu_core_seconds: float = 0.0
    ram_byte_seconds: float = 0.0
    gpu_seconds: float = 0.0  # physical GPU-seconds (what gpuCost prices)
    gpu_opencost_seconds: float = 0.0  # OpenCost's GPU count over the node's active seconds (gpuCount)
    byte_seconds: float = 0.0  # disks
    cost: float = 0.0  # disks, load balancers, network, fixed fees
    adjustment: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)  # claimNamespace, claimName, storageClass
    labels: dict[str, str] = field(default_factory=dict)  # a node's kube_node_labels, without label_
    node_type: str = ""
    preemptible: float = 0.0  # 1 for a spot node
    cpu_idle_seconds: float = 0.0  # idle core-seconds of a node (cpuBreakdown)
    ram_idle_byte_seconds: float = 0.0

    @property
    def total(self) -> float:
        return self.cpu_cost + self.ram_cost + self.gpu_cost + self.cost + self.adjustment


@dataclass(frozen=True)
class AssetProps:
    """What an asset filter can look at (OpenCost's asset filter fields)."""

    assetType: str = ""  # lower case, as OpenCost's filter compares it: node, disk, loadbalancer, ...
    name: str = ""
    category: str = ""
    cluster: str = ""
    project: str = ""
    provider: str = ""
    providerID: str = ""
    account: str = ""
    service: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


ASSET_SCHEMA = Schema({f.name: f.name for f in fields(AssetProps) if f.name != "labels"} | {"type": "assetType"},
                      {"label": "labels"}, example="assetType, name, cluster, provider, providerID or label[k]")


def parse_asset_filter(text: str) -> Node | None:
    """OpenCost's asset filter (`filter=assetType:"node"`); None when empty."""
    return allocfilter.parse_filter(text, schema=ASSET_SCHEMA)


def provider_of(provider_id: str) -> str:
    """aws:///zone/i-0abc -> AWS; gce://project/zone/name -> GCP; azure:///... -> Azure."""
    scheme = provider_id.split(":", 1)[0].lower() if ":" in provider_id else ""
    return {"aws": "AWS", "gce": "GCP", "azure": "Azure"}.get(scheme, scheme)


def properties(r: AssetRow) -> dict[str, str]:
    """OpenCost's AssetProperties in its field order, empty ones left out (omitempty)."""
    props = {"category": CATEGORY[r.type], "provider": provider_of(r.provider_id), "account": "", "project": "",
             "service": "" if r.type == "Cloud" else "Kubernetes", "cluster": r.cluster, "name": r.name,
             "providerID": r.provider_id}
    return {k: v for k, v in props.items() if v}


def filter_props(r: AssetRow) -> AssetProps:
    p = properties(r)
    return AssetProps(r.type.lower(), **{k: p.get(k, "") for k in ("name", "category", "cluster", "project",
                                                                   "provider", "providerID", "account", "service")},
                      labels=r.labels)


def prop_value(r: AssetRow, part: str) -> str:
    """One part of an asset's key: a property, its type, chargeback's node, or label:<key>."""
    if part == "type":
        return r.type
    if part == "node":
        return r.node
    if part.startswith("label:"):
        k = part[len("label:"):]
        return f"{k}={r.labels[k]}" if r.labels.get(k) else ""
    return properties(r).get(part, "")


def asset_key(r: AssetRow, parts: tuple[str, ...] | list[str] = KEY_PARTS) -> str:
    return "/".join(prop_value(r, p) or UNDEFINED for p in parts)


def _window(r: AssetRow) -> dict[str, str]:
    return {"start": iso(r.start), "end": iso(r.end)}


def _per(quantity: float, seconds: float) -> float:
    return quantity / seconds if seconds else 0.0


def _breakdown(idle: float, total: float) -> dict[str, float]:
    frac = idle / total if total else 0.0
    return {"idle": frac, "other": 0.0, "system": 0.0, "user": 1.0 - frac if total else 0.0}


def render(r: AssetRow, props: dict[str, str] | None = None, labels: Mapping[str, str] | None = None
           ) -> dict[str, Any]:
    """One asset as OpenCost marshals its type (fields and order of core/pkg/opencost's asset JSON)."""
    head: dict[str, Any] = {} if r.type == "Any" else {"type": r.type}
    head.update({"properties": properties(r) if props is None else props,
                 "labels": dict(r.labels if labels is None else labels), "window": _window(r),
                 "start": iso(r.start), "end": iso(r.end), "minutes": r.seconds / 60})
    if r.type == "Node":
        return head | {
            "nodeType": r.node_type, "cpuCores": _per(r.cpu_core_seconds, r.seconds),
            "ramBytes": _per(r.ram_byte_seconds, r.seconds), "cpuCoreHours": r.cpu_core_seconds / 3600,
            "ramByteHours": r.ram_byte_seconds / 3600, "GPUHours": r.gpu_seconds / 3600,
            "cpuBreakdown": _breakdown(r.cpu_idle_seconds, r.cpu_core_seconds),
            "ramBreakdown": _breakdown(r.ram_idle_byte_seconds, r.ram_byte_seconds),
            "preemptible": r.preemptible, "discount": 0.0, "cpuCost": r.cpu_cost, "gpuCost": r.gpu_cost,
            "gpuCount": _per(r.gpu_opencost_seconds, r.seconds), "ramCost": r.ram_cost, "adjustment": r.adjustment,
            "totalCost": r.total, "physicalGpuCount": _per(r.gpu_seconds, r.seconds)}
    if r.type == "Disk":
        unmounted = not r.extra.get("claimNamespace")
        return head | {
            "byteHours": r.byte_seconds / 3600, "bytes": _per(r.byte_seconds, r.seconds), "byteHoursUsed": None,
            "byteUsageMax": None, "breakdown": _breakdown(1.0 if unmounted else 0.0, 1.0),
            "adjustment": r.adjustment, "totalCost": r.total, "storageClass": r.extra.get("storageClass", ""),
            "volumeName": r.name, "claimName": r.extra.get("claimName", ""),
            "claimNamespace": r.extra.get("claimNamespace", "")}
    if r.type == "LoadBalancer":
        return head | {"adjustment": r.adjustment, "totalCost": r.total, "private": False, "ip": ""}
    if r.type == "ClusterManagement":
        return head | {"totalCost": r.total}
    if r.type == "Cloud":
        return head | {"adjustment": r.adjustment, "credit": 0.0, "totalCost": r.total}
    return head | {"adjustment": r.adjustment, "totalCost": r.total}  # Network, Any


def _common(maps: list[Mapping[str, str]]) -> dict[str, str]:
    """What every map shares (OpenCost's Merge of properties and labels)."""
    out = dict(maps[0])
    for m in maps[1:]:
        out = {k: v for k, v in out.items() if m.get(k) == v}
    return out


def summed(rows: list[AssetRow]) -> AssetRow:
    """Several assets as one: amounts added, the longest time kept, `Any` unless all are of one type."""
    first = rows[0]
    out = replace(first, type=first.type if all(r.type == first.type for r in rows) else "Any",
                  seconds=max(r.seconds for r in rows), extra=_common([r.extra for r in rows]),
                  labels=_common([r.labels for r in rows]))
    for f in SUMMED:
        setattr(out, f, sum(getattr(r, f) for r in rows))
    return out


def asset_set(rows: list[AssetRow], parts: list[str]) -> dict[str, dict[str, Any]]:
    """One set: each asset under OpenCost's full key, or the assets summed under the aggregate's key."""
    if not parts:
        return {asset_key(r): render(r) for r in rows}
    groups: dict[str, list[AssetRow]] = {}
    for r in rows:
        groups.setdefault(asset_key(r, parts), []).append(r)
    out = {}
    for key, group in groups.items():
        out[key] = render(summed(group), _common([properties(r) for r in group]))
    return out


def parse_aggregate_parts(text: str | None, allowed: tuple[str, ...] = ASSET_AGGREGATES) -> list[str]:
    """`aggregate=a,b` of /assets (or, with its fields, /cloudCost): each part one of `allowed` (or label:k)."""
    parts = [p for p in aggregate_parts(text or "") if p]  # at most 32 keys, as every door
    for p in parts:
        if p not in allowed and not (allowed is ASSET_AGGREGATES and p.startswith("label:") and len(p) > 6):
            raise ConfigError(f"aggregate={text!r}: {p!r} is not one of {', '.join(allowed)}")
    return parts
