"""OpenCost's /customCost/total and /customCost/timeseries: costs outside the cluster.

Two sources, in OpenCost's CustomCost shape:
* the configured bills' lines of this cluster's accounts (the accounts of the lines that match a cluster
  resource, as /cloudCost's kubernetesPercent matches) that match no cluster resource: the account's
  other spending, prorated to the window as /cloudCost prorates;
* the configured fixed monthly amounts (sharing.shareCost and sharing.sharedCosts, pricing.network.monthly),
  prorated over sharing.hoursPerMonth. These are also shared into /allocation's tenants: listed here so
  that they are visible as what they are, never to be added to the cluster total a second time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from exporter.config.schema import Config
from exporter.core.names import UNALLOCATED
from exporter.core.window import Window, iso
from exporter.engine.limits import check_window
from exporter.outputs import allocfilter
from exporter.outputs.allocfilter import Node, Schema
from exporter.outputs.cloudcost import ACCUMULATE, calendar_windows, in_cluster
from exporter.outputs.opencost_api import api_window
from exporter.outputs.reconcile import Inventory, inventory, overlap
from exporter.sources.billing import Bill
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import join_matchers
from exporter.vocab.errors import ConfigError
from exporter.vocab.labels import aggregate_parts

COST_TYPES = ("blended", "list", "billed")
# OpenCost's aggregate properties (pkg/customcost/props.go) and the CustomCost JSON field each reads.
AGGREGATES = {"zone": "zone", "accountName": "account_name", "chargeCategory": "charge_category",
              "resourceType": "resource_type", "domain": "domain"}
SORTS = {"cost": "cost", "aggregate": "aggregate", "costType": "cost_type"}
_CATEGORY = {"compute": "Compute", "storage": "Storage", "load_balancer": "Network", "network": "Network",
             "other": "Other"}


@dataclass(frozen=True)
class CustomProps:
    """What a filter can look at on one custom cost (OpenCost's custom cost filter fields)."""

    zone: str = ""
    accountName: str = ""
    chargeCategory: str = ""
    description: str = ""
    resourceName: str = ""
    resourceType: str = ""
    providerId: str = ""
    usageUnit: str = ""
    domain: str = ""
    costSource: str = ""


SCHEMA = Schema({f.name: f.name for f in fields(CustomProps)}, {}, example="domain, accountName or resourceType")


def _props(c: dict[str, Any]) -> CustomProps:
    return CustomProps(c["zone"], c["account_name"], c["charge_category"], c["description"], c["resource_name"],
                       c["resource_type"], c["provider_id"], c["usage_unit"], c["domain"], c["cost_source"])


def _chosen(cost_type: str, billed: float, listed: float) -> tuple[float, str]:
    """OpenCost's determineCost: blended is the billed cost when positive, else the list cost."""
    if cost_type == "list" or (cost_type == "blended" and billed <= 0):
        return listed, "list"
    return billed, "billed"


def _item(cost_type: str, billed: float, listed: float, **props: Any) -> dict[str, Any] | None:
    cost, chosen = _chosen(cost_type, billed, listed)
    if cost == 0:
        return None  # OpenCost leaves out what costs nothing in the asked cost type
    return {"id": "", "zone": "", "account_name": "", "charge_category": "", "description": "", "resource_name": "",
            "resource_type": "", "provider_id": "", "cost": cost, "list_unit_price": 0.0, "usage_quantity": 0.0,
            "usage_unit": "", "domain": "", "cost_source": "", "aggregate": "", "cost_type": chosen, **props}


def bill_costs(bill: Bill, inv: Inventory, w: Window, cost_type: str) -> list[dict[str, Any]]:
    """Pure: the lines of the cluster's accounts matching no cluster resource, prorated to `w`."""
    accounts = {ln.account for ln in bill.lines if in_cluster(ln, inv)}
    out = []
    for ln in bill.lines:
        share = overlap(ln.start, ln.end, w)
        if share == 0 or ln.account not in accounts or in_cluster(ln, inv):
            continue
        listed = ln.list_cost if ln.list_cost is not None else ln.cost
        billed = ln.invoiced if ln.invoiced is not None else ln.cost
        item = _item(cost_type, billed * share, listed * share, id=f"{ln.file}:{ln.line}",
                     account_name=ln.account, charge_category="Usage", description=ln.service,
                     resource_name=ln.raw_resource, resource_type=_CATEGORY.get(ln.category, "Other"),
                     provider_id=ln.raw_resource, usage_quantity=(ln.quantity or 0.0) * share, usage_unit=ln.unit,
                     domain=ln.provider or "bill", cost_source="billing export")
        if item is not None:
            out.append(item)
    return out


def fixed_costs(cfg: Config, w: Window, cost_type: str) -> list[dict[str, Any]]:
    """Pure: the configured monthly amounts over `w` (hours of the window x monthly / hoursPerMonth)."""
    hpm = cfg.sharing.hoursPerMonth
    hours = (w.end - w.start) / 3600
    amounts = [("shareCost", cfg.sharing.shareCost, "fixed cost")] if cfg.sharing.shareCost else []
    amounts += [(f.name, f.monthly, "fixed cost") for f in cfg.sharing.sharedCosts]
    amounts += [(f.name, f.monthly, "network") for f in cfg.pricing.network.monthly]
    out = []
    for name, monthly, kind in amounts:
        value = monthly * hours / hpm
        item = _item(cost_type, value, value, id=f"pricebook:{name}", description=name, resource_name=name,
                     resource_type=kind, list_unit_price=monthly / hpm, usage_quantity=hours, usage_unit="Hours",
                     domain="chargeback", cost_source="price book")
        if item is not None:
            out.append(item)
    return out


def aggregate(costs: list[dict[str, Any]], parts: list[str]) -> list[dict[str, Any]]:
    """OpenCost's CustomCostSet.Aggregate: summed under the parts' values; differing fields emptied."""
    if not parts:
        return costs
    groups: dict[str, dict[str, Any]] = {}
    for c in costs:
        key = "/".join(c[AGGREGATES[p]] or UNALLOCATED for p in parts)
        have = groups.get(key)
        if have is None:
            groups[key] = {**c, "aggregate": key}
            continue
        for k, v in c.items():
            if k in ("cost", "list_unit_price"):
                have[k] += v
            elif k == "usage_quantity":
                have[k] = have[k] + v if have["usage_unit"] == c["usage_unit"] else have[k]
            elif k == "cost_type" and have[k] != v:
                have[k] = "blended"
            elif k not in ("aggregate", "cost_type") and have[k] != v:
                have[k] = ""
    return list(groups.values())


def cost_response(window: Window, costs: list[dict[str, Any]], cost_type: str) -> dict[str, Any]:
    return {"window": {"start": iso(window.start), "end": iso(window.end)},
            "totalCost": sum(c["cost"] for c in costs), "totalCostType": cost_type, "customCosts": costs}


def custom_cost_response(kind: str, cfg: Config, client: PrometheusClient, query: dict[str, list[str]],
                         now: float, resolution: int) -> dict[str, Any]:
    """/customCost/total (the window) or /customCost/timeseries (a set per accumulate period, day by default)."""
    def arg(name: str, default: str) -> str:
        return query.get(name, [default])[0] or default

    window = api_window(arg("window", "7d"), now, resolution, allow_empty=True)
    check_window(window, cfg.api.maxWindow)
    cost_type = arg("costType", "blended")
    if cost_type not in COST_TYPES:
        raise ConfigError(f"costType={cost_type!r}: use one of {', '.join(COST_TYPES)}")
    by = {p.lower(): p for p in AGGREGATES}
    raw = [p for p in aggregate_parts(arg("aggregate", "")) if p]
    if bad := [p for p in raw if p.lower() not in by]:
        raise ConfigError(f"aggregate={arg('aggregate', '')!r}: {bad[0]!r} is not one of {', '.join(AGGREGATES)}")
    parts = list(dict.fromkeys(by[p.lower()] for p in raw))
    sort_by, direction = arg("sortBy", "cost"), arg("sortDirection", "desc")
    if sort_by not in SORTS or direction not in ("asc", "desc"):
        raise ConfigError(f"sortBy={sort_by!r}, sortDirection={direction!r}: use cost, aggregate or costType; "
                          "asc or desc")
    accumulate = arg("accumulate", "day").lower()
    if accumulate not in ACCUMULATE:
        raise ConfigError(f"accumulate={accumulate!r}: use one of {', '.join(ACCUMULATE)}")
    flt: Node | None = allocfilter.parse_filter(arg("filter", ""), schema=SCHEMA)
    bill = _bill(cfg)
    inv = inventory(client, window, join_matchers(cfg.prometheus.ksmSelector, cfg.prometheus.clusterSelector)) \
        if bill is not None else Inventory()

    def one(w: Window) -> dict[str, Any]:
        costs = (bill_costs(bill, inv, w, cost_type) if bill is not None else []) + fixed_costs(cfg, w, cost_type)
        costs = aggregate([c for c in costs if flt is None or flt.matches(_props(c))], parts)
        costs.sort(key=lambda c: c[SORTS[sort_by]], reverse=direction == "desc")
        return cost_response(w, costs, cost_type)

    if kind == "total":
        data = one(window)
    else:
        data = {"window": {"start": iso(window.start), "end": iso(window.end)},
                "timeseries": [one(w) for w in calendar_windows(window, ACCUMULATE[accumulate])]}
    out: dict[str, Any] = {"code": 200, "status": "success", "data": data}
    if bill is None:
        out["warning"] = "no bill configured (reconciliation.bills is empty): only the price book's fixed costs"
    return out


def _bill(cfg: Config) -> Bill | None:
    from exporter.outputs.assets_api import load_bill

    return load_bill(cfg) if cfg.reconciliation.bills else None
