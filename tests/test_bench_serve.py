"""Smoke test of `python -m bench.serve` (serve at the Kubernetes envelope) at a tiny size.

The bench's figures are only worth printing if its serve cycles measure what they claim: one step each,
read from the recorded series (not raw), by both the accrual child and a real `chargeback serve`. No
timing is asserted: scale targets live in the benchmark.
"""

from __future__ import annotations

from pathlib import Path

from bench.serve import run, summary


def test_serve_bench_cycles_read_the_recorded_series(tmp_path: Path) -> None:
    row = run(600, nodes=10, namespaces=5, minutes=13, cycles=2, root=tmp_path)
    # 600 containers = 300 pods; two cycles, each one step (60 s) from serve.start = end - 2 steps.
    assert row["pods"] == 300
    cycles = row["cycles"]
    assert [c.end - cycles[0].end for c in cycles] == [0, 60]
    assert [(c.recorded, c.raw) for c in cycles] == [(1, 0), (1, 0)]
    assert all(c.queries > 0 for c in cycles)
    assert row["raw"]["queries"] > 0 and row["rules"]["prometheus_s"] > 0
    assert row["serve_rss_mb"] > 0 and row["real_serve_rss_mb"] > 0
    assert summary(row).startswith("serve at 600 containers / 10 nodes (300 pods, 5 namespaces")
