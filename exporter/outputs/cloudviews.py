"""OpenCost's Cloud Costs page endpoints: /cloudCost/view/{table,totals,graph} and /cloudCost/status.

The views read the same daily sets /cloudCost builds from the configured bills (outputs/cloudcost.py), as
OpenCost's views read its daily repository: the table and totals over the whole window, the graph a set per
UTC day with its top 10 items (the tenth summing the rest as "Other"). Status is one entry per configured
bill file, with OpenCost's integration fields: whether it reads, its provider, and the period it covers.
Without any bill configured the views answer empty with a warning, and status an empty list: OpenCost's web
UI then says that no integration is configured, which is the truth.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Any

from exporter.config.schema import Config
from exporter.core.window import Window, iso
from exporter.engine.limits import check_window
from exporter.outputs.assetjson import parse_aggregate_parts
from exporter.outputs.cloudcost import (
    ACCUMULATE,
    BASES,
    CLOUD_FIELDS,
    accumulate_sets,
    calendar_windows,
    cloud_cost_set,
    parse_filter,
)
from exporter.outputs.opencost_api import api_window
from exporter.outputs.reconcile import inventory
from exporter.sources.billing import bill_format, read_bill
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import join_matchers
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ConfigError

CHART_ITEMS = 10  # OpenCost's DefaultChartItemsLength
SORT_FIELDS = {"cost": "cost", "name": "name", "kubernetespercent": "kubernetesPercent"}
NO_BILL = "no bill configured (reconciliation.bills is empty): cloud costs come from billing exports"


@dataclass(frozen=True)
class ViewQuery:
    window: Window
    parts: list[str]
    metric: str  # one of BASES
    limit: int
    offset: int
    sort_by: str
    descending: bool


def _int(query: dict[str, list[str]], name: str) -> int:
    text = query.get(name, ["0"])[0] or "0"
    if not text.isdigit():
        raise ConfigError(f"{name}={text!r}: use a whole number, 0 or more")
    return int(text)


def parse_view_query(query: dict[str, list[str]], now: float, resolution: int) -> ViewQuery:
    """OpenCost's view parameters: window, aggregate, costMetric, limit, offset, sortBy, sortByOrder."""
    def arg(name: str, default: str) -> str:
        return query.get(name, [default])[0] or default

    metric = next((b for b in BASES if b.lower() == arg("costMetric", "amortizedNetCost").lower()), None)
    if metric is None:
        raise ConfigError(f"costMetric={arg('costMetric', '')!r}: use one of {', '.join(BASES)}")
    sort_by = SORT_FIELDS.get(arg("sortBy", "cost").lower())
    if sort_by is None:
        raise ConfigError(f"sortBy={arg('sortBy', '')!r}: use cost, name or kubernetesPercent")
    order = arg("sortByOrder", "desc").lower()
    if order not in ("asc", "desc"):
        raise ConfigError(f"sortByOrder={order!r}: use asc or desc")
    window = api_window(arg("window", "7d"), now, resolution, allow_empty=True)
    return ViewQuery(window, parse_aggregate_parts(query.get("aggregate", [""])[0], CLOUD_FIELDS), metric,
                     _int(query, "limit"), _int(query, "offset"), sort_by, order == "desc")


def daily_sets(cfg: Config, client: PrometheusClient, query: dict[str, list[str]], v: ViewQuery
               ) -> list[dict[str, Any]] | None:
    """The window's sets of cloud costs, one per UTC day or `accumulate` period (None without a bill configured)."""
    from exporter.outputs.assets_api import load_bill

    check_window(v.window, cfg.api.maxWindow)
    flt = parse_filter(query.get("filter", [""])[0] or "")
    accumulate = (query.get("accumulate", [""])[0] or "day").lower()  # the repository's days unless asked
    if accumulate not in ACCUMULATE:
        raise ConfigError(f"accumulate={accumulate!r}: use one of {', '.join(ACCUMULATE)}")
    if not cfg.reconciliation.bills:
        return None
    bill = load_bill(cfg)
    inv = inventory(client, v.window, join_matchers(cfg.prometheus.ksmSelector, cfg.prometheus.clusterSelector))
    return [cloud_cost_set(bill, inv, w, v.parts, flt) for w in calendar_windows(v.window, ACCUMULATE[accumulate])]


def table_rows(sets: list[dict[str, Any]], v: ViewQuery) -> list[dict[str, Any]]:
    """Pure: one row per key over the window, OpenCost's sort (name descending first, then the column), paged."""
    whole = accumulate_sets(sets, v.window)["cloudCosts"] if sets else {}
    rows = [{"name": k, "labels": c["properties"].get("labels") or None,
             "kubernetesPercent": c[v.metric]["kubernetesPercent"], "cost": c[v.metric]["cost"]}
            for k, c in whole.items()]
    rows.sort(key=lambda r: r["name"], reverse=True)
    if v.sort_by != "name" or not v.descending:
        rows.sort(key=lambda r: r[v.sort_by], reverse=v.descending)
    rows = rows[v.offset:]
    return rows[:v.limit] if v.limit else rows


def totals(sets: list[dict[str, Any]], v: ViewQuery) -> dict[str, Any] | None:
    """Pure: how many rows the table has, and their sum ("Totals"); None when there is nothing, as OpenCost."""
    whole = accumulate_sets(sets, v.window)["cloudCosts"] if sets else {}
    if not whole:
        return None
    cost = sum(c[v.metric]["cost"] for c in whole.values())
    k8s = sum(c[v.metric]["cost"] * c[v.metric]["kubernetesPercent"] for c in whole.values())
    return {"numResults": len(whole),
            "combined": {"name": "Totals", "labels": None, "kubernetesPercent": k8s / cost if cost else 0.0,
                         "cost": cost}}


def graph(sets: list[dict[str, Any]], v: ViewQuery) -> list[dict[str, Any]]:
    """Pure: a set per day, its items by cost, the 10th (when more) renamed Other and summing the rest."""
    if not any(s["cloudCosts"] for s in sets):
        return []
    out = []
    for s in sets:
        items = sorted(({"name": k, "value": c[v.metric]["cost"]} for k, c in s["cloudCosts"].items()),
                       key=lambda i: i["value"], reverse=True)
        if len(items) > CHART_ITEMS:
            rest = sum(i["value"] for i in items[CHART_ITEMS - 1:])
            items = [*items[:CHART_ITEMS - 1], {"name": "Other", "value": rest}]
        out.append({"start": s["window"]["start"], "end": s["window"]["end"], "items": items})
    return out


def view_response(kind: str, cfg: Config, client: PrometheusClient, query: dict[str, list[str]], now: float,
                  resolution: int) -> dict[str, Any]:
    """/cloudCost/view/<kind>: table, totals or graph."""
    v = parse_view_query(query, now, resolution)
    sets = daily_sets(cfg, client, query, v)
    empty: dict[str, Any] = {"table": [], "totals": None, "graph": []}
    if sets is None:
        return {"code": 200, "status": "success", "data": empty[kind], "warning": NO_BILL}
    data = {"table": table_rows, "totals": totals, "graph": graph}[kind](sets, v)
    return {"code": 200, "status": "success", "data": data}


def _coverage(start: float, end: float) -> str:
    """OpenCost's Window.String(): [start, end)."""
    return f"[{iso(start).replace('Z', '+0000')}, {iso(end).replace('Z', '+0000')})"


def status_response(cfg: Config, now: float) -> dict[str, Any]:
    """/cloudCost/status: one OpenCost integration Status per configured bill file (or unmatched pattern)."""
    rc = cfg.reconciliation
    refresh = parse_duration(rc.interval)
    out = []
    for pattern in rc.bills:
        files = sorted(glob.glob(pattern))
        if not files:
            out.append(_status(pattern, pattern, "", False, "Missing Configuration", now, refresh, rc.interval,
                               message=f"{pattern}: matches no file"))
        for f in files:
            try:
                fmt = bill_format(f)
                bill = read_bill([f])
            except ConfigError as e:
                out.append(_status(f, pattern, "", False, "Failed Connection", now, refresh, rc.interval,
                                   message=str(e)))
                continue
            providers = sorted({ln.provider for ln in bill.lines if ln.provider})
            provider = ", ".join(providers) or {"cur2": "AWS", "gcp": "GCP"}.get(fmt, "")
            if not bill.lines:
                out.append(_status(f, pattern, provider, True, "No Data", now, refresh, rc.interval, fmt,
                                   message=f"{f}: no cost line"))
                continue
            cover = _coverage(min(ln.start for ln in bill.lines), max(ln.end for ln in bill.lines))
            out.append(_status(f, pattern, provider, True, "Successful Connection", now, refresh, rc.interval, fmt,
                               cover))
    return {"code": 200, "status": "success", "data": out}


def _status(key: str, pattern: str, provider: str, valid: bool, connection: str, now: float, refresh: float,
            rate: str, fmt: str = "", coverage: str = "", message: str = "") -> dict[str, Any]:
    created = os.path.getmtime(key) if os.path.isfile(key) else now
    entry = {"key": key, "source": "reconciliation.bills", "provider": provider, "active": True, "valid": valid,
             "lastRun": iso(now), "nextRun": iso(now + refresh), "RefreshRate": rate, "created": iso(created),
             "runs": 1, "coverage": coverage, "connectionStatus": connection,
             "config": {"path": key, "pattern": pattern, "format": fmt}}
    if message:
        entry["message"] = message  # chargeback's: why it does not read
    return entry
