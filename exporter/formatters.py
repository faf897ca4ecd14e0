"""Output: render a CostResult as OpenCost-shaped JSON, a human table, or CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from tabulate import tabulate

from .allocation import CostResult, Line, aggregate, efficiency
from .window import iso


def allocation_item(name: str, line: Line, start: int, end: int) -> dict[str, Any]:
    """One entry of OpenCost's /allocation/compute `data[0]` map, field for field."""
    hours = (end - start) / 3600 or 1.0
    cpu_eff = efficiency(line.cpu_usage_seconds, line.cpu_request_seconds)
    ram_eff = efficiency(line.ram_usage_byte_seconds, line.ram_request_byte_seconds)
    cr = line.cpu_cost + line.ram_cost
    return {
        "name": name,
        "start": iso(start),
        "end": iso(end),
        "minutes": (end - start) / 60,
        "cpuCores": line.cpu_core_seconds / 3600 / hours,
        "cpuCoreRequestAverage": line.cpu_request_seconds / 3600 / hours,
        "cpuCoreUsageAverage": line.cpu_usage_seconds / 3600 / hours,
        "cpuCoreHours": line.cpu_core_seconds / 3600,
        "cpuCost": line.cpu_cost,
        "cpuEfficiency": cpu_eff,
        "gpuCount": line.gpu_seconds / 3600 / hours,
        "gpuHours": line.gpu_seconds / 3600,
        "gpuCost": line.gpu_cost,
        "ramBytes": line.ram_byte_seconds / 3600 / hours,
        "ramByteRequestAverage": line.ram_request_byte_seconds / 3600 / hours,
        "ramByteUsageAverage": line.ram_usage_byte_seconds / 3600 / hours,
        "ramByteHours": line.ram_byte_seconds / 3600,
        "ramCost": line.ram_cost,
        "ramEfficiency": ram_eff,
        "pvByteHours": 0.0,
        "pvCost": 0.0,
        "networkCost": 0.0,
        "loadBalancerCost": 0.0,
        "sharedCost": 0.0,
        "externalCost": 0.0,
        "totalCost": line.total_cost,
        "totalEfficiency": (cpu_eff * line.cpu_cost + ram_eff * line.ram_cost) / cr if cr else 0.0,
    }


def allocation_response(result: CostResult, by: str) -> dict[str, Any]:
    rows = aggregate(result, by)
    data = {name: allocation_item(name, rows[name], result.start, result.end) for name in sorted(rows)}
    return {"code": 200, "data": [data]}


def to_json(result: CostResult, by: str) -> str:
    return json.dumps(allocation_response(result, by), indent=2)


_COLUMNS = ("cpuCost", "ramCost", "gpuCost", "totalCost")


def _rows(result: CostResult, by: str) -> list[dict[str, Any]]:
    data = allocation_response(result, by)["data"][0]
    return sorted(data.values(), key=lambda r: -float(r["totalCost"]))


def to_table(result: CostResult, by: str, currency: str = "USD") -> str:
    rows = _rows(result, by)
    total = result.total_cost
    body = [
        [r["name"], r["cpuCost"], r["ramCost"], r["gpuCost"], r["totalCost"],
         100 * r["totalCost"] / total if total else 0.0, r["cpuEfficiency"] * 100]
        for r in rows
    ]
    body.append(["TOTAL", *(sum(r[c] for r in rows) for c in _COLUMNS), 100.0 if total else 0.0, None])
    head = [by, f"cpu {currency}", f"memory {currency}", f"gpu {currency}", f"total {currency}", "share %", "cpu eff %"]
    title = f"{iso(result.start)} .. {iso(result.end)}  ({(result.end - result.start) / 3600:g} h)"
    return title + "\n" + tabulate(body, headers=head, floatfmt=".4f", missingval="")


def to_csv(result: CostResult, by: str) -> str:
    rows = _rows(result, by)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def render(result: CostResult, by: str, fmt: str, currency: str = "USD") -> str:
    if fmt == "json":
        return to_json(result, by)
    if fmt == "csv":
        return to_csv(result, by)
    return to_table(result, by, currency)
