"""OpenCost's /allocation/summary and /allocation/summary/topline, made from /allocation's answer. Pure.

OpenCost's summary is its allocation set range with each allocation cut down to SummaryAllocation's
fields (core/pkg/opencost/summaryallocation_json.go), the sets under `sets` with their window, and the
range's `step` (a Go duration: nanoseconds) and `window`. The topline adds every allocation of every set
into one `total`. The numbers are /allocation's, field for field, so both answers agree by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporter.core.window import iso, parse_instant
from exporter.outputs.opencost_api import AllocationSet

# SummaryAllocationResponse's fields, in its order.
SUMMARY_FIELDS = ("name", "start", "end", "cpuCoreRequestAverage", "cpuCoreLimitAverage", "cpuCoreUsageAverage",
                  "cpuCost", "gpuCost", "networkCost", "loadBalancerCost", "pvCost", "ramByteRequestAverage",
                  "ramByteLimitAverage", "ramByteUsageAverage", "ramCost", "sharedCost", "externalCost",
                  "totalEfficiency", "totalCost")
_COSTS = ("cpuCost", "gpuCost", "networkCost", "loadBalancerCost", "pvCost", "ramCost", "sharedCost",
          "externalCost", "totalCost")
_AVERAGES = ("cpuCoreRequestAverage", "cpuCoreLimitAverage", "cpuCoreUsageAverage", "ramByteRequestAverage",
             "ramByteLimitAverage", "ramByteUsageAverage")
_NS = 1_000_000_000  # Go's time.Duration unit


def _window(s: AllocationSet) -> dict[str, str]:
    return {"start": iso(s.bounds.start), "end": iso(s.bounds.end)}


def summary_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in SUMMARY_FIELDS}


def _range(sets: Sequence[AllocationSet]) -> dict[str, Any]:
    if not sets:
        return {"start": None, "end": None}
    return {"start": iso(min(s.bounds.start for s in sets)), "end": iso(max(s.bounds.end for s in sets))}


def summary_response(body: dict[str, Any], sets: Sequence[AllocationSet]) -> dict[str, Any]:
    """/allocation's body (one map per set, in `sets`' order) as OpenCost's SummaryAllocationSetRange."""
    data = body["data"]
    if len(data) != len(sets):
        raise AssertionError(f"{len(data)} sets answered for {len(sets)} planned")
    out = [{"allocations": {name: summary_item(item) for name, item in m.items()}, "window": _window(s)}
           for m, s in zip(data, sets, strict=True)]
    step = (sets[0].bounds.end - sets[0].bounds.start) * _NS if sets else 0
    return {"code": 200, "data": {"step": step, "sets": out, "window": _range(sets)},
            "coverage": body.get("coverage", {})}


def topline_response(body: dict[str, Any], sets: Sequence[AllocationSet]) -> dict[str, Any]:
    """Every allocation of every set added into one `total`, as OpenCost's SummaryAllocation.Add: costs summed;
    each average back to a quantity over its allocation's minutes, summed, and over the total's span (the
    earliest start to the latest end); totalEfficiency weighted by cpu + ram cost, as /allocation's is."""
    summary = summary_response(body, sets)["data"]
    items = [i for m in body["data"] for i in m.values()]
    allocations: dict[str, Any] = {}
    if items:
        total: dict[str, Any] = {"name": "total", "start": min(i["start"] for i in items),
                                 "end": max(i["end"] for i in items)}
        for k in _COSTS:
            total[k] = sum(i[k] for i in items)
        span = (parse_instant(total["end"]) - parse_instant(total["start"])) / 60
        for k in _AVERAGES:
            total[k] = sum(i[k] * i["minutes"] for i in items) / span if span else 0.0
        cr = sum(i["cpuCost"] + i["ramCost"] for i in items)
        eff = sum(i["totalEfficiency"] * (i["cpuCost"] + i["ramCost"]) for i in items)
        total["totalEfficiency"] = eff / cr if cr else 0.0
        allocations["total"] = {k: total[k] for k in SUMMARY_FIELDS}
    return {"code": 200, "data": {"numResults": len(items), "combined": {"allocations": allocations,
                                                                   "window": summary["window"]}},
            "coverage": body.get("coverage", {})}
