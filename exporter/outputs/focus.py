"""FOCUS 1.0 export of the cluster split: allocate's cost, one row per charge period, group, component, resource.

FinOps platforms ingest FOCUS, not OpenCost JSON; this lets them see inside the cluster line of the bill.
The rows are pure functions of (period window, CostResult, aggregation), so a period's rows add up to
exactly what `allocate` reports for that period, and the periods tile the window. Money is the computed
cost (list = contracted = effective = billed: chargeback has no discounts or invoices of its own).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from exporter.config.schema import Config
from exporter.core.allocation import CostResult
from exporter.core.names import IDLE, UNALLOCATED, UNATTRIBUTED, is_pseudo
from exporter.core.window import Window, iso, period_bounds
from exporter.outputs.escape import csv_rows
from exporter.outputs.formatters import group_name

FOCUS_VERSION = "1.0"
PERIODS = ("day", "hour", "window")
PROVIDER = "chargeback"
DEFAULT_CLUSTER = "default-cluster"
UNKEYED = UNALLOCATED  # node-aggregated rows with no node (volumes, load balancers, egress), as OpenCost

# Every FOCUS 1.0 column, in the specification's order, then ours (custom columns take the x_ prefix).
COLUMNS = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory",
    "CommitmentDiscountId", "CommitmentDiscountName", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "ContractedUnitPrice", "EffectiveCost",
    "InvoiceIssuerName", "ListCost", "ListUnitPrice", "PricingCategory", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType",
    "ServiceCategory", "ServiceName", "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
    "x_Component", "x_Resource", "x_EnergyJoules", "x_CarbonGramsCO2e",
)

_CATEGORY = {"storage": "Storage", "load_balancer": "Networking", "network": "Networking"}  # else Compute
# Quantity of an allocation row (Line field, unit-seconds per unit) and its FOCUS unit.
_QUANTITY = {"cpu": ("cpu_core_seconds", 3600.0, "Core-Hours"),
             "memory": ("ram_byte_seconds", 3600.0 * 1024**3, "GiB-Hours"),
             "gpu": ("gpu_seconds", 3600.0, "GPU-Hours"),
             "storage": ("pv_byte_seconds", 3600.0 * 1024**3, "GiB-Hours")}
_RESOURCE_TYPE = {"namespace": "Namespace", "node": "Node", "cluster": "Cluster"}


@dataclass(frozen=True)
class Account:
    """Who the rows are billed to: the cluster is the sub-account, the currency that of the price book."""

    cluster: str
    currency: str


@dataclass
class Charge:
    """One row's worth: a group's cost of one resource and component over one charge period."""

    start: int
    end: int
    name: str
    component: str  # allocated, shared or idle
    resource: str  # cpu, memory, gpu, storage, load_balancer, network, overhead
    cost: float = 0.0
    quantity: float | None = None  # in the unit of _QUANTITY[resource], allocated and idle rows only
    tags: dict[str, str] = field(default_factory=dict)
    # The (group, component)'s energy and carbon (exporter/core/energy.py), carried on its cpu row only.
    energy: float | None = None
    carbon: float | None = None


def periods(window: Window, period: str) -> list[Window]:
    """Charge periods tiling the window: UTC days or hours, or the whole window cut at month ends."""
    if period == "day":
        return list(window.chunks(86400, boundary=86400))
    if period == "hour":
        return list(window.chunks(3600, boundary=3600))
    out, t = [], window.start
    while t < window.end:  # a charge period never crosses its billing period (the calendar month)
        nxt = min(window.end, period_bounds("monthly", t)[1])
        out.append(Window(t, nxt, window.step))
        t = nxt
    return out


def _shared_tags(items: list[tuple[str, tuple[str, ...]]], attr_names: tuple[str, ...],
                 labels: Mapping[str, str]) -> dict[str, str]:
    """Tags every aggregated item shares (as OpenCost's properties): namespace and attribution labels."""
    tags: dict[str, str] = {}
    namespaces = {ns for ns, _ in items}
    if len(namespaces) == 1 and not is_pseudo(ns := next(iter(namespaces))):
        tags["namespace"] = ns
    for i, name in enumerate(attr_names):
        values = {attrs[i] if i < len(attrs) else "" for _, attrs in items}
        if len(values) == 1 and (v := next(iter(values))) and v != UNATTRIBUTED:
            tags[labels.get(name, name)] = v
    return tags


def charges(result: CostResult, parts: list[str], attr_names: tuple[str, ...],
            labels: Mapping[str, str]) -> list[Charge]:
    """The result's cost entries rolled up to (group, component, resource), groups named as `aggregate` does.

    `labels` maps attribution names to their Kubernetes label keys, which name the tags.
    """
    node_view = parts == ["node"]

    def name(ns: str, attrs: tuple[str, ...]) -> str:
        return group_name(ns, attrs, parts, attr_names)

    out: dict[tuple[str, str, str], Charge] = {}
    members: dict[tuple[str, str, str], list[tuple[str, tuple[str, ...]]]] = {}

    def add(group: str, component: str, resource: str, cost: float, ns: str, attrs: tuple[str, ...]) -> None:
        key = (group, component, resource)
        out.setdefault(key, Charge(result.start, result.end, group, component, resource)).cost += cost
        members.setdefault(key, []).append((ns, attrs))

    if node_view:  # before sharing, as allocate's node view: allocated and idle per node
        for (ns, node, attrs), line in result.table.items():
            for res, c in line.cost_by_resource().items():
                if c:
                    add(node or UNKEYED, "idle" if ns == IDLE else "allocated", res, c, ns, attrs)
    else:
        for (ns, attrs, component, res, _source), c in result.costs.items():
            if c:
                add(name(ns, attrs), component, res, c, ns, attrs)

    # Quantities follow cost, as in allocate: an owner's allocated lines, and unshared idle.
    owners = {(ns, attrs) for (ns, attrs, component, _r, _s) in result.costs if component == "allocated"}
    for (ns, node, attrs), line in result.table.items():
        if node_view:
            key_name, component = node or UNKEYED, "idle" if ns == IDLE else "allocated"
        elif ns == IDLE:
            key_name, component = name(ns, attrs), "idle"
        elif (ns, attrs) in owners:
            key_name, component = name(ns, attrs), "allocated"
        else:
            continue
        for res, (attr, per_unit, _unit) in _QUANTITY.items():
            charge = out.get((key_name, component, res))
            if charge is not None:
                charge.quantity = (charge.quantity or 0.0) + getattr(line, attr) / per_unit
    _add_energy(result, out, members, name, node_view)
    for key, charge in out.items():
        charge.tags = _shared_tags(members[key], attr_names, labels) if not node_view else {}
    return sorted(out.values(), key=lambda c: (c.name, c.component, c.resource))


def _add_energy(result: CostResult, out: dict[tuple[str, str, str], Charge],
                members: dict[tuple[str, str, str], list[tuple[str, tuple[str, ...]]]],
                name: Callable[[str, tuple[str, ...]], str], node_view: bool) -> None:
    """Each (group, component)'s joules and grams on its cpu row (a 0-cost one if it has none: nothing lost)."""
    e = result.energy
    for key, joules in e.joules.items():
        ns, node, attrs, component = key
        group = (node or UNKEYED) if node_view else name(ns, attrs)
        ckey = (group, component, "cpu")
        if ckey not in out:
            out[ckey] = Charge(result.start, result.end, group, component, "cpu")
            members[ckey] = [(ns, attrs)]
        charge = out[ckey]
        charge.energy = (charge.energy or 0.0) + joules
        charge.carbon = (charge.carbon or 0.0) + e.grams.get(key, 0.0)


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))  # shortest text that reads back as the same float


def focus_row(c: Charge, account: Account, parts: list[str]) -> dict[str, str]:
    """One FOCUS 1.0 row; nullable columns with no meaning for a cluster split are left empty (null)."""
    billing_start, billing_end = period_bounds("monthly", c.start)
    unit = _QUANTITY[c.resource][2] if c.resource in _QUANTITY and c.quantity else None
    unit_price = c.cost / c.quantity if unit and c.quantity else None
    what = {"allocated": f"{c.resource} allocated to {c.name}",
            "shared": f"{c.resource} of shared namespaces and fixed costs, shared to {c.name}",
            "idle": f"idle {c.resource} capacity" + ("" if c.name == IDLE else f" on {c.name}" if parts == ["node"]
                                                     else f", shared to {c.name}")}
    kind = "/".join(_RESOURCE_TYPE.get(p, p) for p in parts)
    row = dict.fromkeys(COLUMNS, "")
    row.update({
        "BilledCost": _num(c.cost), "EffectiveCost": _num(c.cost), "ListCost": _num(c.cost),
        "ContractedCost": _num(c.cost),
        "BillingAccountId": account.cluster, "BillingAccountName": account.cluster,
        "SubAccountId": account.cluster, "SubAccountName": account.cluster,
        "BillingCurrency": account.currency,
        "BillingPeriodStart": iso(billing_start), "BillingPeriodEnd": iso(billing_end),
        "ChargePeriodStart": iso(c.start), "ChargePeriodEnd": iso(c.end),
        "ChargeCategory": "Usage", "ChargeFrequency": "Usage-Based", "ChargeDescription": what[c.component],
        "PricingCategory": "Other",  # an allocation of node prices, not a price-list charge
        "ConsumedQuantity": _num(c.quantity) if unit else "", "ConsumedUnit": unit or "",
        "PricingQuantity": _num(c.quantity) if unit else "", "PricingUnit": unit or "",
        "ListUnitPrice": _num(unit_price), "ContractedUnitPrice": _num(unit_price),
        "InvoiceIssuerName": PROVIDER, "ProviderName": PROVIDER, "PublisherName": PROVIDER,
        "ResourceId": f"{account.cluster}/{c.name}", "ResourceName": c.name, "ResourceType": f"Kubernetes {kind}",
        "ServiceCategory": _CATEGORY.get(c.resource, "Compute"), "ServiceName": "Kubernetes",
        "SkuId": f"kubernetes-{c.resource}", "SkuPriceId": f"kubernetes-{c.resource}-{c.component}",
        "Tags": json.dumps(c.tags, sort_keys=True),
        "x_Component": c.component, "x_Resource": c.resource,
        "x_EnergyJoules": _num(c.energy), "x_CarbonGramsCO2e": _num(c.carbon),
    })
    return row


def to_csv(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(rows))  # ResourceName and Tags come from Prometheus labels: no formulas
    return buf.getvalue()


def export(compute: Callable[[Window], CostResult], window: Window, period: str, parts: list[str],
           attr_names: tuple[str, ...], labels: Mapping[str, str], account: Account) -> str:
    """Compute each charge period on its own (the same pipeline as allocate) and write its rows as CSV."""
    rows = []
    for piece in periods(window, period):
        result = compute(piece)
        rows += [focus_row(c, account, parts) for c in charges(result, parts, attr_names, labels)]
    return to_csv(rows)


def export_for(cfg: Config, compute: Callable[[Window], CostResult], window: Window, period: str,
               parts: list[str], cluster: str | None) -> str:
    """The CLI's entry: the cluster is --cluster-name, else serve.clusterName, else a fixed default."""
    account = Account(cluster or cfg.serve.clusterName or DEFAULT_CLUSTER, cfg.pricing.currency)
    labels = cfg.attribution.labels
    return export(compute, window, period, parts, tuple(labels), labels, account)
