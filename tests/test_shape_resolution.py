"""The deployment-shape matrix: the time grid. `allocation.resolution: 7m`, and recording rules whose interval
is not the resolution.

7m does not divide a day (86400 / 420 = 205.7): subquery steps are aligned to the epoch, so no day, `today`
or serve piece would start on a step. The config is refused when it loads, in one line naming
`allocation.resolution`. On main (9b1b2e4) `resolution: 7m` alone failed naming the wrong key ("allocation:
Value error, chunk (1h) must be a whole multiple of resolution (7m)"); with `chunk: 7h` it was accepted, and
`allocate` over the baseline hour 01:00..02:00 UTC answered (00:55, 01:58], 9 steps of 7 minutes:
9.732612 in all instead of 9.269154 (team-a 0.18375 instead of 0.175), exit 0, no warning.

The mixin's allocation rules recorded every 2 m (half the steps hold no evaluation), or every 30 s with a
minute's evaluations missed, while the resolution is 1 m: the chunk reads raw series, with a warning naming
the steps held and the rule interval, and gives exactly the baseline. (Every 30 s with no evaluation missed,
every step holds one and the recorded series are read: each step reads its last sample.) On main a 30 s
interval passed the heartbeat check (120 evaluations >= 60 steps), so a minute whose evaluations were
missed (here (t0+20m, t0+22m], as after a Prometheus restart) had no recorded allocation: its cost went
to __idle__ (team-a 0.169167 instead of 0.175, team-c 2.39904 instead of 2.4128, __idle__ 6.671384 instead
of 6.650772); a 2 m interval fell back to raw silently (the baseline, no warning).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer, backfill_rules
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.mixin.budgets import allocation_rules

from .conftest import aligned_past
from .scenarios import CORE_CONFIG
from .shapes import assert_baseline, shape_prom
from .test_allocate_core import window_arg


def config_file(tmp_path: Path, url: str, **allocation: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**CORE_CONFIG, "prometheus": {"url": url}, "allocation": allocation}))
    return path


@pytest.mark.parametrize("allocation", [{"resolution": "7m"}, {"resolution": "7m", "chunk": "7h"}])
def test_a_resolution_that_does_not_divide_a_day_is_refused_naming_the_key(
        tmp_path: Path, allocation: dict[str, str]) -> None:
    cfg = config_file(tmp_path, "http://127.0.0.1:1", **allocation)
    for command in (["allocate", "--window", "1h"], ["serve"], ["rules", "--out", str(tmp_path / "out")]):
        res = CliRunner().invoke(main, [*command, "--config", str(cfg)])
        assert res.exit_code == 2, (command, res.output)
        [line] = res.stderr.splitlines()
        assert line.startswith("chargeback: error: ") and "allocation.resolution" in line and "7m" in line
        assert "does not divide 24h" in line


def test_a_chunk_that_is_no_multiple_of_the_resolution_names_chunk(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, "http://127.0.0.1:1", resolution="2m", chunk="61m")
    res = CliRunner().invoke(main, ["allocate", "--window", "1h", "--config", str(cfg)])
    assert res.exit_code == 2
    [line] = res.stderr.splitlines()
    assert "allocation.chunk" in line and "61m" in line and "allocation.resolution (2m)" in line


@pytest.fixture(scope="module")
def rules_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int, Path]]:
    t0 = aligned_past()
    root = tmp_path_factory.mktemp("shape-resolution")
    prom = shape_prom(root, t0)
    try:
        yield prom, t0, root
    finally:
        prom.stop()


def record(prom: PrometheusServer, root: Path, interval: str, spans: list[tuple[int, int]]) -> None:
    """The mixin's allocation rules for the baseline config, evaluated every `interval` over `spans`."""
    rules = allocation_rules(parse_config(CORE_CONFIG))
    for group in rules["groups"]:
        group["interval"] = interval
    path = root / f"rules-{interval}.yaml"
    path.write_text(yaml.safe_dump(rules))
    for start, end in spans:
        backfill_rules(prom, path, start, end)


def allocate(cfg: Path, window: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    res = CliRunner().invoke(main, ["allocate", "--config", str(cfg), "--window", window, "--format", "json",
                                    "--stats"])
    assert res.exit_code == 0, res.output
    *lines, stats = res.stderr.strip().splitlines()
    return json.loads(res.stdout)["data"][0], "\n".join(lines), json.loads(stats)


def test_rules_recorded_at_another_interval_are_read_raw_with_a_warning(
        rules_prom: tuple[PrometheusServer, int, Path], tmp_path: Path) -> None:
    prom, t0, root = rules_prom
    cfg = config_file(tmp_path, prom.url)
    # Every 2 minutes over the whole hour: half the steps hold no evaluation.
    record(prom, root, "2m", [(t0 - 600, t0 + 3600)])
    data, warnings, stats = allocate(cfg, window_arg(t0))
    assert stats["chunks"] == {"recorded": 0, "raw": 1}
    assert "30 of 60 steps" in warnings and "reading raw series" in warnings, warnings
    assert_baseline(data)


def test_rules_recorded_more_often_than_the_resolution_with_a_missed_minute_are_read_raw(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Every 30 s, with the evaluations of (t0+20m, t0+22m] missed: no step may go to __idle__."""
    t0 = aligned_past()
    root = tmp_path_factory.mktemp("shape-resolution-30s")
    prom = shape_prom(root, t0)
    try:
        record(prom, root, "30s", [(t0 - 600, t0 + 1200), (t0 + 1320, t0 + 3600)])
        data, warnings, stats = allocate(config_file(tmp_path, prom.url), window_arg(t0))
    finally:
        prom.stop()
    assert stats["chunks"] == {"recorded": 0, "raw": 1}
    assert "more often than allocation.resolution (1m)" in warnings and "reading raw series" in warnings, warnings
    assert_baseline(data)
