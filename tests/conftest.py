"""Fixtures: a real Prometheus (Debian package) on a free loopback port, backfilled by promtool."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest
import yaml

from demo.localprom import PrometheusServer, backfill
from demo.synthetic import Cluster

from .scenarios import CORE_CONFIG, WINDOW_SECONDS, asset_cluster, core_cluster, share_cluster


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM stops the run as Ctrl-C does, so fixtures stop their Prometheus and serve processes (each in
    its own session, they would outlive pytest): `make test` stops its background OpenCost-suite process so."""
    def interrupt(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, interrupt)


def aligned_past(hours_back: int = 3) -> int:
    """An hour boundary safely in the past, so every window under test is history."""
    return int(time.time()) // 3600 * 3600 - hours_back * 3600


@pytest.fixture(scope="session")
def core_t0() -> int:
    return aligned_past()


def scenario_prom(tmp_path_factory: pytest.TempPathFactory, name: str, cluster: Cluster,
                  t0: int) -> Iterator[PrometheusServer]:
    """A Prometheus holding a scenario from 30 minutes before t0 to 10 minutes after the hour under test."""
    root = tmp_path_factory.mktemp(name)
    backfill(cluster, root / "data", t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
    with PrometheusServer(root / "data") as prom:
        yield prom


def scenario_at(tmp_path_factory: pytest.TempPathFactory, name: str,
                cluster: Callable[[int], Cluster]) -> Iterator[tuple[PrometheusServer, int]]:
    """`scenario_prom` for a cluster built around its hour under test (t0), yielding (Prometheus, t0)."""
    t0 = aligned_past()
    for prom in scenario_prom(tmp_path_factory, name, cluster(t0), t0):
        yield prom, t0


@pytest.fixture(scope="session")
def core_prom(tmp_path_factory: pytest.TempPathFactory, core_t0: int) -> Iterator[PrometheusServer]:
    yield from scenario_prom(tmp_path_factory, "core", core_cluster(core_t0), core_t0)


@pytest.fixture()
def core_config(tmp_path: Path, core_prom: PrometheusServer) -> Path:
    cfg = dict(CORE_CONFIG, prometheus={"url": core_prom.url})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def share_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    """The sharing/attribution scenario, backfilled, with the hour under test starting at t0."""
    t0 = aligned_past()
    for prom in scenario_prom(tmp_path_factory, "share", share_cluster(t0), t0):
        yield prom, t0


@pytest.fixture(scope="session")
def asset_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    """The assets scenario (price sources, PVs, load balancers, network, multi-GPU)."""
    t0 = aligned_past()
    for prom in scenario_prom(tmp_path_factory, "assets", asset_cluster(t0), t0):
        yield prom, t0


@pytest.fixture(scope="session")
def demo_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    """The cluster `make demo` runs (six teams, platform namespaces, spot, GPU, volumes, load balancers),
    with its 10-minute kube-state-metrics gap 20 minutes into the hour under test."""
    from demo.clusters import demo_cluster
    t0 = aligned_past()
    for prom in scenario_prom(tmp_path_factory, "demo", demo_cluster(ksm_gap_at=t0 + 1200), t0):
        yield prom, t0
