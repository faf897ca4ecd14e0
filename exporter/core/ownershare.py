"""Recorded per-(namespace, node) amounts split between the owners of a namespace split between teams. Pure.

The mixin records per (namespace, node), so a namespace whose pods belong to different owners has one
recorded row per node for all of them. Raw per-pod rows of those namespaces only tell each owner's share;
the amounts stay the recorded ones, so every node's rows add up to what the recorded path reads (no
over-fill where the raw and the recorded series see a step differently).

* The allocation is split step by step: each recorded step already carries its node's overflow scale, which
  changes from step to step, so shares summed over a chunk would give an owner who ran only at over-filled
  steps too much. Requests and usage are never scaled, so their chunk sums split them exactly.
* Where the raw rows give no share (every owner's amount is 0: the step where a rule sample still saw a pod
  that the raw query, evaluated at the step's end, no longer sees), the amount goes by the owners' shares
  of that (namespace, node, resource) over the whole chunk, and failing any, to the namespace's owner
  (`Owners.of(namespace)`, the one its unlabelled pods get). So every recorded amount lands on an owner.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from exporter.vocab.labels import Attrs, UsageKey

Samples = Sequence[tuple[float, float]]  # (step time, value)


class Place(NamedTuple):
    """A recorded row: what the mixin's series are keyed by."""

    namespace: str
    node: str
    resource: str


def split_totals(totals: Mapping[Place, float], weights: Mapping[UsageKey, float],
                 default: Callable[[str], Attrs]) -> dict[UsageKey, float]:
    """Each total split between the owners in proportion to their `weights` at the same place; a total with
    no positive weight goes to `default(namespace)`. The parts add up to the totals."""
    by_place: dict[Place, dict[Attrs, float]] = {}
    for (ns, node, owner, res), weight in weights.items():
        if weight > 0:
            shares = by_place.setdefault(Place(ns, node, res), {})
            shares[owner] = shares.get(owner, 0.0) + weight
    out: dict[UsageKey, float] = {}
    for place, total in totals.items():
        owners = by_place.get(place) or {default(place.namespace): 1.0}
        whole = sum(owners.values())
        for owner, weight in owners.items():
            key = (place.namespace, place.node, owner, place.resource)
            out[key] = out.get(key, 0.0) + total * weight / whole
    return out


@dataclass
class StepSplit:
    """The recorded allocation split by the owners' raw per-step amounts, fed sub-window by sub-window."""

    amounts: dict[UsageKey, float] = field(default_factory=dict)
    weights: dict[UsageKey, float] = field(default_factory=dict)  # each owner's raw amount over the chunk
    unshared: dict[Place, float] = field(default_factory=dict)  # recorded at steps where no owner had any

    def add(self, recorded: Mapping[Place, Samples], owned: Mapping[UsageKey, Samples]) -> None:
        """`recorded`: per place and step, the amount to split; `owned`: per owner and step, its raw amount."""
        per_place: dict[Place, dict[Attrs, dict[float, float]]] = {}
        for key, samples in owned.items():
            ns, node, owner, res = key
            steps = per_place.setdefault(Place(ns, node, res), {}).setdefault(owner, {})
            for t, v in samples:
                if v > 0:
                    steps[t] = steps.get(t, 0.0) + v
                    self.weights[key] = self.weights.get(key, 0.0) + v
        for place, samples in recorded.items():
            owners = per_place.get(place, {})
            for t, v in samples:
                parts = {owner: steps[t] for owner, steps in owners.items() if t in steps}
                whole = sum(parts.values())
                if whole <= 0:
                    if v:
                        self.unshared[place] = self.unshared.get(place, 0.0) + v
                    continue
                for owner, part in parts.items():
                    key = (place.namespace, place.node, owner, place.resource)
                    self.amounts[key] = self.amounts.get(key, 0.0) + v * part / whole

    def settle(self, default: Callable[[str], Attrs]) -> dict[UsageKey, float]:
        """The split amounts, with what no step could share split by the chunk's weights (`split_totals`)."""
        out = dict(self.amounts)
        for key, v in split_totals(self.unshared, self.weights, default).items():
            out[key] = out.get(key, 0.0) + v
        return out
