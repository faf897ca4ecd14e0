"""The recorded path for namespaces split between owners: recorded amounts, raw shares (the fetch stage's glue).

The amounts of a split namespace are the recorded ones, as for every other namespace on the chunk, so its
nodes never hold more than the recorded path reads; only which owner gets what comes from the raw per-pod
rows of the split namespaces (`sources/splitsteps.py`), by `core/ownershare.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.core.attribution import Owners
from exporter.core.ownershare import Place, Samples, StepSplit, split_totals
from exporter.sources.allocsteps import REQUESTED, RowKey
from exporter.sources.splitsteps import SplitRows
from exporter.vocab.labels import UsageKey


@dataclass
class SplitAmounts:
    """The split namespaces' rows in unit-seconds, per (namespace, node, owner, resource)."""

    allocated: dict[UsageKey, float]
    requested: dict[UsageKey, float]
    used: dict[UsageKey, float]


def owned(rows: Mapping[RowKey, Samples], owners: Owners) -> dict[UsageKey, list[tuple[float, float]]]:
    """Per-pod step rows summed per owner, step by step."""
    steps: dict[UsageKey, dict[float, float]] = {}
    for k, samples in rows.items():
        if k.resource not in REQUESTED:
            continue
        acc = steps.setdefault((k.namespace, k.node, owners.of(k.namespace, k.pod), k.resource), {})
        for t, v in samples:
            acc[t] = acc.get(t, 0.0) + v
    return {key: sorted(acc.items()) for key, acc in steps.items()}


def split_recorded(windows: Iterable[SplitRows], owners: Owners, step: int, requested: Mapping[Place, float],
                   used: Mapping[Place, float]) -> SplitAmounts:
    """Owners' amounts from the sub-windows' rows: the recorded allocation split step by step; the recorded
    `requested` and `used` totals (unit-seconds per place) split by each owner's raw sums over the chunk."""
    alloc = StepSplit()
    weights: dict[str, dict[UsageKey, float]] = {"request": {}, "usage": {}}
    for rows in windows:
        recorded = {Place(k.namespace, k.node, k.resource): v for k, v in rows.recorded.items()}
        alloc.add(recorded, owned(rows.allocation, owners))
        for part, per_pod in (("request", rows.request), ("usage", rows.usage)):
            for key, samples in owned(per_pod, owners).items():
                weights[part][key] = weights[part].get(key, 0.0) + sum(v for _t, v in samples)

    def default(ns: str) -> tuple[str, ...]:
        return owners.of(ns)

    allocated = {k: v * step for k, v in alloc.settle(default).items()}
    return SplitAmounts(allocated, split_totals(requested, weights["request"], default),
                        split_totals(used, weights["usage"], default))


def split_like(amounts: Mapping[Place, float], by: Mapping[UsageKey, float]) -> dict[UsageKey, float]:
    """Each place's amount split between its owners as `by` (the split allocation) is: the recorded allocation
    before the overflow scale, for OpenCost's cpuCores and ramBytes. Pure."""
    totals: dict[Place, float] = {}
    for (ns, node, _owner, res), v in by.items():
        place = Place(ns, node, res)
        totals[place] = totals.get(place, 0.0) + v
    return {key: amounts.get(place, 0.0) * v / t for key, v in by.items()
            if (t := totals[place := Place(key[0], key[1], key[3])]) > 0}
