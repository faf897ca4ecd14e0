"""OpenCost's /assets: the cluster's cost by asset (Node, Disk, LoadBalancer, Network, ClusterManagement, Cloud).

Built from the same CostResult /allocation is built from, so the assets of a window add up to
its allocation total (the cluster cost) exactly. With `reconciled=true` the window is costed a
second time on the bill's prices (reconcile.bill_prices) and the difference per asset is its
`adjustment`, as OpenCost reports reconciliation against the bill.
"""

from __future__ import annotations

import glob
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from exporter.config.schema import Config
from exporter.core.allocation import OVERHEAD, CostResult
from exporter.core.assets import AssetCost
from exporter.core.names import UNALLOCATED
from exporter.core.window import Window, iso
from exporter.engine.fetch import Fetch
from exporter.engine.limits import check_window
from exporter.engine.pipeline import BillPrices, Pipeline
from exporter.outputs.opencost_api import api_window, step_windows
from exporter.sources.billing import Bill, read_bill
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import inventory_queries, join_matchers
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ConfigError
from exporter.vocab.labels import aggregate_parts

# OpenCost's asset properties; account, project and service are not known here: every asset answers
# __unallocated__ for them, as OpenCost's do where the provider leaves them empty.
ASSET_AGGREGATES = ("type", "cluster", "node", "providerID", "provider", "category", "name", "account", "project",
                    "service")
_TYPE = {"storage": "Disk", "load_balancer": "LoadBalancer", "network": "Network"}
_CATEGORY = {"Node": "Compute", "Disk": "Storage", "LoadBalancer": "Network", "Network": "Network",
             "ClusterManagement": "Management", "Cloud": "Other"}


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
    gpu_seconds: float = 0.0
    byte_seconds: float = 0.0  # disks
    cost: float = 0.0  # disks, load balancers, network, fixed fees
    adjustment: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)  # claim namespace, storage class, ...

    @property
    def total(self) -> float:
        return self.cpu_cost + self.ram_cost + self.gpu_cost + self.cost + self.adjustment


def parse_flag(query: dict[str, list[str]], name: str, default: bool = False) -> bool:
    v = query.get(name, [None])[0]
    if v is None or v == "":
        return default
    if v.lower() not in ("true", "false"):
        raise ConfigError(f"{name}={v!r}: use true or false")
    return v.lower() == "true"


class RecordingFetch(Fetch):
    """The fetch stage, keeping each chunk's priced assets for their quantities and owners."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: list[AssetCost] = []
        self._record_lock = threading.Lock()

    def fetch_assets(self, w: Window, queries: Any = None) -> tuple[list[AssetCost], dict[str, set[str]]]:
        out, network = super().fetch_assets(w, queries)
        with self._record_lock:
            self.recorded.extend(out)
        return out, network


class RecordingPipeline(Pipeline):
    """The allocation pipeline with a RecordingFetch: `fetcher.recorded` holds the window's priced assets."""

    fetch_type = RecordingFetch
    fetcher: RecordingFetch


def provider_ids(client: PrometheusClient, window: Window, ksm_selector: str) -> tuple[dict[str, str], dict[str, str]]:
    """Provider ids of nodes (kube_node_info) and volume handles of PVs, as the cloud names them."""
    q = inventory_queries(ksm_selector, window.seconds)
    nodes = {lb["node"]: lb.get("provider_id", "") for lb, _ in client.query(q["nodes"], float(window.end))}
    volumes = {}
    for lb, _ in client.query(q["volumes"], float(window.end)):
        handle = next((lb[k] for k in ("ebs_volume_id", "csi_volume_handle", "gce_persistent_disk_name")
                       if lb.get(k)), "")
        volumes[lb["persistentvolume"]] = handle
    return nodes, volumes


def asset_rows(result: CostResult, recorded: list[AssetCost], cluster: str, node_ids: dict[str, str],
               volume_ids: dict[str, str]) -> dict[tuple[str, str], AssetRow]:
    """Pure: every asset of a window's result, keyed by (type, name); they sum to result.total_cost."""
    start, end = result.start, result.end
    rows: dict[tuple[str, str], AssetRow] = {}
    qty: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (_ns, node, _attrs), line in result.table.items():
        if node:  # capacity = allocated + idle quantity on the node
            qty[node]["cpu"] += line.cpu_core_seconds
            qty[node]["memory"] += line.ram_byte_seconds
            qty[node]["gpu"] += line.gpu_seconds
    for (node, res), c in result.node_cost.items():
        row = rows.setdefault(("Node", node), AssetRow("Node", node, cluster, start, end,
                                                       node_ids.get(node, ""), node))
        if res == "cpu":
            row.cpu_cost += c
        elif res == "memory":
            row.ram_cost += c
        else:
            row.gpu_cost += c
    for (_t, node), row in rows.items():
        q = qty.get(node, {})
        row.cpu_core_seconds, row.ram_byte_seconds, row.gpu_seconds = q.get("cpu", 0.0), q.get("memory", 0.0), \
            q.get("gpu", 0.0)
        facts = result.nodes.get(node)
        cores = facts.cores if facts else 0.0
        row.seconds = min(row.cpu_core_seconds / cores, end - start) if cores else float(end - start)
    detail: dict[tuple[str, str], list[AssetCost]] = defaultdict(list)
    for a in recorded:
        detail[(a.asset, a.resource)].append(a)
    for (asset, res), c in result.asset_cost.items():
        kind = _TYPE.get(res, "Network")
        row = rows.setdefault((kind, asset), AssetRow(kind, asset, cluster, start, end))
        row.cost += c
        parts = detail.get((asset, res), [])
        if kind == "Disk":
            row.byte_seconds = sum(a.quantity for a in parts)
            row.provider_id = volume_ids.get(asset, "")
            row.extra = {"claimNamespace": next((a.namespace for a in parts), "")}
        elif kind == "LoadBalancer":
            row.seconds = max((a.quantity for a in parts), default=0.0)
        if kind != "LoadBalancer":
            row.seconds = float(end - start)
    for (source, res), c in result.pools.items():
        if res == OVERHEAD:
            kind = "Cloud" if source.startswith("bill:") else "ClusterManagement"
            row = rows.setdefault((kind, source), AssetRow(kind, source, cluster, start, end, seconds=end - start))
            row.cost += c
    return rows


def adjust(base: dict[tuple[str, str], AssetRow], billed: dict[tuple[str, str], AssetRow]
           ) -> dict[tuple[str, str], AssetRow]:
    """Keep the computed costs and book the bill's difference per asset as `adjustment` (bill-only rows as is)."""
    out = {}
    for key in {*base, *billed}:
        if key not in base:
            out[key] = billed[key]
            continue
        row = base[key]
        out[key] = replace(row, adjustment=(billed[key].total if key in billed else 0.0) - row.total)
    return out


def provider_of(provider_id: str) -> str:
    """aws:///zone/i-0abc -> AWS; gce://project/zone/name -> GCP; azure:///... -> Azure."""
    scheme = provider_id.split(":", 1)[0].lower() if ":" in provider_id else ""
    return {"aws": "AWS", "gce": "GCP", "azure": "Azure"}.get(scheme, scheme)


def asset_item(row: AssetRow) -> dict[str, Any]:
    """One asset in OpenCost's field names."""
    item: dict[str, Any] = {
        "type": row.type,
        "properties": {"category": _CATEGORY[row.type], "provider": provider_of(row.provider_id),
                       "providerID": row.provider_id, "cluster": row.cluster, "name": row.name},
        "start": iso(row.start), "end": iso(row.end), "minutes": row.seconds / 60,
        "adjustment": row.adjustment, "totalCost": row.total,
    }
    if row.type == "Node":
        item.update({
            "node": row.node,
            "cpuCores": row.cpu_core_seconds / row.seconds if row.seconds else 0.0,
            "ramBytes": row.ram_byte_seconds / row.seconds if row.seconds else 0.0,
            "gpuCount": row.gpu_seconds / row.seconds if row.seconds else 0.0,
            "cpuCoreHours": row.cpu_core_seconds / 3600, "ramByteHours": row.ram_byte_seconds / 3600,
            "gpuHours": row.gpu_seconds / 3600,
            "cpuCost": row.cpu_cost, "ramCost": row.ram_cost, "gpuCost": row.gpu_cost, "discount": 0.0,
        })
    elif row.type == "Disk":
        item.update({"bytes": row.byte_seconds / row.seconds if row.seconds else 0.0,
                     "byteHours": row.byte_seconds / 3600, "local": 0.0, "volumeName": row.name,
                     "claimNamespace": row.extra.get("claimNamespace", "")})
    else:
        item["cost"] = row.cost
    return item


def aggregate_rows(rows: list[AssetRow], parts: list[str]) -> dict[str, dict[str, Any]]:
    """Each asset under its own key, or summed by the aggregate keys (names joined with '/')."""
    if not parts:
        return {f"{r.cluster}/{r.type}/{r.name}": asset_item(r) for r in rows}

    def value(r: AssetRow, p: str) -> str:
        v = {"type": r.type, "cluster": r.cluster, "node": r.node, "providerID": r.provider_id,
             "provider": provider_of(r.provider_id), "category": _CATEGORY[r.type], "name": r.name}.get(p, "")
        return v or UNALLOCATED

    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = "/".join(value(r, p) for p in parts)
        item = asset_item(r)
        have = out.get(key)
        if have is None:
            out[key] = item
            continue
        for k, v in item.items():
            if isinstance(v, float) and k in have and k != "minutes" and isinstance(have[k], float):
                have[k] += v
            elif k == "minutes":
                have[k] = max(have[k], v)
            elif k == "properties":
                have[k] = {pk: pv for pk, pv in have[k].items() if v.get(pk) == pv}
            elif k not in have:
                have[k] = v
            elif have[k] != v and not isinstance(v, float):
                have[k] = "Any" if k == "type" else ""
    return out


def parse_aggregate_parts(text: str | None, allowed: tuple[str, ...] = ASSET_AGGREGATES) -> list[str]:
    """`aggregate=a,b` of /assets (or, with its fields, /cloudCost): each part must be one of `allowed`."""
    parts = [p for p in aggregate_parts(text or "") if p]
    for p in parts:
        if p not in allowed:
            raise ConfigError(f"aggregate={text!r}: {p!r} is not one of {', '.join(allowed)}")
    return parts


def asset_sets(windows: list[Window], cost: Callable[[Window], list[AssetRow]], accumulate: bool,
               parts: list[str]) -> list[dict[str, dict[str, Any]]]:
    """One set per step window, or one summed set with accumulate=true."""
    per = [cost(w) for w in windows]
    if accumulate:
        # The same asset in several steps is one asset over the whole window.
        rows = _merge_same([r for set_rows in per for r in set_rows], windows[0].start, windows[-1].end)
        return [aggregate_rows(rows, parts)]
    return [aggregate_rows(rows, parts) for rows in per]


def _merge_same(rows: list[AssetRow], start: int, end: int) -> list[AssetRow]:
    out: dict[tuple[str, str], AssetRow] = {}
    for r in rows:
        have = out.get((r.type, r.name))
        if have is None:
            out[(r.type, r.name)] = replace(r, start=start, end=end, extra=dict(r.extra))
            continue
        for f in ("seconds", "cpu_cost", "ram_cost", "gpu_cost", "cpu_core_seconds", "ram_byte_seconds",
                  "gpu_seconds", "byte_seconds", "cost", "adjustment"):
            setattr(have, f, getattr(have, f) + getattr(r, f))
    return list(out.values())


def assets_response(cfg: Config, client: PrometheusClient,
                    make: Callable[[Config, BillPrices | None], RecordingPipeline],
                    query: dict[str, list[str]], now: float, cancel: threading.Event | None = None) -> dict[str, Any]:
    """/assets: window, step, aggregate, accumulate and reconciled (adjust to the configured bills)."""
    def arg(name: str) -> str | None:
        return query.get(name, [None])[0]

    # OpenCost's window forms, rounded as /allocation's (`7d` from a midnight), so both answer the same window
    window = api_window(arg("window") or "24h", now, parse_duration(cfg.allocation.resolution))
    check_window(window, cfg.api.maxWindow)
    parts = parse_aggregate_parts(arg("aggregate"))
    accumulate = parse_flag(query, "accumulate")
    reconciled = parse_flag(query, "reconciled")
    windows = step_windows(window, arg("step"))
    ksm = join_matchers(cfg.prometheus.ksmSelector, cfg.prometheus.clusterSelector)
    node_ids, volume_ids = provider_ids(client, window, ksm)
    cluster = cfg.serve.clusterName or "cluster"
    bill = load_bill(cfg) if reconciled else None

    def cost(w: Window) -> list[AssetRow]:
        pipeline = make(cfg, None)
        result = pipeline.compute(w, cancel=cancel)
        rows = asset_rows(result, pipeline.fetcher.recorded, cluster, node_ids, volume_ids)
        if bill is not None:
            from exporter.outputs.reconcile import bill_prices, inventory, reconcile

            rec = reconcile(bill, inventory(client, w, ksm), result, w, cfg.reconciliation.clusterTags)
            again = make(cfg, bill_prices(rec, result))
            billed = again.compute(w, cancel=cancel)
            rows = adjust(rows, asset_rows(billed, again.fetcher.recorded, cluster, node_ids, volume_ids))
        return sorted(rows.values(), key=lambda r: (r.type, r.name))

    return {"code": 200, "data": asset_sets(windows, cost, accumulate, parts)}


def load_bill(cfg: Config) -> Bill:
    """The configured bills (reconciliation.bills globs), read and validated."""
    files = sorted({f for pattern in cfg.reconciliation.bills for f in glob.glob(pattern)})
    if not files:
        raise ConfigError("no bill to read: reconciliation.bills matches no file"
                          + (f" ({', '.join(cfg.reconciliation.bills)})" if cfg.reconciliation.bills else ""))
    return read_bill(list(files))
