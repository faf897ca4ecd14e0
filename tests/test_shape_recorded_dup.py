"""Shape: replicated recorded series. Two Prometheus servers of an HA pair write the same allocation rules into
one store (Thanos without a replica label, or two vmalert instances into VictoriaMetrics): each recorded series
twice, identical but for an extra label (each server's own external label, prometheus="a" / "b", not declared as a
replica label), or with no label to tell them apart (one series holding both servers' samples, at two phases).

The recorded path must read each (namespace, node) once: the baseline's totals, exactly, with every chunk recorded.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer, backfill, backfill_rules
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.mixin.budgets import allocation_rules

from .conftest import aligned_past
from .scenarios import CORE_CONFIG, WINDOW_SECONDS
from .shapes import assert_baseline, baseline_cluster
from .test_allocate_core import D_SPOT_CPU, D_SPOT_RAM, EXPECTED, window_arg
from .test_shape_ksm_replicas import assert_gpu_waste


def phases(prom: PrometheusServer, at: int) -> set[int]:
    """Milliseconds past the minute of the heartbeat sample each step reads, per recorded series (promtool, as
    Prometheus, offsets a group's evaluations by a hash of its name and file)."""
    body = requests.get(f"{prom.url}/api/v1/query", params={
        "query": "cluster:chargeback_allocation_rules_evaluated:count[59999ms]", "time": str(at)}, timeout=10).json()
    return {round(float(s["values"][-1][0]) * 1000) % 60000 for s in body["data"]["result"]}


def recorded_baseline(minutes: int) -> dict[str, dict[str, float]]:
    """The baseline as recorded series give it (tests/test_recorded.py): a step reads the rule sample of its own
    minute, which saw the data of the minute before unless the group evaluates on the minute. team-b's batch (2
    cores, 4 GiB on n-spot, running to T0+30m) then counts 31 one-minute steps instead of 30, out of n-spot's
    idle; every other pod is steady. Replicas read at different phases: `max` keeps the one that saw it running."""
    b = {"cpu": (2 * minutes / 60 + 0.5) * D_SPOT_CPU, "memory": (4 * minutes / 60 + 1) * D_SPOT_RAM, "gpu": 0.0}
    idle = EXPECTED["__idle__"]
    return {**EXPECTED, "team-b": b,
            "__idle__": {"cpu": idle["cpu"] - (b["cpu"] - EXPECTED["team-b"]["cpu"]),
                         "memory": idle["memory"] - (b["memory"] - EXPECTED["team-b"]["memory"]), "gpu": idle["gpu"]}}


def rules_with(labels: dict[str, str]) -> dict[str, Any]:
    rules = copy.deepcopy(allocation_rules(parse_config(CORE_CONFIG)))
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["labels"] = {**rule.get("labels", {}), **labels}
    return rules


@pytest.fixture(scope="module", params=["extra-label", "same-labels"])
def recorded_twice(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[PrometheusServer, int]]:
    """The baseline's hour, its allocation rules recorded twice: by "a" and "b" (extra-label), or by two
    servers whose samples land in one series at two phases (same-labels)."""
    t0 = aligned_past()
    root = tmp_path_factory.mktemp(f"shape-recorded-{request.param}")
    backfill(baseline_cluster(t0), root / "data", t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
    # An HA pair loads one rule file at one path: the same phase. Two vmalert instances need not: another file.
    files = [root / "a" / "allocation.rules.yaml", root / ("a" if request.param == "extra-label" else "b") /
             "allocation.rules.yaml"]
    labels = ({"prometheus": "a"}, {"prometheus": "b"}) if request.param == "extra-label" else ({}, {})
    with PrometheusServer(root / "data") as prom:
        for path, extra in zip(files, labels, strict=True):
            path.parent.mkdir(exist_ok=True)
            path.write_text(yaml.safe_dump(rules_with(extra)))
            backfill_rules(prom, path, t0 - 600, t0 + WINDOW_SECONDS)
        yield prom, t0


def test_recorded_twice_gives_the_baseline(recorded_twice: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    prom, t0 = recorded_twice
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**CORE_CONFIG, "prometheus": {"url": prom.url}, "allocation": {"chunk": "10m"}}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(cfg), "--window", window_arg(t0), "--format", "json",
                                    "--stats"])
    assert res.exit_code == 0, res.output
    # The heartbeat is recorded twice a minute: two series (extra-label) or two phases of one (same-labels).
    body = requests.get(f"{prom.url}/api/v1/query", params={
        "query": "count_over_time(cluster:chargeback_allocation_rules_evaluated:count[59999ms])",
        "time": str(t0 + 600)}, timeout=10).json()
    assert sorted(float(s["value"][1]) for s in body["data"]["result"]) in ([1.0, 1.0], [2.0])
    assert json.loads(res.stderr.strip().splitlines()[-1])["chunks"] == {"recorded": 6, "raw": 0}
    data = json.loads(res.stdout)["data"][0]
    assert_baseline(data, recorded_baseline(30 if phases(prom, t0 + 600) == {0} else 31))
    assert_gpu_waste(data)
