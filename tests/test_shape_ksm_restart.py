"""Shape: kube-state-metrics restarts at T0+30m as a new pod, a new `instance` (a rolling update).

The new pod is scraped from T0+25m, while the old one still answers until T0+30m (maxSurge), and the old series
carry no staleness marker (backfilled, remote-written or federated history has none), so the lookback keeps them
alive for 5 more minutes: every kube_* series is doubled from T0+25m to T0+35m. Nothing may be counted twice:
the namespace totals and pod counts are the baseline's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.localprom import PrometheusServer
from demo.synthetic import Rewrite, Sampler

from .shapes import Row, format_labels, parse_labels, served
from .test_shape_ksm_replicas import PODS, assert_allocate_gives_the_baseline, is_ksm, ksm_target, metadata

OLD = ("10.0.1.5:8080", "kube-state-metrics-6d9f7-abcde")
NEW = ("10.0.2.9:8080", "kube-state-metrics-7c4b2-klmno")


def between(fn: Sampler, first: int | None, last: int | None) -> Sampler:
    return lambda t: fn(t) if (first is None or t >= first) and (last is None or t <= last) else None


def restart(t0: int) -> Rewrite:
    """Old replica's samples up to T0+30m, the new one's from T0+25m."""
    def rewrite(rows: Iterator[Row]) -> Iterator[Row]:
        for name, lb, fn in rows:
            labels = parse_labels(lb)
            if not is_ksm(name, labels):
                yield name, lb, fn
                continue
            yield name, format_labels(ksm_target(labels, *OLD)), between(fn, None, t0 + 1800)
            yield name, format_labels(ksm_target(labels, *NEW)), between(fn, t0 + 1500, None)
    return rewrite


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    yield from served(tmp_path_factory, "shape-ksm-restart", restart)


def test_restart_gives_the_baseline(restarted: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    assert_allocate_gives_the_baseline(*restarted, tmp_path)


def test_restart_counts_each_pod_once(restarted: tuple[PrometheusServer, int]) -> None:
    assert metadata(*restarted).pod_counts == PODS
