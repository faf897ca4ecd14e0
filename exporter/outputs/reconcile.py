"""Reconciliation: the cloud bill against chargeback's computed cost, by category and by node.

Bill lines are prorated to the window and matched to the cluster: nodes by the instance id
in their provider id, volumes by volume id or PV name, load balancers by the
`kubernetes.io/service-name` tag. Lines that match nothing are listed by service; they are
what the sharing policies (sharedCosts) can distribute.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from exporter.core.allocation import CostResult
from exporter.core.window import Window, iso
from exporter.engine.pipeline import BillPrices
from exporter.sources.billing import CATEGORIES, Bill, BillLine, resource_id
from exporter.sources.promql import inventory_queries

LB_TAGS = ("kubernetes.io/service-name", "service-name")


@dataclass
class Inventory:
    """What the cluster has, with the ids a bill uses."""

    nodes: dict[str, str] = field(default_factory=dict)  # instance id -> node
    volumes: dict[str, str] = field(default_factory=dict)  # volume id or PV name -> PV
    services: set[str] = field(default_factory=set)  # namespace/service of LoadBalancer Services


@dataclass(frozen=True)
class NodeLine:
    """One node: its matched bill cost (None if the bill has no line for it) against the computed cost."""

    node: str
    instance: str
    bill: float | None
    computed: float
    list: float | None  # the bill's list cost, where every line states it
    billed_hours: float | None  # instance-hours on the bill (None: per-vCPU/SKU hours, or no quantity)
    bill_hourly: float | None  # the bill's effective hourly rate, ready for a price-book effectiveHourly

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "instance": self.instance, "bill": self.bill, "computed": self.computed,
                "list": self.list, "billedHours": self.billed_hours, "billHourly": self.bill_hourly}


@dataclass
class Reconciliation:
    window: Window
    currency: str
    bill: dict[str, float]  # category -> matched bill cost
    computed: dict[str, float]  # category -> chargeback's cost
    nodes: list[NodeLine]
    unmatched: dict[str, float]  # service -> bill cost with no cluster resource
    ignored: dict[str, int]
    by_asset: dict[str, float] = field(default_factory=dict)  # PV name or namespace/service -> matched bill cost
    node_bill: dict[str, float] = field(default_factory=dict)  # node -> matched bill cost
    scoped: bool = False  # unmatched lines were filtered by cluster tags, so they can be shared
    # namespace -> (provider's split cost, provider's unused cost, chargeback's cost) when the bill has a split
    namespaces: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    # category -> matched cost at list prices / on the invoice (cash), where every matched line states it
    listed: dict[str, float] = field(default_factory=dict)
    invoiced: dict[str, float] = field(default_factory=dict)
    # NAT gateway -> bill cost of this cluster's (tagged) NAT lines: billed as network, spread when reconciled
    # over the namespaces by their internet-bound bytes (bill_prices)
    nat: dict[str, float] = field(default_factory=dict)

    def variance(self, category: str) -> float | None:
        b = self.bill.get(category, 0.0)
        return (self.computed.get(category, 0.0) - b) / b if b else None

    @property
    def billed_categories(self) -> list[str]:
        """Categories the bill has matched lines for; the totals compare only those."""
        return [c for c, v in self.bill.items() if v]

    @property
    def total_bill(self) -> float:
        return sum(self.bill[c] for c in self.billed_categories)

    @property
    def total_computed(self) -> float:
        return sum(self.computed[c] for c in self.billed_categories)

    @property
    def total_variance(self) -> float | None:
        return (self.total_computed - self.total_bill) / self.total_bill if self.total_bill else None

    @property
    def total_listed(self) -> float | None:
        """The billed categories at list prices, if the bill states list cost for all of them."""
        cats = self.billed_categories
        return sum(self.listed[c] for c in cats) if cats and all(c in self.listed for c in cats) else None

    def node_totals(self) -> tuple[float, float, float] | None:
        """(computed, list, bill) over the billed nodes, if the bill states every one's list cost."""
        billed = [(n.computed, n.list, n.bill) for n in self.nodes if n.bill is not None]
        lists = [lst for _, lst, _ in billed if lst is not None]
        if not billed or len(lists) < len(billed):
            return None
        return sum(c for c, _, _ in billed), sum(lists), sum(b for _, _, b in billed if b is not None)

    def verdict(self, chargeback: float = 0.01, showback: float = 0.05) -> str:
        v = self.total_variance
        if v is None:
            return "no matched bill lines: check provider ids, volume ids and tags"
        pct = f"{100 * abs(v):.1f}%"
        if abs(v) <= chargeback:
            return f"within {pct}: chargeback-ready"
        if abs(v) <= showback:
            return f"within {pct}: showback-ready; reconcile prices before charging back" + self._discount_hint()
        return (f"off by {pct} ({'over' if v > 0 else 'under'} the bill): check the price book and discounts"
                + self._discount_hint())

    def _discount_hint(self, close: float = 0.01) -> str:
        """When the billed nodes' computed cost matches their list prices, the gap is discounts."""
        totals = self.node_totals()
        if totals is None:
            return ""
        computed, listed, bill = totals
        if not listed or abs(computed - listed) > close * listed or listed - bill <= close * abs(bill):
            return ""
        return (f"; the billed nodes are priced within {100 * abs(computed - listed) / listed:.1f}% of their list "
                f"cost and the bill is {100 * (listed - bill) / listed:.1f}% below list, so the gap is discounts: "
                "set effectiveHourly or discount in the price book, or allocate with --reconciled")


def lb_by_name(resource: str, inv: Inventory) -> str:
    """A load balancer named after its Service, as the AWS LB controller and cloud controllers do
    (k8s-<namespace>-<service>-<hash>, or containing <namespace>-<service>)."""
    if not resource:
        return ""
    for svc in sorted(inv.services):
        ns, name = svc.split("/", 1)
        if f"{ns}-{name}" in resource:
            return svc
    return ""


def overlap(start: float, end: float, w: Window) -> float:
    """Share of a charge period [start, end) that falls in the window."""
    if end <= start:
        return 0.0
    return max(0.0, min(end, w.end) - max(start, w.start)) / (end - start)


@dataclass
class _Matched:
    """The bill's lines in the window, prorated and matched to the cluster's resources."""

    ignored: dict[str, int]
    billed: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # category -> cost
    listed: dict[str, float | None] = field(default_factory=dict)
    invoiced: dict[str, float | None] = field(default_factory=dict)
    node_list: dict[str, float | None] = field(default_factory=dict)
    node_hours: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    per_node: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    per_asset: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    unmatched: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    nat: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def _category(line: BillLine, inv: Inventory) -> tuple[str, str]:
    """(compute | storage | load_balancer | "", the load balancer's Service) of a bill line."""
    service_tag = next((line.tags[t] for t in LB_TAGS if t in line.tags), "") or lb_by_name(line.raw_resource, inv)
    category = ("compute" if line.resource in inv.nodes else "storage" if line.resource in inv.volumes
                else "load_balancer" if service_tag in inv.services else "")
    return category, service_tag


def _match(bill: Bill, inv: Inventory, window: Window, cluster_tags: dict[str, str] | None) -> _Matched:
    m = _Matched(dict(bill.ignored))
    for line in bill.lines:
        share = overlap(line.start, line.end, window)
        if share == 0:
            continue
        cost = line.cost * share
        category, service_tag = _category(line, inv)
        if category:
            m.billed[category] += cost
            _add(m.listed, category, line.list_cost, share)
            _add(m.invoiced, category, line.invoiced, share)
        if category == "compute":
            node = inv.nodes[line.resource]
            m.per_node[node] += cost
            _add(m.node_list, node, line.list_cost, share)
            if line.quantity is not None and line.unit.lower().startswith(("hour", "hrs")):
                m.node_hours[node] += line.quantity * share
        elif category == "storage":
            m.per_asset[inv.volumes[line.resource]] += cost
        elif category == "load_balancer":
            m.per_asset[service_tag] += cost
        elif cluster_tags and not any(line.tags.get(k) == v for k, v in cluster_tags.items()):
            m.ignored["not this cluster (no cluster tag)"] = m.ignored.get("not this cluster (no cluster tag)", 0) + 1
        elif cluster_tags and line.nat:  # this cluster's NAT gateway: network, spread by internet bytes
            m.nat[line.resource or line.service or "nat"] += cost
            m.billed["network"] += cost
            _add(m.listed, "network", line.list_cost, share)
            _add(m.invoiced, "network", line.invoiced, share)
        else:
            m.unmatched[line.service or "(no service)"] += cost
    return m


def _node_lines(m: _Matched, inv: Inventory, node_cost: dict[str, float], window: Window) -> list[NodeLine]:
    instance_of = {node: iid for iid, node in inv.nodes.items()}
    nodes = []
    for n, c in sorted(node_cost.items()):
        hours: float | None = m.node_hours.get(n)
        if hours and hours > window.seconds / 3600 * 1.0001:
            hours = None  # per-vCPU or per-SKU hours (GCP), not instance-hours: no single hourly rate
        rate = m.per_node[n] / hours if hours and n in m.per_node else None
        nodes.append(NodeLine(n, instance_of.get(n, ""), m.per_node.get(n), c, m.node_list.get(n), hours, rate))
    return nodes


def reconcile(bill: Bill, inv: Inventory, result: CostResult, window: Window,
              cluster_tags: dict[str, str] | None = None) -> Reconciliation:
    """Pure: compare prorated bill lines with the computed cost of the same window.

    With `cluster_tags`, a line that matches no cluster resource counts only if it carries one of
    them (aws:eks:cluster-name, goog-k8s-cluster-name, ...); other lines belong to other clusters or
    accounts and are counted as ignored.
    """
    m = _match(bill, inv, window, cluster_tags)
    computed: dict[str, float] = defaultdict(float)
    node_cost: dict[str, float] = defaultdict(float)
    for (node, _res), c in result.node_cost.items():
        computed["compute"] += c
        node_cost[node] += c
    for (_asset, res), c in result.asset_cost.items():
        computed[res] += c
    mine: dict[str, float] = defaultdict(float)
    for (ns, _attrs, _component, _res, _src), c in result.costs.items():
        mine[ns] += c
    split = {ns: (v[0], v[1], mine.get(ns, 0.0)) for ns, v in bill.provider_split.items()}
    return Reconciliation(window, bill.currency, {k: m.billed.get(k, 0.0) for k in CATEGORIES},
                          {k: computed.get(k, 0.0) for k in CATEGORIES}, _node_lines(m, inv, node_cost, window),
                          dict(m.unmatched), m.ignored, dict(m.per_asset), dict(m.per_node), bool(cluster_tags), split,
                          {k: v for k, v in m.listed.items() if v is not None},
                          {k: v for k, v in m.invoiced.items() if v is not None}, dict(m.nat))


def _add(acc: dict[str, float | None], key: str, amount: float | None, share: float) -> None:
    """Sum an optional amount; one line without it makes the key's total unknown (None), not low."""
    if amount is None or (key in acc and acc[key] is None):
        acc[key] = None
    else:
        acc[key] = (acc.get(key) or 0.0) + amount * share


def bill_prices(rec: Reconciliation, result: CostResult) -> BillPrices:
    """Reconciled prices: every billed node and asset costs what the bill says; unmatched lines are shared.

    Cost is linear in price, so a factor per node (bill / computed over the window) applied to
    each chunk's rates makes the window's node cost equal its bill lines exactly.
    """
    node_cost: dict[str, float] = defaultdict(float)
    for (node, _res), c in result.node_cost.items():
        node_cost[node] += c
    asset_cost: dict[str, float] = defaultdict(float)
    for (asset, _res), c in result.asset_cost.items():
        asset_cost[asset] += c
    seconds = rec.window.seconds
    return BillPrices(
        {n: b / node_cost[n] for n, b in rec.node_bill.items() if node_cost.get(n)},
        {a: b / asset_cost[a] for a, b in rec.by_asset.items() if asset_cost.get(a)},
        # only lines tagged for this cluster: otherwise they may be another cluster's spend
        {f"bill:{service}": cost / seconds for service, cost in rec.unmatched.items()} if rec.scoped else {},
        {f"bill:{nat}": cost / seconds for nat, cost in rec.nat.items()})


def inventory(client: Any, window: Window, ksm_selector: str) -> Inventory:
    """Provider ids of nodes, volume ids of PVs and LoadBalancer Services, from kube-state-metrics."""
    inv = Inventory()
    if not window.seconds:  # `today` at 00:00:30 holds nothing (and a [0s] range is no PromQL)
        return inv
    q = inventory_queries(ksm_selector, window.seconds)
    at = float(window.end)
    for lb, _ in client.query(q["nodes"], at):
        if lb.get("provider_id"):
            inv.nodes[resource_id(lb["provider_id"])] = lb["node"]
    for lb, _ in client.query(q["volumes"], at):
        pv = lb["persistentvolume"]
        inv.volumes[pv] = pv
        for key in ("ebs_volume_id", "csi_volume_handle", "gce_persistent_disk_name"):
            if lb.get(key):
                inv.volumes[resource_id(lb[key])] = pv
    for lb, _ in client.query(q["services"], at):
        inv.services.add(f"{lb['namespace']}/{lb['service']}")
    return inv


def render_reconciliation(rec: Reconciliation, fmt: str) -> str:
    """`chargeback reconcile` output: json, csv (the categories) or the human table."""
    if fmt == "json":
        return json.dumps({"window": [rec.window.start, rec.window.end], "currency": rec.currency,
                           "categories": rows(rec), "nodes": [n.to_json() for n in rec.nodes],
                           "unmatched": rec.unmatched, "nat": rec.nat, "ignored": rec.ignored,
                           "totalBill": rec.total_bill,
                           "namespaces": {ns: {"split": s, "unused": u, "chargeback": c}
                                          for ns, (s, u, c) in rec.namespaces.items()},
                           "totalComputed": rec.total_computed, "totalVariance": rec.total_variance,
                           "totalList": rec.total_listed, "verdict": rec.verdict()}, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["category", "bill", "computed", "variance", "list", "invoiced"])
        writer.writeheader()
        writer.writerows(rows(rec))
        return buf.getvalue()
    return to_table(rec)


def reconciled_summary(rec: Reconciliation, again: CostResult) -> str:
    """What `reconcile --reconciled` did, in one line: the bill matched, shared, and what it left alone."""
    unbilled = sum(n.computed for n in rec.nodes if n.bill is None)
    shared = sum(rec.unmatched.values()) if rec.scoped else 0.0
    return (f"reconciled: namespaces sum to {sum(again.costs.values()):.2f}; bill {rec.total_bill:.2f} "
            f"matched + {shared:.2f} shared, nodes not on the bill kept at their computed {unbilled:.2f}"
            + ("" if rec.scoped else "; unmatched lines not shared: set reconciliation.clusterTags"))


def rows(r: Reconciliation) -> list[dict[str, Any]]:
    return [{"category": c, "bill": r.bill[c], "computed": r.computed[c], "variance": r.variance(c),
             "list": r.listed.get(c), "invoiced": r.invoiced.get(c)} for c in CATEGORIES]


_RIGHT = ("left", "right", "right", "right", "right")  # a name, then amounts


def _rounded(rows: list[list[Any]]) -> list[list[Any]]:
    """Amounts to 4 decimals as text: tabulate's floatfmt skips a column mixing numbers and words ("-", "not on
    the bill"), which then printed 1750.2866000000001."""
    return [[f"{v:.4f}" if isinstance(v, float) else v for v in row] for row in rows]


def to_table(r: Reconciliation) -> str:
    from tabulate import tabulate

    cur = r.currency or ""
    head = f"Reconciliation {iso(r.window.start)} .. {iso(r.window.end)}"
    cats = [[x["category"], x["bill"], x["computed"],
             f"{100 * x['variance']:+.2f}%" if x["variance"] is not None else "-",
             "-" if x["list"] is None else x["list"]] for x in rows(r)]
    cats.append(["TOTAL", r.total_bill, r.total_computed,
                 f"{100 * r.total_variance:+.2f}%" if r.total_variance is not None else "-",
                 "-" if r.total_listed is None else r.total_listed])
    worst = sorted(r.nodes, key=lambda n: -abs(n.computed - (n.bill or 0)))[:10]
    nodes = [[n.node, n.instance, "not on the bill" if n.bill is None else n.bill, n.computed,
              "-" if n.bill_hourly is None else n.bill_hourly] for n in worst]
    cats, nodes = _rounded(cats), _rounded(nodes)
    parts = [head, tabulate(cats, headers=["category", f"bill {cur}", f"computed {cur}", "variance",
                                           f"at list prices {cur}"], floatfmt=".4f", colalign=_RIGHT[:5]),
             "", "Largest node discrepancies:",
             tabulate(nodes, headers=["node", "instance", f"bill {cur}", f"computed {cur}", f"bill {cur}/h"],
                      floatfmt=".4f", colalign=("left", *_RIGHT[:4]))]
    if r.namespaces:
        split_rows = _rounded([[ns, s, u, c] for ns, (s, u, c) in sorted(r.namespaces.items())])
        parts += ["", "The provider's own split (AWS Split Cost Allocation / GKE cost allocation) by namespace:",
                  tabulate(split_rows, headers=["namespace", f"split {cur}", f"unused {cur}", f"chargeback {cur}"],
                           floatfmt=".4f")]
    if r.unmatched:
        note = "" if r.scoped else " (set reconciliation.clusterTags to keep only this cluster's)"
        parts += ["", f"Bill lines matching no cluster resource{note}:",
                  tabulate(_rounded([[k, v] for k, v in sorted(r.unmatched.items(), key=lambda kv: -kv[1])]),
                           headers=["service", cur],
                           floatfmt=".4f")]
    if r.nat:
        parts += ["", "NAT gateway lines (network; --reconciled spreads them by internet-bound bytes):",
                  tabulate(_rounded([[k, v] for k, v in sorted(r.nat.items())]), headers=["NAT gateway", cur],
                           floatfmt=".4f")]
    if r.ignored:
        parts += ["", "Ignored rows: " + "; ".join(f"{n} {why}" for why, n in sorted(r.ignored.items()))]
    return "\n".join([*parts, "", f"Verdict: {r.verdict()}"])
