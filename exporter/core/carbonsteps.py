"""Live grid intensity, step by step. Pure.

With `energy.intensityQuery`, a piece's carbon is the sum over its steps of that step's energy times that
step's intensity, not its mean intensity times its energy: a team that runs while the grid is clean is not
charged the dirty hours. The piece's joules still come from its cost table (core/energy.py); the steps give
each part (a namespace on a node, a node's idle) its energy-weighted intensity, sum(e_t x I_t) / sum(e_t), so
its grams are exactly sum(joules_t x I_t) when its per-step energy is the table's. A step the live series does
not cover takes the table's intensity for the node's region, and says so (a note), never 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Series = dict[int, float]  # step timestamp -> value


@dataclass
class StepData:
    """One piece's per-step inputs: the live intensity by region ("" for a series without the region label) and
    per-step energy signals: used cores and bytes per (namespace, node), capacity per node, Kepler's joules."""

    steps: tuple[int, ...]
    intensity: dict[str, Series] = field(default_factory=dict)
    cpu: dict[tuple[str, str], Series] = field(default_factory=dict)
    ram: dict[tuple[str, str], Series] = field(default_factory=dict)
    vcpus: dict[str, Series] = field(default_factory=dict)
    ram_capacity: dict[str, Series] = field(default_factory=dict)
    kepler: dict[str, dict[str, Series]] = field(default_factory=dict)  # node -> namespace -> joules per step
    kepler_node: dict[str, Series] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeSteps:
    """A node's intensity at each step and its parts' per-step energy (any unit: only ratios count)."""

    intensity: tuple[float, ...]
    rows: dict[str, Series]  # namespace -> energy per step
    idle: Series

    def weighted(self, profile: Mapping[int, float] | None, steps: tuple[int, ...]) -> float:
        """sum(e_t x I_t) / sum(e_t); the steps' plain mean where the part drew nothing measurable."""
        energy = [max((profile or {}).get(t, 0.0), 0.0) for t in steps]
        total = sum(energy)
        if total <= 0:
            return sum(self.intensity) / len(self.intensity) if self.intensity else 0.0
        return sum(e * i for e, i in zip(energy, self.intensity, strict=True)) / total


def step_intensity(data: StepData, region: str, table: float) -> tuple[tuple[float, ...], int]:
    """The node's intensity at each step (its region's series, else a region-less one) and how many steps
    fell back to `table` for want of a sample."""
    series = data.intensity.get(region) if region in data.intensity else data.intensity.get("")
    got = series or {}
    values = tuple(got.get(t, table) for t in data.steps)
    return values, sum(1 for t in data.steps if t not in got)


def estimated_steps(data: StepData, node: str, namespaces: set[str], min_w: float, max_w: float,
                    mem_w_per_byte: float) -> tuple[dict[str, Series], Series]:
    """CCF's model at each step: a namespace draws (max - min) W per core used and memory W per byte held;
    the node's idle is min W per vCPU and the memory nobody held."""
    dyn = max_w - min_w
    rows: dict[str, Series] = {}
    held: Series = {}
    for ns in namespaces:
        cpu, ram = data.cpu.get((ns, node), {}), data.ram.get((ns, node), {})
        rows[ns] = {t: dyn * cpu.get(t, 0.0) + mem_w_per_byte * ram.get(t, 0.0) for t in data.steps}
        for t in data.steps:
            held[t] = held.get(t, 0.0) + ram.get(t, 0.0)
    vcpus, cap = data.vcpus.get(node, {}), data.ram_capacity.get(node, {})
    idle = {t: min_w * vcpus.get(t, 0.0) + mem_w_per_byte * max(cap.get(t, 0.0) - held.get(t, 0.0), 0.0)
            for t in data.steps}
    return rows, idle


def measured_steps(data: StepData, node: str, namespaces: set[str]) -> tuple[dict[str, Series], Series]:
    """Kepler's joules at each step; the node's idle is its joules less those of namespaces costed on it
    (Kepler's buckets for host processes are idle, as over the whole piece)."""
    by_ns = data.kepler.get(node, {})
    rows = {ns: dict(by_ns.get(ns, {})) for ns in namespaces}
    whole = data.kepler_node.get(node, {})
    idle: Series = {}
    for t in data.steps:
        everyone = sum(s.get(t, 0.0) for s in by_ns.values())
        idle[t] = max(whole.get(t, 0.0), everyone) - sum(r.get(t, 0.0) for r in rows.values())
    return rows, idle
