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

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .billing import Bill, BillLine
from .config import Config
from .errors import ConfigError
from .limits import check_window
from .prometheus import PrometheusClient
from .promql import join_matchers
from .reconcile import LB_TAGS, Inventory, inventory, lb_by_name, overlap
from .window import Window, iso, parse_window, period_bounds

CLOUD_FIELDS = ("invoiceEntityID", "accountID", "provider", "providerID", "category", "service")
BASES = ("listCost", "netCost", "amortizedNetCost", "invoicedCost", "amortizedCost")
_CATEGORY = {"compute": "Compute", "storage": "Storage", "load_balancer": "Network", "network": "Network",
             "other": "Other"}
UNALLOCATED = "__unallocated__"
# OpenCost's accumulate for /cloudCost (default day), plus true/false as /allocation takes them.
ACCUMULATE = {"all": "all", "true": "all", "hour": "hour", "day": "daily", "false": "daily", "week": "weekly",
              "month": "monthly", "quarter": "quarter"}


def calendar_windows(window: Window, period: str) -> list[Window]:
    """The window cut at UTC hour, day, week (Sunday), month or quarter boundaries, oldest first."""
    if period == "all":
        return [window]
    out, t = [], window.start
    while t < window.end:
        if period == "hour":
            end = (t // 3600 + 1) * 3600
        elif period == "quarter":
            d = datetime.fromtimestamp(t, tz=timezone.utc)
            first = (d.month - 1) // 3 * 3 + 1  # the quarter's first month; it ends 3 months on
            end = int(datetime(d.year + (first + 2) // 12, (first + 2) % 12 + 1, 1, tzinfo=timezone.utc).timestamp())
        elif period == "weekly":  # OpenCost's weeks start on Sunday
            day = t // 86400 * 86400
            end = day + (7 - (datetime.fromtimestamp(day, tz=timezone.utc).weekday() + 1) % 7) * 86400
        else:
            end = period_bounds(period, t)[1]
        out.append(Window(t, min(end, window.end), window.step))
        t = min(end, window.end)
    return out


@dataclass(frozen=True)
class Clause:
    """field:"v1","v2": the line's field equals one of the values."""

    field: str
    values: tuple[str, ...]


_FIELD = re.compile(r"\s*([A-Za-z]*)\s*")
_VALUE = re.compile(r'"((?:[^"\\]|\\.)*)"\s*')
_ONLY = "only field:\"value\",... clauses joined by + are supported"


def parse_filter(text: str) -> list[Clause]:
    """A minimal OpenCost filter: `field:"v1","v2"` clauses joined by `+` (and). Anything else is refused
    with the position, until the shared filter grammar (allocfilter) serves this endpoint too."""
    clauses, pos = [], 0
    while True:
        m = _FIELD.match(text, pos)
        assert m is not None  # the pattern matches the empty string
        name, at = m.group(1), m.start(1)
        if name not in CLOUD_FIELDS:
            raise ConfigError(f"filter={text!r}: at position {at}: expected one of {', '.join(CLOUD_FIELDS)}, "
                              f"got {name or text[at:at + 1] or 'the end'!r}")
        pos = m.end()
        if not text.startswith(":", pos):
            op = re.match(r"[!<>~]*:?", text[pos:])
            raise ConfigError(f"filter={text!r}: at position {pos}: operator {(op.group(0) if op else '') or 'none'!r} "
                              f"is not supported here; {_ONLY}")
        pos, values = pos + 1, []
        while True:
            pos += len(text[pos:]) - len(text[pos:].lstrip())
            v = _VALUE.match(text, pos)
            if not v:
                raise ConfigError(f"filter={text!r}: at position {pos}: expected a double-quoted value")
            values.append(v.group(1).replace('\\"', '"'))
            pos = v.end()
            if not text.startswith(",", pos):
                break
            pos += 1
        clauses.append(Clause(name, tuple(values)))
        if pos == len(text):
            return clauses
        if text[pos] != "+":
            raise ConfigError(f"filter={text!r}: at position {pos}: expected '+' or the end; {_ONLY}")
        pos += 1


def properties(line: BillLine) -> dict[str, str]:
    return {"providerID": line.raw_resource, "provider": line.provider, "accountID": line.account,
            "invoiceEntityID": line.invoice_entity, "service": line.service, "category": _CATEGORY[line.category],
            "labels": line.tags}  # type: ignore[dict-item]


def matches(props: dict[str, Any], clauses: list[Clause]) -> bool:
    return all(props[c.field] in c.values for c in clauses)


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


def cloud_cost_set(bill: Bill, inv: Inventory, w: Window, parts: list[str], clauses: list[Clause]
                   ) -> dict[str, Any]:
    """Pure: one set of OpenCost CloudCosts over window `w`, keyed by the aggregate values joined with '/'."""
    items: dict[str, dict[str, Any]] = {}
    k8s: dict[str, dict[str, float]] = {}
    for line in bill.lines:
        share = overlap(line.start, line.end, w)
        if share == 0:
            continue
        props = properties(line)
        if not matches(props, clauses):
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


def parse_cloud_aggregate(text: str | None) -> list[str]:
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    for p in parts:
        if p not in CLOUD_FIELDS:
            raise ConfigError(f"aggregate={text!r}: {p!r} is not one of {', '.join(CLOUD_FIELDS)}")
    return parts


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
    from .assets_api import load_bill, step_windows

    def arg(name: str) -> str | None:
        return query.get(name, [None])[0]

    window = parse_window(arg("window") or "7d", now, resolution)
    check_window(window, cfg.api.maxWindow)
    parts = parse_cloud_aggregate(arg("aggregate"))
    clauses = parse_filter(arg("filter") or "") if (arg("filter") or "").strip() else []
    accumulate = (arg("accumulate") or "day").lower()
    if accumulate not in ACCUMULATE:
        raise ConfigError(f"accumulate={arg('accumulate')!r}: use one of {', '.join(ACCUMULATE)}")
    # `step` (as /allocation's) cuts the sets when given; otherwise accumulate's calendar periods do.
    windows = step_windows(window, query) if arg("step") else calendar_windows(window, ACCUMULATE[accumulate])
    bill = load_bill(cfg)
    inv = inventory(client, window, join_matchers(cfg.prometheus.ksmSelector, cfg.prometheus.clusterSelector))
    sets = [cloud_cost_set(bill, inv, w, parts, clauses) for w in windows]
    if ACCUMULATE[accumulate] == "all" and len(sets) > 1:
        sets = [accumulate_sets(sets, window)]
    return {"code": 200, "data": {"sets": sets, "window": {"start": iso(window.start), "end": iso(window.end)}}}
