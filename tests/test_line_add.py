"""`Line.add`, the merge of a chunk's cost-table row into the window's: sums to the bit, and a field that adds
zero keeps its float object, so that a merged row holds no float of its own per zero field (docs/scale.md,
"allocate at 100k on the main of 2026-12-06 (4th stop)")."""

from __future__ import annotations

import math
import tracemalloc

from exporter.core.allocation import Line


def bits(x: float) -> tuple[float, float]:
    """A float and its sign, so that 0.0 and -0.0 compare unequal."""
    return x, math.copysign(1.0, x)


def test_sums_to_the_bit_including_the_sign_of_zero() -> None:
    # IEEE 754: x + (+-0.0) is x for x != 0; +0 + +0 = +0, +0 + -0 = +0, -0 + +0 = +0, -0 + -0 = -0.
    cases = [(0.1, 0.2, 0.30000000000000004), (2.5, 0.0, 2.5), (2.5, -0.0, 2.5), (-1.25, 0.0, -1.25),
             (0.0, 0.0, 0.0), (0.0, -0.0, 0.0), (-0.0, 0.0, 0.0), (-0.0, -0.0, -0.0), (0.0, 3.0, 3.0),
             (-0.0, -3.0, -3.0), (1e300, 1e300, 2e300), (1.0, -1.0, 0.0)]
    for mine, other, want in cases:
        line = Line(cpu_cost=mine, ram_cost=mine)
        line.add(Line(cpu_cost=other, ram_cost=other))
        assert bits(line.cpu_cost) == bits(want), (mine, other)
        assert bits(line.ram_cost) == bits(want), (mine, other)


def test_a_zero_field_keeps_its_float_and_the_span_joins() -> None:
    held = 1234.5
    line = Line(cpu_core_seconds=held, run_start=100.0, run_end=200.0)
    line.add(Line(ram_cost=0.5, run_start=50.0, run_end=150.0))
    assert line.cpu_core_seconds is held  # held + 0.0 stored as a new float object before
    assert line.ram_cost == 0.5
    assert line.gpu_cost == 0.0
    assert (line.run_start, line.run_end) == (50.0, 200.0)


def test_a_merged_row_costs_what_a_fresh_one_does() -> None:
    """The first 10 of the 29 summed fields set, about as many as a cost-table row sets: merging a second such
    row into each of 2,000 rows allocates no float per zero field (19 x 24 bytes a row = 912,000 bytes, before)."""
    def row() -> Line:
        return Line(*(float(i + 1) for i in range(10)))

    lines = [row() for _ in range(2000)]
    others = [row() for _ in range(2000)]
    tracemalloc.start()
    try:
        for line, other in zip(lines, others, strict=True):
            line.add(other)
        grown = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # The 10 summed fields get new floats (10 x 24 x 2,000 = 480,000 bytes) and free their old ones, which
    # were allocated before tracing began, so the traced size grows by about 480,000 bytes; 19 more floats
    # a row would add 912,000.
    assert grown < 600_000
