"""OpenCost's /assets: the cluster's cost by asset (Node, Disk, LoadBalancer, Network, ClusterManagement, Cloud).

Built from the same CostResult /allocation is built from, so the assets of a window add up to
its allocation total (the cluster cost) exactly. With `reconciled=true` the window is costed a
second time on the bill's prices (reconcile.bill_prices) and the difference per asset is its
`adjustment`, as OpenCost reports reconciliation against the bill. The JSON is outputs/assetjson.py's:
`data` is one object keyed by asset, as OpenCost's; a list of them only for `step` without accumulate.
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
from exporter.core.names import IDLE, UNMOUNTED
from exporter.core.pricing import is_spot
from exporter.core.window import Window
from exporter.engine.fetch import Fetch
from exporter.engine.limits import check_window
from exporter.engine.pipeline import BillPrices, Pipeline
from exporter.outputs.assetjson import (
    SUMMED,
    AssetRow,
    asset_set,
    filter_props,
    parse_aggregate_parts,
    parse_asset_filter,
)
from exporter.outputs.opencost_api import api_window, step_windows
from exporter.sources.billing import Bill, read_bill
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import inventory_queries, join_matchers
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ConfigError

_TYPE = {"storage": "Disk", "load_balancer": "LoadBalancer", "network": "Network"}
# kube_node_labels' instance type labels, newest first (OpenCost's nodeType)
_INSTANCE_TYPE = ("label_node_kubernetes_io_instance_type", "label_beta_kubernetes_io_instance_type")


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


@dataclass
class Ids:
    """What kube-state-metrics names: provider ids of nodes, volume handles of PVs, each PV's claim."""

    nodes: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, str] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)  # PV -> claim name


def provider_ids(client: PrometheusClient, window: Window, ksm_selector: str) -> Ids:
    """Provider ids of nodes (kube_node_info), volume handles of PVs and their claims, as the cloud names them."""
    if not window.seconds:  # an empty window (`today` at 00:00:30) names no asset
        return Ids({}, {}, {})
    q = inventory_queries(ksm_selector, window.seconds)
    nodes = {lb["node"]: lb.get("provider_id", "") for lb, _ in client.query(q["nodes"], float(window.end))}
    volumes = {}
    for lb, _ in client.query(q["volumes"], float(window.end)):
        handle = next((lb[k] for k in ("ebs_volume_id", "csi_volume_handle", "gce_persistent_disk_name")
                       if lb.get(k)), "")
        volumes[lb["persistentvolume"]] = handle
    claims = {lb["volumename"]: lb.get("persistentvolumeclaim", "")
              for lb, _ in client.query(q["claims"], float(window.end)) if lb.get("volumename")}
    return Ids(nodes, volumes, claims)


def asset_rows(result: CostResult, recorded: list[AssetCost], cluster: str, ids: Ids
               ) -> dict[tuple[str, str], AssetRow]:
    """Pure: every asset of a window's result, keyed by (type, name); they sum to result.total_cost."""
    start, end = result.start, result.end
    rows: dict[tuple[str, str], AssetRow] = {}
    qty: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (ns, node, _attrs), line in result.table.items():
        if node:  # capacity = allocated + idle quantity on the node
            qty[node]["cpu"] += line.cpu_core_seconds
            qty[node]["memory"] += line.ram_byte_seconds
            qty[node]["gpu"] += line.gpu_seconds
            if ns == IDLE:
                qty[node]["cpu_idle"] += line.cpu_core_seconds
                qty[node]["ram_idle"] += line.ram_byte_seconds
    for (node, res), c in result.node_cost.items():
        row = rows.setdefault(("Node", node), AssetRow("Node", node, cluster, start, end,
                                                       ids.nodes.get(node, ""), node))
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
        row.cpu_idle_seconds, row.ram_idle_byte_seconds = q.get("cpu_idle", 0.0), q.get("ram_idle", 0.0)
        facts = result.nodes.get(node)
        cores = facts.cores if facts else 0.0
        row.seconds = min(row.cpu_core_seconds / cores, end - start) if cores else float(end - start)
        if facts is not None:
            # kube_node_labels' label_* columns, without the prefix (OpenCost's asset labels)
            row.labels = {k.removeprefix("label_"): v for k, v in facts.labels.items() if k.startswith("label_")}
            row.node_type = next((facts.labels[k] for k in _INSTANCE_TYPE if facts.labels.get(k)), "")
            row.preemptible = 1.0 if is_spot(facts) else 0.0
            row.gpu_opencost_seconds = facts.gpu.opencost_count * row.seconds if facts.gpu else 0.0
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
            row.provider_id = ids.volumes.get(asset, "")
            claim_ns = next((a.namespace for a in parts if a.namespace != UNMOUNTED), "")
            klass = next((a.source[len("class:"):] for a in parts if a.source.startswith("class:")), "")
            row.extra = {"claimNamespace": claim_ns, "claimName": ids.claims.get(asset, "") if claim_ns else "",
                         "storageClass": klass}
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


def asset_sets(windows: list[Window], cost: Callable[[Window], list[AssetRow]], accumulate: bool,
               parts: list[str]) -> list[dict[str, dict[str, Any]]]:
    """One set per step window, or one summed set with accumulate=true."""
    per = [cost(w) for w in windows]
    if accumulate:
        # The same asset in several steps is one asset over the whole window.
        rows = _merge_same([r for set_rows in per for r in set_rows], windows[0].start, windows[-1].end)
        return [asset_set(rows, parts)]
    return [asset_set(rows, parts) for rows in per]


def _merge_same(rows: list[AssetRow], start: int, end: int) -> list[AssetRow]:
    out: dict[tuple[str, str], AssetRow] = {}
    for r in rows:
        have = out.get((r.type, r.name))
        if have is None:
            out[(r.type, r.name)] = replace(r, start=start, end=end, extra=dict(r.extra))
            continue
        for f in ("seconds", *SUMMED):
            setattr(have, f, getattr(have, f) + getattr(r, f))
    return list(out.values())


def assets_response(cfg: Config, client: PrometheusClient,
                    make: Callable[[Config, BillPrices | None], RecordingPipeline],
                    query: dict[str, list[str]], now: float, cancel: threading.Event | None = None) -> dict[str, Any]:
    """/assets: window, filter, and chargeback's step, aggregate, accumulate and reconciled (adjusted to the
    configured bills). `data` is one keyed set unless `step` cuts the window and accumulate is not true."""
    def arg(name: str) -> str | None:
        return query.get(name, [None])[0]

    # OpenCost's window forms, rounded as /allocation's (`7d` from a midnight), so both answer the same window
    window = api_window(arg("window") or "24h", now, parse_duration(cfg.allocation.resolution),
                        allow_empty=True)
    check_window(window, cfg.api.maxWindow)
    parts = parse_aggregate_parts(arg("aggregate"))
    flt = parse_asset_filter(arg("filter") or "")
    accumulate = parse_flag(query, "accumulate")
    reconciled = parse_flag(query, "reconciled")
    windows = step_windows(window, arg("step"))
    ksm = join_matchers(cfg.prometheus.ksmSelector, cfg.prometheus.clusterSelector)
    ids = provider_ids(client, window, ksm)
    cluster = cfg.serve.clusterName or "cluster"
    bill = load_bill(cfg) if reconciled else None

    def cost(w: Window) -> list[AssetRow]:
        pipeline = make(cfg, None)
        result = pipeline.compute(w, cancel=cancel)
        rows = asset_rows(result, pipeline.fetcher.recorded, cluster, ids)
        if bill is not None:
            from exporter.outputs.reconcile import bill_prices, inventory, reconcile

            rec = reconcile(bill, inventory(client, w, ksm), result, w, cfg.reconciliation.clusterTags)
            again = make(cfg, bill_prices(rec, result))
            billed = again.compute(w, cancel=cancel)
            rows = adjust(rows, asset_rows(billed, again.fetcher.recorded, cluster, ids))
        kept = [r for r in rows.values() if flt is None or flt.matches(filter_props(r))]
        return sorted(kept, key=lambda r: (r.type, r.name))

    sets = asset_sets(windows, cost, accumulate or len(windows) == 1, parts)
    # OpenCost's /assets answers one set, keyed by asset; only chargeback's `step` makes a list of them
    data: Any = sets if arg("step") and not accumulate else sets[0]
    return {"code": 200, "status": "success", "data": data}


def load_bill(cfg: Config) -> Bill:
    """The configured bills (reconciliation.bills globs), read and validated."""
    files = sorted({f for pattern in cfg.reconciliation.bills for f in glob.glob(pattern)})
    if not files:
        raise ConfigError("no bill to read: reconciliation.bills matches no file"
                          + (f" ({', '.join(cfg.reconciliation.bills)})" if cfg.reconciliation.bills else ""))
    return read_bill(list(files))
