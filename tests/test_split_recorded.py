"""A namespace split between teams, on chunks the mixin's recorded series cover.

The chunk reads the recorded per-(namespace, node) amounts for every namespace; the split namespace's
amounts are divided between its teams by raw per-pod rows of that namespace only, the allocation step
by step (exporter/core/ownershare.py). The scenario over-fills its node while one team's pod runs, and
that pod ends 5 minutes into a 10-minute chunk, so a split by the chunk's sums would give the other team
too much (chunk 3: cart 3/4 of shop's 31 2/3 core-minutes, 23.75, instead of 5 x 2 + 5 x 3 = 25).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer
from demo.synthetic import GIB, Cluster, Container, Node, Pod
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.serve.server import Exporter

from .test_allocate_core import REL, window_arg
from .test_recorded import recorded_hour, rule_phase

CPU, RAM = 0.10, 0.01  # OpenCost prices on n1: per core-hour and per GiB-hour
CLUSTER = 4 * CPU + 16 * RAM  # n1 is 4 cores and 16 GiB: 0.56 for the hour


def split_cluster(t0: int) -> Cluster:
    """One node; namespace shop has a pod of team cart and one of team pay, other is team other."""
    return Cluster(
        (Node("n1", 4, 16 * GIB, opencost={"cpu": CPU, "ram": RAM}),),
        (
            # max policy: cart is allocated its usage, 3 cores, and its request, 2 GiB.
            Pod("shop", "cart", "n1", (Container("app", 1, 2 * GIB, 0, 3, 1 * GIB),), labels={"team": "cart"}),
            # pay is allocated its requests, 2 cores and 4 GiB, until it completes at t0 + 25 min.
            Pod("shop", "pay", "n1", (Container("app", 2, 4 * GIB, 0, 1, 2 * GIB),), labels={"team": "pay"},
                end=t0 + 1500),
            Pod("other", "db", "n1", (Container("db", 1, 4 * GIB, 0, 0.5, 2 * GIB),)),
        ),
        {"shop": {"team": "shop"}, "other": {"team": "other"}},
    )


@pytest.fixture(scope="module")
def split_prom(tmp_path_factory: pytest.TempPathFactory, core_t0: int) -> Iterator[PrometheusServer]:
    with recorded_hour(tmp_path_factory.mktemp("split-recorded"), split_cluster(core_t0), core_t0) as prom:
        yield prom


def allocate(prom: PrometheusServer, tmp_path: Path, t0: int, aggregate: str, **allocation: Any
             ) -> tuple[dict[str, Any], dict[str, int]]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"},
                                   "allocation": {"chunk": "10m", **allocation}}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(cfg), "--window", window_arg(t0), "--format",
                                    "json", "--aggregate", aggregate, "--stats"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["data"][0], json.loads(res.stderr.strip().splitlines()[-1])["chunks"]


def expected(pay_steps: int) -> dict[str, dict[str, float]]:
    """Per team, CPU and memory cost, when pay is seen at `pay_steps` (m) of the 60 one-minute steps.

    While pay runs, n1's CPU allocation is cart 3 + pay 2 + db 1 = 6 > 4 cores: each is scaled by 2/3
    (cart 2, pay 4/3, db 2/3); after, 3 + 1 = 4 fits. Raw rows see pay at 25 steps; a rule sample reads
    the data of the minute before unless the group evaluates on the minute, so the recorded series see
    it at 26. At that step shop's recorded allocation, 10/3 cores and 6 GiB, goes to cart, the only one
    of shop's pods the raw rows see then.
      CPU core-minutes: cart 25 x 2 + (m - 25) x 10/3 + (60 - m) x 3; pay 25 x 4/3;
                        other m x 2/3 + (60 - m) x 1. With m = 25: 155, 33 1/3 and 51 2/3 (240, no idle).
      Memory GiB-minutes (no overflow: 2 + 4 + 4 = 10 <= 16): cart 60 x 2 + (m - 25) x 4; pay 25 x 4 = 100;
                        other 60 x 4. Idle: the rest of 16 GiB-hours.
    """
    m = pay_steps
    cpu = {"cart": 25 * 2 + (m - 25) * 10 / 3 + (60 - m) * 3, "pay": 25 * 4 / 3, "other": m * 2 / 3 + (60 - m)}
    ram = {"cart": 60 * 2 + (m - 25) * 4.0, "pay": 100.0, "other": 240.0}
    out = {team: {"cpu": cpu[team] / 60 * CPU, "memory": ram[team] / 60 * RAM} for team in cpu}
    out["__idle__"] = {"cpu": (240 - sum(cpu.values())) / 60 * CPU, "memory": (960 - sum(ram.values())) / 60 * RAM}
    return out


def check(data: dict[str, Any], want: dict[str, dict[str, float]]) -> None:
    assert set(data) == set(want)
    for team, cost in want.items():
        assert data[team]["cpuCost"] == pytest.approx(cost["cpu"], rel=REL, abs=1e-12), team
        assert data[team]["ramCost"] == pytest.approx(cost["memory"], rel=REL, abs=1e-12), team
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(CLUSTER, rel=REL)


def test_a_split_namespace_reads_recorded_amounts_split_by_team(split_prom: PrometheusServer, core_t0: int,
                                                                tmp_path: Path) -> None:
    raw, raw_chunks = allocate(split_prom, tmp_path, core_t0, "team", recordedRules="off")
    assert raw_chunks == {"recorded": 0, "raw": 6}
    check(raw, expected(25))
    # cart: 155 core-minutes, pay 33 1/3, other 51 2/3: all 4 cores, no CPU idle.
    assert raw["cart"]["cpuCost"] == pytest.approx(155 / 60 * CPU, rel=REL)

    data, chunks = allocate(split_prom, tmp_path, core_t0, "team")
    assert chunks == {"recorded": 6, "raw": 0}  # before: every chunk with shop in it read raw
    steps = 25 if rule_phase(split_prom, core_t0 + 600) == 0 else 26
    check(data, expected(steps))
    if steps == 25:
        for team in raw:
            assert data[team]["totalCost"] == pytest.approx(raw[team]["totalCost"], rel=REL)
    # Requests and usage are split by each team's raw sums over the chunk: cart requested 1 core and used
    # 3 all hour; pay 2 and 1 for 25 minutes. In chunk 3 (minutes 20-30) both requested 10 core-minutes
    # and used 30 and 5, so a recorded 26th step of pay (e = 1; 2 requested, 1 used) is split 1:1 and 6:1.
    # Averages are over each allocation's running span, as OpenCost's: cart ran the 60 minutes, pay the 25 its
    # pod was placed and running (the span reads the raw placement, so a recorded 26th step adds its amount
    # but not a minute: 51/25 = 2.04 requested, one rule phase's worth).
    e = steps - 25
    assert data["cart"]["cpuCoreRequestAverage"] == pytest.approx((60 + e) / 60, rel=REL)
    assert data["pay"]["cpuCoreRequestAverage"] == pytest.approx((50 + e) / 25, rel=REL)
    assert data["cart"]["cpuCoreUsageAverage"] == pytest.approx((180 + e * 6 / 7) / 60, rel=REL)
    assert data["pay"]["cpuCoreUsageAverage"] == pytest.approx((25 + e / 7) / 25, rel=REL)
    assert (data["cart"]["minutes"], data["pay"]["minutes"]) == (60, 25)


def test_namespaces_add_up_to_the_cluster_on_the_recorded_path(split_prom: PrometheusServer, core_t0: int,
                                                               tmp_path: Path) -> None:
    data, chunks = allocate(split_prom, tmp_path, core_t0, "namespace")
    assert chunks == {"recorded": 6, "raw": 0}
    # shop is cart + pay: 155 + 33 1/3 core-minutes and 120 + 100 GiB-minutes if the rules evaluate on the
    # minute (else 26 steps of pay: expected()).
    steps = 25 if rule_phase(split_prom, core_t0 + 600) == 0 else 26
    want = expected(steps)
    assert data["shop"]["totalCost"] == pytest.approx(
        sum(want[t]["cpu"] + want[t]["memory"] for t in ("cart", "pay")), rel=REL)
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(CLUSTER, rel=REL)


def test_pod_rows_add_up_to_the_split_teams_on_the_recorded_path(split_prom: PrometheusServer,
                                                                  core_t0: int) -> None:
    """Pod-level rows divide each (namespace, node, owner) row between its containers: on the recorded path
    too, cart's, pay's and db's rows are their teams' rows (one pod each)."""
    cfg = parse_config({"prometheus": {"url": split_prom.url}, "attribution": {"source": "prometheus"},
                        "allocation": {"chunk": "10m"}})
    ex = Exporter(cfg)
    try:
        by = {agg: {k: v["totalCost"] for k, v in ex.allocation(
            {"window": [window_arg(core_t0)], "aggregate": [agg], "accumulate": ["true"],
             "includeIdle": ["true"]})["data"][0].items()}
            for agg in ("pod", "team")}
    finally:
        ex.close()
    steps = 25 if rule_phase(split_prom, core_t0 + 600) == 0 else 26  # 26: only the recorded path gives these
    want = {team: cost["cpu"] + cost["memory"] for team, cost in expected(steps).items()}
    assert by["team"] == pytest.approx(want, rel=REL)
    assert by["pod"] == pytest.approx({"cart": want["cart"], "pay": want["pay"], "db": want["other"],
                                       "__idle__": want["__idle__"]}, rel=REL)
