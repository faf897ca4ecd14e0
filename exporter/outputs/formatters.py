"""Output: aggregate a CostResult and render it as OpenCost-shaped JSON, a human table, or CSV.

The groups are made of the rows /allocation groups (exporter/outputs/allocrows.py) and printed by the same
`allocation_item`, so allocate and the API give every field alike; only names differ where documented (the
CLI keeps `__unattributed__`, and `cluster` and `node` views hold idle, docs/cli.md).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from tabulate import tabulate

from exporter.core.allocation import CostResult
from exporter.core.names import IDLE, UNALLOCATED, is_pseudo
from exporter.core.window import iso
from exporter.outputs.allocitem import Row, allocation_item
from exporter.outputs.allocrows import build_rows
from exporter.outputs.escape import csv_rows
from exporter.vocab.errors import ConfigError
from exporter.vocab.labels import aggregate_parts, ksm_label

BASE_AGGREGATES = ("namespace", "node", "cluster")


def parse_aggregate(text: str, labels: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Split `namespace,team` or `label:app` into parts; returns (parts, attribution labels to use).

    `label:<key>` adds the Kubernetes label `key` to the attribution labels for this query.
    Parts are metric-label names (`team`) or `namespace`/`node`/`cluster`.
    """
    labels = dict(labels)
    parts: list[str] = []
    for raw in aggregate_parts(text):
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
    if parts == ["node"]:  # what each node costs: its allocated and idle rows, before sharing
        for (_ns, node, _attrs), line in result.table.items():
            row = rows.setdefault(node or UNALLOCATED, Row())  # volumes, load balancers, egress: no node
            row.line.add(line)
            for res, c in line.cost_by_resource().items():
                row.cost[res] += c
        for (_ns, node, _attrs, _c), j in result.energy.joules.items():  # each node's energy, idle included
            rows.setdefault(node, Row()).energy += j
        for (_ns, node, _attrs, _c), g in result.energy.grams.items():
            rows.setdefault(node, Row()).carbon += g
        return rows
    # /allocation's rows, added in its order: quantities follow cost (a shared namespace's usage is not its
    # tenants'), and idle carries the capacity nobody was allocated.
    for r in build_rows(result, attr_names, ""):
        row = rows.setdefault(group_name(r.name or r.props.namespace, r.attrs, parts, attr_names), Row())
        row.line.add(r.row.line)
        for res, c in r.row.cost.items():
            row.cost[res] += c
        row.shared += r.row.shared
        row.energy += r.row.energy
        row.carbon += r.row.carbon
    return {k: v for k, v in rows.items() if v.total or k == IDLE}


def allocation_response(result: CostResult, parts: list[str], attr_names: tuple[str, ...]) -> dict[str, Any]:
    rows = aggregate(result, parts, attr_names)
    data = {name: allocation_item(name, rows[name], result.start, result.end) for name in sorted(rows)}
    # OpenCost's shape, plus what the numbers stand on: bridged and uncovered intervals.
    return {"code": 200, "data": [data], "coverage": result.coverage.to_json((result.start, result.end))}


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
        writer.writerows(csv_rows(rows))  # names and labels come from Prometheus: no formulas
    return buf.getvalue()


def render(result: CostResult, parts: list[str], attr_names: tuple[str, ...], fmt: str,
           currency: str = "USD") -> str:
    if fmt == "json":
        return json.dumps(allocation_response(result, parts, attr_names), indent=2)
    if fmt == "csv":
        return to_csv(result, parts, attr_names)
    return to_table(result, parts, attr_names, currency)
