"""The deployment-shape matrix (issue 23): one baseline cluster, one real-stack scrape shape at a time.

The baseline is the core scenario (scenarios.core_cluster, hand-worked in test_allocate_core.EXPECTED) with
dcgm-exporter on n-gpu, team-c's trainer 50 % busy (DCP profiling). Each `tests/test_shape_*.py` backfills
the baseline through one `Rewrite` (two kube-state-metrics replicas, dcgm-exporter without honorLabels, ...)
or runs it under one condition (a low --query.max-samples, a partial answer, resolution 7m, ...), and
asserts that chargeback gives the baseline's namespace totals to 1e-9, or a one-line error or coverage
entry naming the cause. No shape may give a silently different number.

Baseline by hand for the hour (T0, T0+1h]: test_allocate_core.EXPECTED per namespace, NODES_TOTAL for the
cluster. GPU waste: team-c holds 1 of n-gpu's 4 GPUs at 2.0/GPU-h and is 50 % busy, so 2.0 x (1 - 0.5) = 1.0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.localprom import PrometheusServer, backfill
from demo.synthetic import Cluster, Rewrite, Sampler, with_dcgm

from .conftest import aligned_past
from .scenarios import WINDOW_SECONDS, core_cluster
from .test_allocate_core import NODES_TOTAL, assert_expected

REL = 1e-9
BASELINE_GPU_WASTE = {"team-c": 2.0 * (1 - 0.5)}
Row = tuple[str, str, Sampler]
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def baseline_cluster(t0: int) -> Cluster:
    """The core scenario with dcgm-exporter (DCP profiling) on n-gpu and its GPU container 50 % busy."""
    return with_dcgm(core_cluster(t0), util=0.5)


def parse_labels(lb: str) -> dict[str, str]:
    """A synthetic label string `{a="1",b="2"}` as a dict (values stay escaped, so they round-trip)."""
    return dict(_PAIR.findall(lb))


def format_labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def relabel(match: Callable[[str, dict[str, str]], bool],
            change: Callable[[dict[str, str]], list[dict[str, str]]]) -> Rewrite:
    """A rewrite that replaces each matching series by the label sets `change` returns (zero, one or more
    copies with the same samples): the building block of every shape."""
    def rewrite(rows: Iterator[Row]) -> Iterator[Row]:
        for name, lb, fn in rows:
            labels = parse_labels(lb)
            if not match(name, labels):
                yield name, lb, fn
                continue
            for out in change(dict(labels)):
                yield name, format_labels(out), fn
    return rewrite


def shape_prom(root: Path, t0: int, rewrite: Rewrite | None = None, cluster: Cluster | None = None,
               extra_args: list[str] | None = None) -> PrometheusServer:
    """A started Prometheus holding the baseline (or `cluster`) through `rewrite`, from 30 minutes before t0
    to 10 minutes after the hour under test. The caller stops it."""
    backfill(cluster or baseline_cluster(t0), root / "data", t0 - 1800, t0 + WINDOW_SECONDS + 600, 60,
             rewrite=rewrite)
    return PrometheusServer(root / "data", extra_args=extra_args).start()


def served(factory: pytest.TempPathFactory, name: str, rewrite: Callable[[int], Rewrite] | None = None,
           cluster: Callable[[int], Cluster] | None = None) -> Iterator[tuple[PrometheusServer, int]]:
    """A module fixture's body: the baseline (or `cluster(t0)`) through `rewrite(t0)` on a started Prometheus,
    with its t0; stopped after."""
    t0 = aligned_past()
    prom = shape_prom(factory.mktemp(name), t0, rewrite(t0) if rewrite else None, cluster(t0) if cluster else None)
    try:
        yield prom, t0
    finally:
        prom.stop()


def assert_baseline(data: dict[str, Any], expected: dict[str, dict[str, float]] | None = None) -> None:
    """An OpenCost-shaped allocation set (namespace -> fields) equals the hand-worked baseline (or `expected`,
    the baseline as a path reads it by construction) to 1e-9, namespace by namespace and resource by
    resource, and conserves the nodes' cost."""
    assert_expected(data, expected)
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL, rel=REL)
