"""Shape: a low `--query.max-samples` (issue 23), on the baseline (tests/shapes.py).

With --query.max-samples=1000 the baseline Prometheus refuses the hour's coverage probe and its one-pass
query (HTTP 422, "query processing would load too many samples into memory"). On main that was the
run's end: exit 2 and that one-line error. Now the refused probe and chunk are asked again in halves
(the hour in half hours, then in quarters), and the numbers are the baseline's to 1e-9, with one
warning line naming the split. Past one resolution step there is nothing left to split: a one-line
error names the limit.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from demo.localprom import PrometheusServer

from .conftest import aligned_past
from .console import CHARGEBACK
from .scenarios import CORE_CONFIG
from .shapes import assert_baseline, shape_prom
from .test_allocate_core import window_arg


def _prom(tmp_path_factory: pytest.TempPathFactory, limit: int) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    prom = shape_prom(tmp_path_factory.mktemp(f"shape-max-samples-{limit}"), t0,
                      extra_args=[f"--query.max-samples={limit}"])
    try:
        yield prom, t0
    finally:
        prom.stop()


@pytest.fixture(scope="module")
def low_limit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    yield from _prom(tmp_path_factory, 1000)


def allocate(prom: PrometheusServer, t0: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(dict(CORE_CONFIG, prometheus={"url": prom.url})))  # chunk: 1h (the default)
    return subprocess.run([CHARGEBACK, "allocate", "--config", str(cfg), "--window", window_arg(t0),
                           "--format", "json"], capture_output=True, text=True, timeout=300)


def test_refused_chunks_are_split_and_give_the_baseline(low_limit: tuple[PrometheusServer, int],
                                                        tmp_path: Path) -> None:
    prom, t0 = low_limit
    run = allocate(prom, t0, tmp_path)
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    assert_baseline(body["data"][0])
    assert body["coverage"]["coveredSeconds"] == 3600 and not body["coverage"]["uncovered"]
    said = [line for line in run.stderr.splitlines() if "sample limit" in line]
    assert len(said) == 1, run.stderr  # said once, however many pieces were split
    assert "--query.max-samples" in said[0] and "split in halves" in said[0] and "allocation.chunk" in said[0]


def test_one_step_over_the_limit_is_a_one_line_error(tmp_path_factory: pytest.TempPathFactory,
                                                     tmp_path: Path) -> None:
    # One step of the one-pass query, an instant query, loads 81-90 samples here; the coverage probe 61-70.
    for prom, t0 in _prom(tmp_path_factory, 75):
        run = allocate(prom, t0, tmp_path)
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("chargeback: error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "sample limit" in errors[0] and "even one resolution step (1m)" in errors[0], errors[0]
