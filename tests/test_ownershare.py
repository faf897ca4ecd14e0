"""Recorded amounts split between the owners of a split namespace (exporter/core/ownershare.py), by hand."""

from __future__ import annotations

import pytest

from exporter.core.ownershare import Place, StepSplit, split_totals
from exporter.vocab.labels import Attrs, UsageKey

A: Attrs = ("team-a",)
B: Attrs = ("team-b",)
NS: Attrs = ("web",)
WEB_N1_CPU = Place("web", "n1", "cpu")


def default(ns: str) -> tuple[str, ...]:
    return NS


def test_the_allocation_is_split_step_by_step() -> None:
    # Step 60: recorded 2 (after an overflow scale), a holds 3 and b 1 raw: a 1.5, b 0.5.
    # Step 120: recorded 3, only a: a 3. Chunk sums of the raw rows (a 6, b 1) would give a 6/7 x 5 = 4.2857.
    split = StepSplit()
    split.add({WEB_N1_CPU: [(60, 2.0), (120, 3.0)]},
              {("web", "n1", A, "cpu"): [(60, 3.0), (120, 3.0)], ("web", "n1", B, "cpu"): [(60, 1.0)]})
    out = split.settle(default)
    assert out == {("web", "n1", A, "cpu"): pytest.approx(4.5), ("web", "n1", B, "cpu"): pytest.approx(0.5)}
    assert sum(out.values()) == pytest.approx(5.0)


def test_a_step_no_owner_shares_goes_by_the_chunk_then_to_the_namespace() -> None:
    split = StepSplit()
    # Two sub-windows. Step 180 has a recorded 4 but no raw row (the pod the rule still saw is gone): it
    # goes by the chunk's raw amounts a 2 + 2 = 4, b 4: a 2, b 2. Steps 60 and 120 split as they come.
    split.add({WEB_N1_CPU: [(60, 1.0)]},
              {("web", "n1", A, "cpu"): [(60, 2.0)], ("web", "n1", B, "cpu"): [(60, 2.0)]})
    split.add({WEB_N1_CPU: [(120, 1.0), (180, 4.0)], Place("web", "n2", "memory"): [(120, 8.0), (180, 0.0)]},
              {("web", "n1", A, "cpu"): [(120, 2.0)], ("web", "n1", B, "cpu"): [(120, 2.0), (180, 0.0)]})
    out = split.settle(default)
    # a: 0.5 + 0.5 + 2 = 3, b: the same. n2 had no raw rows at all: its 8 go to web's own owner.
    assert out == {("web", "n1", A, "cpu"): pytest.approx(3.0), ("web", "n1", B, "cpu"): pytest.approx(3.0),
                   ("web", "n2", NS, "memory"): pytest.approx(8.0)}


def test_totals_split_by_weight_and_raw_rows_with_no_recorded_total_get_nothing() -> None:
    weights: dict[UsageKey, float] = {("web", "n1", A, "cpu"): 3.0, ("web", "n1", B, "cpu"): 1.0,
                                      ("web", "n3", A, "cpu"): 5.0}
    out = split_totals({WEB_N1_CPU: 100.0, Place("web", "n1", "memory"): 7.0}, weights, default)
    # 100 as 3 : 1; memory had no weight: web's owner. n3 has a raw row but nothing recorded: nothing.
    assert out == {("web", "n1", A, "cpu"): pytest.approx(75.0), ("web", "n1", B, "cpu"): pytest.approx(25.0),
                   ("web", "n1", NS, "memory"): pytest.approx(7.0)}
