"""Output: aggregate a CostResult and render it as OpenCost-shaped JSON, a human table, or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from exporter.core.allocation import CostResult, Line, efficiency
from exporter.core.gpuwaste import efficiency as gpu_efficiency
from exporter.core.names import IDLE, is_pseudo
from exporter.core.window import iso
from exporter.vocab.errors import ConfigError
from exporter.vocab.labels import ksm_label

BASE_AGGREGATES = ("namespace", "node", "cluster")


def parse_aggregate(text: str, labels: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Split `namespace,team` or `label:app` into parts; returns (parts, attribution labels to use).

    `label:<key>` adds the Kubernetes label `key` to the attribution labels for this query.
    Parts are metric-label names (`team`) or `namespace`/`node`/`cluster`.
    """
    labels = dict(labels)
    parts: list[str] = []
    for raw in (p.strip() for p in text.split(",")):
        if raw in BASE_AGGREGATES:
            parts.append(raw)
        elif raw.startswith("label:") and raw[6:]:
            key = raw[6:]
            name = next((n for n, k in labels.items() if k == key), None)
            if name is None:
                name = ksm_label(key)
                labels[name] = key
            parts.append(name)
        elif raw in labels:
            parts.append(raw)
        else:
            choices = ", ".join([*BASE_AGGREGATES, *labels, "label:<key>"])
            raise ConfigError(f"aggregate={text!r}: unknown property {raw!r}; use {choices}")
    if not parts or (("node" in parts or "cluster" in parts) and len(parts) > 1):
        raise ConfigError(f"aggregate={text!r}: node and cluster cannot be combined with other properties")
    return parts, labels


@dataclass(slots=True)
class Row:
    """One aggregated allocation: quantities (allocated only) plus cost by component."""

    line: Line = field(default_factory=Line)
    cost: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("cpu", "memory", "gpu", "storage", "load_balancer", "network", "overhead"), 0.0))
    shared: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.cost.values()) + self.shared


def group_name(ns: str, attrs: tuple[str, ...], parts: list[str], attr_names: tuple[str, ...]) -> str:
    """An entry's row name under `aggregate` parts, joined with `/` as OpenCost does."""
    if parts == ["cluster"]:
        return "cluster"
    if is_pseudo(ns):
        return ns
    return "/".join(ns if p == "namespace" else attrs[attr_names.index(p)] for p in parts)


def aggregate(result: CostResult, parts: list[str], attr_names: tuple[str, ...]) -> dict[str, Row]:
    """Roll the result up by the aggregate parts (names joined with '/', as OpenCost does)."""
    rows: dict[str, Row] = {}
    if parts == ["node"]:
        for (_ns, node, _attrs), line in result.table.items():
            row = rows.setdefault(node, Row())
            row.line.add(line)
            for res, c in line.cost_by_resource().items():
                row.cost[res] += c
        return rows

    # Quantities follow cost: a shared namespace's usage is not its tenants' usage.
    owners = {(ns, attrs) for (ns, attrs, component, _r, _s) in result.costs if component == "allocated"}

    def name(ns: str, attrs: tuple[str, ...]) -> str:
        return group_name(ns, attrs, parts, attr_names)

    for (ns, _node, attrs), line in result.table.items():
        if ns != IDLE and (ns, attrs) in owners:
            rows.setdefault(name(ns, attrs), Row()).line.add(line)
    for (ns, attrs, component, res, _source), c in result.costs.items():
        row = rows.setdefault(name(ns, attrs), Row())
        if component == "shared":
            row.shared += c
        else:
            row.cost[res] += c
    return {k: v for k, v in rows.items() if v.total or k == IDLE}


def allocation_item(name: str, row: Row, start: int, end: int) -> dict[str, Any]:
    """One entry of OpenCost's /allocation/compute `data[0]` map, field for field."""
    line = row.line
    hours = (end - start) / 3600 or 1.0
    cpu_eff = efficiency(line.cpu_usage_seconds, line.cpu_request_seconds)
    ram_eff = efficiency(line.ram_usage_byte_seconds, line.ram_request_byte_seconds)
    cpu_cost, ram_cost, gpu_cost = row.cost["cpu"], row.cost["memory"], row.cost["gpu"]
    cr = cpu_cost + ram_cost
    return {
        "name": name,
        "start": iso(start),
        "end": iso(end),
        "minutes": (end - start) / 60,
        "cpuCores": line.cpu_core_seconds / 3600 / hours,
        "cpuCoreRequestAverage": line.cpu_request_seconds / 3600 / hours,
        "cpuCoreUsageAverage": line.cpu_usage_seconds / 3600 / hours,
        "cpuCoreHours": line.cpu_core_seconds / 3600,
        "cpuCost": cpu_cost,
        "cpuEfficiency": cpu_eff,
        "gpuCount": line.gpu_seconds / 3600 / hours,
        "gpuHours": line.gpu_seconds / 3600,
        "gpuCost": gpu_cost,
        # dcgm-exporter's view (exporter/core/gpuwaste.py): average busy GPUs, busy over observed GPU time (0 when
        # no GPU was observed, as cpuEfficiency is 0 with nothing requested), and the GPU cost of idle time.
        "gpuUsageAverage": line.gpu_usage_seconds / 3600 / hours,
        "gpuEfficiency": gpu_efficiency(line) or 0.0,
        "gpuWasteCost": line.gpu_waste_cost,
        "ramBytes": line.ram_byte_seconds / 3600 / hours,
        "ramByteRequestAverage": line.ram_request_byte_seconds / 3600 / hours,
        "ramByteUsageAverage": line.ram_usage_byte_seconds / 3600 / hours,
        "ramByteHours": line.ram_byte_seconds / 3600,
        "ramCost": ram_cost,
        "ramEfficiency": ram_eff,
        "pvByteHours": line.pv_byte_seconds / 3600,
        "pvCost": row.cost["storage"],
        "networkCost": row.cost["network"],
        "loadBalancerCost": row.cost["load_balancer"],
        "sharedCost": row.shared,
        "externalCost": 0.0,
        "totalCost": row.total,
        "totalEfficiency": (cpu_eff * cpu_cost + ram_eff * ram_cost) / cr if cr else 0.0,
    }


def allocation_response(result: CostResult, parts: list[str], attr_names: tuple[str, ...]) -> dict[str, Any]:
    rows = aggregate(result, parts, attr_names)
    data = {name: allocation_item(name, rows[name], result.start, result.end) for name in sorted(rows)}
    # OpenCost's shape, plus what the numbers stand on: bridged and uncovered intervals.
    return {"code": 200, "data": [data], "coverage": result.coverage.to_json()}


_COLUMNS = ("cpuCost", "ramCost", "gpuCost", "assets", "sharedCost", "totalCost")


def _col(row: dict[str, Any], column: str) -> float:
    if column == "assets":
        return float(row["pvCost"] + row["loadBalancerCost"] + row["networkCost"])
    return float(row[column])


def _rows(result: CostResult, parts: list[str], attr_names: tuple[str, ...]) -> list[dict[str, Any]]:
    data = allocation_response(result, parts, attr_names)["data"][0]
    return sorted(data.values(), key=lambda r: -float(r["totalCost"]))


def to_table(result: CostResult, parts: list[str], attr_names: tuple[str, ...], currency: str = "USD") -> str:
    rows = _rows(result, parts, attr_names)
    total = result.total_cost
    body = [
        [r["name"], r["cpuCost"], r["ramCost"], r["gpuCost"], r["pvCost"] + r["loadBalancerCost"] + r["networkCost"],
         r["sharedCost"], r["totalCost"], 100 * r["totalCost"] / total if total else 0.0, r["cpuEfficiency"] * 100]
        for r in rows
    ]
    body.append(["TOTAL", *(sum(_col(r, c) for r in rows) for c in _COLUMNS), 100.0 if total else 0.0, None])
    head = [",".join(parts), f"cpu {currency}", f"memory {currency}", f"gpu {currency}", f"pv+lb+net {currency}",
            f"shared {currency}", f"total {currency}", "share %", "cpu eff %"]
    title = f"{iso(result.start)} .. {iso(result.end)}  ({(result.end - result.start) / 3600:g} h)"
    return title + "\n" + tabulate(body, headers=head, floatfmt=".4f", missingval="")


def to_csv(result: CostResult, parts: list[str], attr_names: tuple[str, ...]) -> str:
    rows = _rows(result, parts, attr_names)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def render(result: CostResult, parts: list[str], attr_names: tuple[str, ...], fmt: str,
           currency: str = "USD") -> str:
    if fmt == "json":
        return json.dumps(allocation_response(result, parts, attr_names), indent=2)
    if fmt == "csv":
        return to_csv(result, parts, attr_names)
    return to_table(result, parts, attr_names, currency)


# Fields OpenCost's Allocation carries that have no source here yet; always 0 (README, "OpenCost API").
_ZERO_FIELDS = ("cpuCostAdjustment", "gpuCostAdjustment", "ramCostAdjustment", "pvCostAdjustment",
                "networkCostAdjustment", "loadBalancerCostAdjustment", "networkTransferBytes",
                "networkReceiveBytes", "networkCrossZoneCost", "networkCrossRegionCost", "networkInternetCost")


def api_item(name: str, row: Row, start: int, end: int, bounds: tuple[int, int],
             properties: dict[str, Any], proportional: dict[str, Any] | None = None) -> dict[str, Any]:
    """One allocation as OpenCost's /allocation serialises it: `properties`, the set's `window`, and
    every documented field (those with no meaning here are 0)."""
    item = allocation_item(name, row, start, end)
    hours = (end - start) / 3600 or 1.0
    out: dict[str, Any] = {"name": name, "properties": properties,
                           "window": {"start": iso(bounds[0]), "end": iso(bounds[1])}}
    out.update(item)
    out.update(dict.fromkeys(_ZERO_FIELDS, 0.0))
    out["pvBytes"] = row.line.pv_byte_seconds / 3600 / hours
    out["pvs"] = None
    out["rawAllocationOnly"] = None
    if proportional is not None:
        out["proportionalAssetResourceCosts"] = proportional
    return out
