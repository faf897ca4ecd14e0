"""OpenCost's /cloudCost, served from the configured bill files (FOCUS, CUR 2.0, GCP).

Bill lines are prorated to each set's window as reconciliation prorates them. A line counts as
Kubernetes when it matches a cluster resource the way reconciliation matches (node instance id,
volume id or PV name, LoadBalancer Service tag or name); `kubernetesPercent` is that share.

Cost bases, in OpenCost's names: listCost = ListCost (public on-demand; the effective cost where
the bill states none), netCost, amortizedNetCost and amortizedCost = EffectiveCost (the readers
already amortise commitments and net credits and refunds, so the three coincide), invoicedCost =
BilledCost (cash; 0 for CUR usage covered by a plan or reservation, which is paid on fee lines).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.config.schema import Config
from exporter.core.names import UNALLOCATED
from exporter.core.window import Window, iso
from exporter.engine.limits import check_window
from exporter.outputs import allocfilter
from exporter.outputs.allocfilter import Node, Schema
from exporter.outputs.opencost_api import api_window, calendar_next, calendar_start, step_windows
from exporter.outputs.reconcile import LB_TAGS, Inventory, inventory, lb_by_name, overlap
from exporter.sources.billing import Bill, BillLine
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import join_matchers
from exporter.vocab.errors import ConfigError

CLOUD_FIELDS = ("invoiceEntityID", "accountID", "provider", "providerID", "category", "service")
BASES = ("listCost", "netCost", "amortizedNetCost", "invoicedCost", "amortizedCost")
_CATEGORY = {"compute": "Compute", "storage": "Storage", "load_balancer": "Network", "network": "Network",
             "other": "Other"}
# OpenCost's accumulate for /cloudCost (default day), plus true/false as /allocation takes them.
ACCUMULATE = {"all": "all", "true": "all", "hour": "hour", "day": "daily", "false": "daily", "week": "weekly",
              "month": "monthly", "quarter": "quarter"}


def calendar_windows(window: Window, period: str) -> list[Window]:
    """The window cut at UTC hour, day, week (Sunday), month or quarter boundaries, oldest first
    (/allocation's calendar periods, opencost_api.calendar_start, cut to the window)."""
    if period == "all":
        return [window]
    unit = {"daily": "day", "weekly": "week", "monthly": "month"}.get(period, period)
    out, t = [], window.start
    while t < window.end:
        end = min(calendar_next(calendar_start(t, unit), unit), window.end)
        out.append(Window(t, end, window.step))
        t = end
    return out


@dataclass(frozen=True)
class CloudProps:
    """What a filter can look at on one bill line (OpenCost's CloudCostProperties)."""

    invoiceEntityID: str = ""
    accountID: str = ""
    provider: str = ""
    providerID: str = ""
    category: str = ""
    service: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


# OpenCost's CloudCost filter fields (v2 names, and the plural names of its v1 CloudCostFilter), plus label[k].
CLOUD_SCHEMA = Schema(
    {**{f: f for f in CLOUD_FIELDS}, "invoiceEntityIDs": "invoiceEntityID", "accountIDs": "accountID",
     "providers": "provider", "providerIDs": "providerID", "categories": "category", "services": "service"},
    {"label": "labels"}, example="service, accountID, category or label[team]")


def parse_filter(text: str) -> Node | None:
    """OpenCost's v2 filter grammar (allocfilter) over the cloud cost fields; None for an empty filter."""
    return allocfilter.parse_filter(text, schema=CLOUD_SCHEMA)


def properties(line: BillLine) -> dict[str, Any]:
    return {"providerID": line.raw_resource, "provider": line.provider, "accountID": line.account,
            "invoiceEntityID": line.invoice_entity, "service": line.service, "category": _CATEGORY[line.category],
            "labels": line.tags}


def cloud_props(props: dict[str, Any]) -> CloudProps:
    return CloudProps(**{f: props[f] for f in CLOUD_FIELDS}, labels=props["labels"])


def in_cluster(line: BillLine, inv: Inventory) -> bool:
    """Matched the way reconciliation matches a line to a node, volume or load balancer."""
    if line.resource in inv.nodes or line.resource in inv.volumes:
        return True
    tag = next((line.tags[t] for t in LB_TAGS if t in line.tags), "") or lb_by_name(line.raw_resource, inv)
    return tag in inv.services


def amounts(line: BillLine, share: float) -> dict[str, float]:
    effective = line.cost * share
    return {"listCost": (line.list_cost if line.list_cost is not None else line.cost) * share,
            "netCost": effective, "amortizedNetCost": effective,
            "invoicedCost": (line.invoiced or 0.0) * share, "amortizedCost": effective}


def cloud_cost_set(bill: Bill, inv: Inventory, w: Window, parts: list[str], flt: Node | None
                   ) -> dict[str, Any]:
    """Pure: one set of OpenCost CloudCosts over window `w`, keyed by the aggregate values joined with '/'."""
    items: dict[str, dict[str, Any]] = {}
    k8s: dict[str, dict[str, float]] = {}
    for line in bill.lines:
        share = overlap(line.start, line.end, w)
        if share == 0:
            continue
        props = properties(line)
        if flt is not None and not flt.matches(cloud_props(props)):
            continue
        key = "/".join(props[p] or UNALLOCATED for p in parts) if parts else \
            "/".join(props[p] or UNALLOCATED for p in ("invoiceEntityID", "accountID", "provider", "providerID",
                                                         "category", "service"))
        cost = amounts(line, share)
        item = items.get(key)
        if item is None:
            item = items[key] = {"properties": dict(props), "window": {"start": iso(w.start), "end": iso(w.end)},
                                 **{b: {"cost": 0.0, "kubernetesPercent": 0.0} for b in BASES}}
            k8s[key] = dict.fromkeys(BASES, 0.0)
        else:  # a property is kept when every line under the key shares it
            item["properties"] = {k: v for k, v in item["properties"].items() if props.get(k) == v}
        ours = in_cluster(line, inv)
        for b in BASES:
            item[b]["cost"] += cost[b]
            if ours:
                k8s[key][b] += cost[b]
    for key, item in items.items():
        for b in BASES:
            total = item[b]["cost"]
            item[b]["kubernetesPercent"] = k8s[key][b] / total if total else 0.0
    return {"window": {"start": iso(w.start), "end": iso(w.end)}, "aggregationProperties": parts or list(CLOUD_FIELDS),
            "cloudCosts": items}


def accumulate_sets(sets: list[dict[str, Any]], w: Window) -> dict[str, Any]:
    """Sum sets into one over the whole window (kubernetesPercent weighted by cost)."""
    out: dict[str, Any] = {"window": {"start": iso(w.start), "end": iso(w.end)},
                           "aggregationProperties": sets[0]["aggregationProperties"] if sets else [],
                           "cloudCosts": {}}
    k8s: dict[str, dict[str, float]] = {}
    for s in sets:
        for key, item in s["cloudCosts"].items():
            have = out["cloudCosts"].get(key)
            if have is None:
                have = out["cloudCosts"][key] = {"properties": dict(item["properties"]), "window": out["window"],
                                                 **{b: {"cost": 0.0, "kubernetesPercent": 0.0} for b in BASES}}
                k8s[key] = dict.fromkeys(BASES, 0.0)
            have["properties"] = {k: v for k, v in have["properties"].items() if item["properties"].get(k) == v}
            for b in BASES:
                have[b]["cost"] += item[b]["cost"]
                k8s[key][b] += item[b]["cost"] * item[b]["kubernetesPercent"]
    for key, item in out["cloudCosts"].items():
        for b in BASES:
            item[b]["kubernetesPercent"] = k8s[key][b] / item[b]["cost"] if item[b]["cost"] else 0.0
    return out


def cloud_cost_response(cfg: Config, client: PrometheusClient, query: dict[str, list[str]], now: float,
                        resolution: int) -> dict[str, Any]:
    """/cloudCost: window, step, aggregate, accumulate and filter over the configured bills."""
    from exporter.outputs.assetjson import parse_aggregate_parts
    from exporter.outputs.assets_api import load_bill

    def arg(name: str) -> str | None:
        return query.get(name, [None])[0]

    # rounded as /allocation's (`7d` from a midnight); `today` at 00:00:30 is an empty window, not an error
    window = api_window(arg("window") or "7d", now, resolution, allow_empty=True)
    check_window(window, cfg.api.maxWindow)
    parts = parse_aggregate_parts(arg("aggregate"), CLOUD_FIELDS)
    flt = parse_filter(arg("filter") or "")
    accumulate = (arg("accumulate") or "day").lower()
    if accumulate not in ACCUMULATE:
        raise ConfigError(f"accumulate={arg('accumulate')!r}: use one of {', '.join(ACCUMULATE)}")
    # `step` (as /allocation's) cuts the sets when given; otherwise accumulate's calendar periods do.
    windows = step_windows(window, arg("step")) if arg("step") else calendar_windows(window, ACCUMULATE[accumulate])
    bill = load_bill(cfg)
    inv = inventory(client, window, join_matchers(cfg.prometheus.ksmSelector, cfg.prometheus.clusterSelector))
    sets = [cloud_cost_set(bill, inv, w, parts, flt) for w in windows]
    if ACCUMULATE[accumulate] == "all" and len(sets) > 1:
        sets = [accumulate_sets(sets, window)]
    # The envelope OpenCost writes for every cloud-cost answer (its views too: outputs/cloudviews.py).
    return {"code": 200, "status": "success",
            "data": {"sets": sets, "window": {"start": iso(window.start), "end": iso(window.end)}}}
