"""One allocation as the CLI's JSON and OpenCost's /allocation both print it: a group's quantities and cost
(`Row`), then its fields. One function per shape, so a field means the same through every door."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.core.allocation import Line, efficiency, running_span
from exporter.core.gpuwaste import efficiency as gpu_efficiency
from exporter.core.window import iso


@dataclass(slots=True)
class Row:
    """One aggregated allocation: quantities (allocated only) plus cost by component."""

    line: Line = field(default_factory=Line)
    cost: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("cpu", "memory", "gpu", "storage", "load_balancer", "network", "overhead"), 0.0))
    shared: float = 0.0
    energy: float = 0.0  # joules (exporter/core/energy.py): a separate quantity, never part of the total
    carbon: float = 0.0  # grams CO2e

    @property
    def total(self) -> float:
        return sum(self.cost.values()) + self.shared


def allocation_item(name: str, row: Row, start: int, end: int) -> dict[str, Any]:
    """One entry of OpenCost's /allocation/compute `data[0]` map, field for field. `start`, `end`: the window;
    the allocation's own are its running span (Line.run_start), which its per-time fields are averaged over."""
    line = row.line
    first, last = running_span(line, start, end)
    hours = (last - first) / 3600 or 1.0
    cpu_eff = efficiency(line.cpu_usage_seconds, line.cpu_request_seconds)
    ram_eff = efficiency(line.ram_usage_byte_seconds, line.ram_request_byte_seconds)
    cpu_cost, ram_cost, gpu_cost = row.cost["cpu"], row.cost["memory"], row.cost["gpu"]
    cr = cpu_cost + ram_cost
    return {
        "name": name,
        "start": iso(int(first)),
        "end": iso(int(last)),
        "minutes": (last - first) / 60,
        # OpenCost's quantities (docs/api.md, "Quantities"): what the containers held (max(request, usage) under the
        # default policy) before a node's overflow scale, and nvidia.com/gpu requests; cost is chargeback's.
        "cpuCores": line.cpu_held_seconds / 3600 / hours,
        "cpuCoreRequestAverage": line.cpu_request_seconds / 3600 / hours,
        "cpuCoreUsageAverage": line.cpu_usage_seconds / 3600 / hours,
        "cpuCoreLimitAverage": line.cpu_limit_seconds / 3600 / hours,
        "cpuCoreHours": line.cpu_held_seconds / 3600,
        "cpuCost": cpu_cost,
        "cpuEfficiency": cpu_eff,
        # nvidia.com/gpu requests, or a time-sliced nvidia.com/gpu.shared replica's physical share (docs/gpu.md).
        "gpuCount": line.gpu_opencost_seconds / 3600 / hours,
        "gpuHours": line.gpu_opencost_seconds / 3600,
        "gpuCost": gpu_cost,
        # chargeback's own quantities, as priced: after the overflow scale, GPUs as physical devices held.
        "chargedCpuCoreHours": line.cpu_core_seconds / 3600,
        "chargedRamByteHours": line.ram_byte_seconds / 3600,
        "physicalGpuHours": line.gpu_seconds / 3600,
        # dcgm-exporter's view (exporter/core/gpuwaste.py): average busy GPUs, busy over observed GPU time (0 when
        # no GPU was observed, as cpuEfficiency is 0 with nothing requested), and the GPU cost of idle time.
        "gpuUsageAverage": line.gpu_usage_seconds / 3600 / hours,
        "gpuEfficiency": gpu_efficiency(line) or 0.0,
        "gpuWasteCost": line.gpu_waste_cost,
        "ramBytes": line.ram_held_byte_seconds / 3600 / hours,
        "ramByteRequestAverage": line.ram_request_byte_seconds / 3600 / hours,
        "ramByteUsageAverage": line.ram_usage_byte_seconds / 3600 / hours,
        "ramByteLimitAverage": line.ram_limit_byte_seconds / 3600 / hours,
        "ramByteHours": line.ram_held_byte_seconds / 3600,
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
        # Energy and carbon (docs/energy-and-carbon.md): chargeback's exact units, and Kubecost's carbonCost
        # (kg CO2e). Not money: totalCost never includes them.
        "energyJoules": row.energy,
        "energyKWh": row.energy / 3.6e6,
        "carbonGrams": row.carbon,
        "carbonCost": row.carbon / 1000,
    }



# Fields OpenCost's Allocation carries that have no source here yet; always 0 (README, "OpenCost API").
_ZERO_FIELDS = ("cpuCostAdjustment", "gpuCostAdjustment", "ramCostAdjustment", "pvCostAdjustment",
                "networkCostAdjustment", "loadBalancerCostAdjustment", "networkTransferBytes",
                "networkReceiveBytes")


def pv_allocations(pvs: Mapping[str, tuple[float, float]] | None, cluster: str,
                   ids: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """OpenCost's PVAllocations: keyed by its PVKey's text (`cluster=<c>:name=<pv>`), byte-hours, cost and
    provider id (`ids`) per volume; null when the allocation holds no volume, as OpenCost writes it."""
    if not pvs:
        return None
    ids = ids or {}
    return {f"cluster={cluster}:name={pv}": {"byteHours": b / 3600, "cost": c, "providerID": ids.get(pv, ""),
                                             "adjustment": 0.0} for pv, (b, c) in sorted(pvs.items())}


def lb_allocations(lbs: Mapping[str, tuple[float, float]] | None, cluster: str) -> dict[str, Any] | None:
    """OpenCost's LbAllocations: keyed by its service key's text (`<cluster>/<namespace>/<service>`), the
    service as `namespace/service`, cost and hours; no IP is read (private false, ip empty). Null without one."""
    if not lbs:
        return None
    return {f"{cluster}/{svc}": {"service": svc, "cost": c, "private": False, "ip": "", "hours": s / 3600,
                                 "adjustment": 0.0} for svc, (s, c) in sorted(lbs.items())}


@dataclass(frozen=True)
class GpuInfo:
    """The one GPU a container allocation was seen on by dcgm-exporter (OpenCost's gpuDevice, gpuModel, gpuUUID)."""

    device: str = ""
    model: str = ""
    uuid: str = ""


def gpu_allocation(line: Line, hours: float, gpu: GpuInfo | None) -> dict[str, Any] | None:
    """OpenCost's gpuAllocation: null without GPUs; gpuUsageAverage sums each GPU pod's mean busy fraction of its
    GPUs (dcgm-exporter) over the allocation's hours, gpuRequestAverage its nvidia.com/gpu requests."""
    if not (line.gpu_opencost_seconds or line.gpu_seconds or line.gpu_pod_busy_seconds or gpu):
        return None
    g = gpu or GpuInfo()
    # A share of a device (time-sliced replica, MIG slice) holds less physical GPU than it requested units.
    shared = line.gpu_seconds < line.gpu_request_seconds * (1 - 1e-9) or not line.gpu_request_seconds
    return {"gpuDevice": g.device, "gpuModel": g.model, "gpuUUID": g.uuid, "isGPUShared": shared,
            "gpuUsageAverage": line.gpu_pod_busy_seconds / 3600 / hours,
            "gpuRequestAverage": line.gpu_request_seconds / 3600 / hours}


def api_item(name: str, row: Row, start: int, end: int, bounds: tuple[int, int],
             properties: dict[str, Any], proportional: dict[str, Any] | None = None,
             pvs: dict[str, Any] | None = None, raw: dict[str, float] | None = None,
             gpu: GpuInfo | None = None, lbs: dict[str, Any] | None = None) -> dict[str, Any]:
    """One allocation as OpenCost's /allocation serialises it: `properties`, the set's `window`, and
    every documented field (those with no meaning here are 0)."""
    item = allocation_item(name, row, start, end)
    hours = item["minutes"] / 60 or 1.0  # the running span allocation_item averaged over
    out: dict[str, Any] = {"name": name, "properties": properties,
                           "window": {"start": iso(bounds[0]), "end": iso(bounds[1])}}
    out.update(item)
    out.update(dict.fromkeys(_ZERO_FIELDS, 0.0))
    # The egress classes' share of networkCost (docs/network.md); monthly amounts such as a NAT gateway are in
    # networkCost only.
    line = row.line
    out.update(networkCrossZoneCost=line.network_zone_cost, networkCrossRegionCost=line.network_region_cost,
               networkInternetCost=line.network_internet_cost)
    out["pvBytes"] = row.line.pv_byte_seconds / 3600 / hours
    out["pvs"] = pvs
    out["lbAllocations"] = lbs
    out["rawAllocationOnly"] = raw
    out["gpuAllocation"] = gpu_allocation(line, hours, gpu)
    if proportional is not None:
        out["proportionalAssetResourceCosts"] = proportional
    return out
