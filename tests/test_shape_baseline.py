"""The deployment-shape matrix's baseline (tests/shapes.py): the core scenario plus dcgm-exporter, as our
generator writes it. Every other shape must give these numbers, or say why not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from demo.localprom import PrometheusServer

from .conftest import aligned_past
from .scenarios import CORE_CONFIG
from .shapes import BASELINE_GPU_WASTE, REL, assert_baseline, shape_prom
from .test_allocate_core import run_allocate, window_arg


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    prom = shape_prom(tmp_path_factory.mktemp("shape-baseline"), t0)
    try:
        yield prom, t0
    finally:
        prom.stop()


def test_baseline_totals_and_gpu_waste(baseline: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    prom, t0 = baseline
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(dict(CORE_CONFIG, prometheus={"url": prom.url})))
    data = run_allocate(cfg, window_arg(t0))["data"][0]
    assert_baseline(data)
    for ns, waste in BASELINE_GPU_WASTE.items():
        assert data[ns]["gpuWasteCost"] == pytest.approx(waste, rel=REL), ns
    assert sum(v.get("gpuWasteCost", 0.0) for v in data.values()) == pytest.approx(1.0, rel=REL)
