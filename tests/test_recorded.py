"""Long windows from the mixin's recorded per-(namespace, node) series.

The allocation rules are rendered from the mixin, backfilled over the core scenario with
`promtool tsdb create-blocks-from rules`, and must give `allocate` the numbers of the raw path:
the hand-worked amounts of test_allocate_core, and conservation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer, backfill, backfill_rules
from demo.synthetic import Cluster
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.mixin.budgets import allocation_rules
from exporter.sources.allocsteps import step_expr
from exporter.sources.queries import Queries
from exporter.sources.recordedqueries import RECORDED_PARTS, RULES_EVALUATED
from exporter.sources.recordrules import deprecated_rules

from .scenarios import CORE_CONFIG, WINDOW_SECONDS, core_cluster, share_cluster
from .test_allocate_core import D_SPOT_CPU, D_SPOT_RAM, EXPECTED, NODES_TOTAL, REL, window_arg


@pytest.fixture(scope="module")
def recorded_prom(tmp_path_factory: pytest.TempPathFactory, core_t0: int) -> Iterator[PrometheusServer]:
    """The core scenario, with the allocation rules evaluated from t0 - 10 min to the hour's end only,
    and two evaluations missed after minute 20 (as if Prometheus had restarted)."""
    root = tmp_path_factory.mktemp("recorded")
    backfill(core_cluster(core_t0), root / "data", core_t0 - 1800, core_t0 + WINDOW_SECONDS + 600, 60)
    rules = root / "allocation.rules.yaml"
    rules.write_text(yaml.safe_dump(allocation_rules(parse_config(CORE_CONFIG))))
    prom = PrometheusServer(root / "data").start()
    try:
        backfill_rules(prom, rules, core_t0 - 600, core_t0 + 1200)
        backfill_rules(prom, rules, core_t0 + 1320, core_t0 + WINDOW_SECONDS)
        yield prom
    finally:
        prom.stop()


@contextmanager
def recorded_hour(root: Path, cluster: Cluster, t0: int) -> Iterator[PrometheusServer]:
    """`cluster`'s hour from t0 on a Prometheus, with the default allocation rules recorded over it."""
    backfill(cluster, root / "data", t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
    rules = root / "allocation.rules.yaml"
    rules.write_text(yaml.safe_dump(allocation_rules(parse_config({}))))
    with PrometheusServer(root / "data") as prom:
        backfill_rules(prom, rules, t0 - 600, t0 + WINDOW_SECONDS)
        yield prom


def allocate(prom: PrometheusServer, tmp_path: Path, window: str, **allocation: Any) -> tuple[dict[str, Any], Any]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**CORE_CONFIG, "prometheus": {"url": prom.url}, "allocation": allocation}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(cfg), "--window", window, "--format", "json",
                                    "--stats"])
    assert res.exit_code == 0, res.output
    data: dict[str, Any] = json.loads(res.stdout)["data"][0]
    return data, json.loads(res.stderr.strip().splitlines()[-1])


def same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert set(a) == set(b)
    for ns in a:
        for key, value in a[ns].items():
            if isinstance(value, float):
                assert value == pytest.approx(b[ns][key], rel=1e-12, abs=1e-15), (ns, key)
            else:
                assert value == b[ns][key], (ns, key)


def rule_phase(prom: PrometheusServer, at: int) -> int:
    """Milliseconds past the minute at which the rule group evaluates (Prometheus and promtool offset
    each group by a hash of its name and file, so the phase differs from run to run)."""
    body = requests.get(f"{prom.url}/api/v1/query", params={
        "query": "cluster:chargeback_allocation_rules_evaluated:count[1m]", "time": str(at)}, timeout=10).json()
    [series] = body["data"]["result"]
    return round(float(series["values"][-1][0]) * 1000) % 60000  # milliseconds


def test_recorded_hour_gives_the_hand_worked_amounts(recorded_prom: PrometheusServer, core_t0: int,
                                                     tmp_path: Path) -> None:
    data, stats = allocate(recorded_prom, tmp_path, window_arg(core_t0), chunk="10m")
    # Minutes 20-30 miss two rule evaluations: that chunk reads raw series, the other five recorded ones.
    assert stats["chunks"] == {"recorded": 5, "raw": 1}
    assert_recorded_hour(recorded_prom, core_t0, tmp_path, data)


def assert_recorded_hour(recorded_prom: PrometheusServer, core_t0: int, tmp_path: Path, data: dict[str, Any]
                         ) -> None:
    """The core hour's amounts on recorded series: by hand, and the steady namespaces' the raw path's to 1e-12."""
    # Each step reads the rule sample of its own minute. Unless the group evaluates on the minute,
    # that sample saw the data of the minute before: batch (ending at t0 + 30 min) then counts 31
    # one-minute steps instead of 30. Steady pods are the same either way.
    minutes = 30 if rule_phase(recorded_prom, core_t0 + 600) == 0 else 31
    team_b = {"cpu": (2 * minutes / 60 + 0.5) * D_SPOT_CPU, "memory": (4 * minutes / 60 + 1) * D_SPOT_RAM}
    idle_cpu = EXPECTED["__idle__"]["cpu"] - (team_b["cpu"] - EXPECTED["team-b"]["cpu"])
    idle_ram = EXPECTED["__idle__"]["memory"] - (team_b["memory"] - EXPECTED["team-b"]["memory"])
    expected = {**EXPECTED, "team-b": {**team_b, "gpu": 0.0},
                "__idle__": {"cpu": idle_cpu, "memory": idle_ram, "gpu": EXPECTED["__idle__"]["gpu"]}}
    for ns, exp in expected.items():
        assert data[ns]["cpuCost"] == pytest.approx(exp["cpu"], rel=REL), ns
        assert data[ns]["ramCost"] == pytest.approx(exp["memory"], rel=REL), ns
        assert data[ns]["totalCost"] == pytest.approx(sum(exp.values()), rel=REL), ns
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL, rel=REL)
    # Requests and usage (efficiency, averages) come from the recorded series too.
    assert data["team-a"]["cpuCoreRequestAverage"] == pytest.approx(2.0, rel=REL)
    assert data["team-a"]["cpuCoreUsageAverage"] == pytest.approx(4.5, rel=REL)
    raw, raw_stats = allocate(recorded_prom, tmp_path, window_arg(core_t0), chunk="10m", recordedRules="off")
    assert raw_stats["chunks"] == {"recorded": 0, "raw": 6}
    steady = {ns: v for ns, v in data.items() if ns not in ("team-b", "__idle__")}
    same(steady, {ns: raw[ns] for ns in steady})


def test_chunks_the_rules_do_not_cover_are_read_raw(recorded_prom: PrometheusServer, core_t0: int,
                                                    tmp_path: Path) -> None:
    # The rules ran from t0 - 10 min: of the half hour before t0 in 10-minute chunks, only the last is covered.
    data, stats = allocate(recorded_prom, tmp_path, window_arg(core_t0 - 1800, 0.5), chunk="10m")
    assert stats["chunks"] == {"recorded": 1, "raw": 2}
    raw, _ = allocate(recorded_prom, tmp_path, window_arg(core_t0 - 1800, 0.5), chunk="10m", recordedRules="off")
    same(data, raw)
    # Chunks of under five steps (serve's cycles) read raw series without asking for the heartbeat.
    _, short = allocate(recorded_prom, tmp_path, window_arg(core_t0, 3 / 60), chunk="1m")
    assert short["chunks"] == {"recorded": 0, "raw": 3}


def test_rules_recorded_under_another_policy_are_not_read(recorded_prom: PrometheusServer, core_t0: int,
                                                          tmp_path: Path) -> None:
    # Recorded for `max`; a `request` config must not read them. team-a requests 1 + 1 cores on a spot node.
    data, stats = allocate(recorded_prom, tmp_path, window_arg(core_t0), policy="request")
    assert stats["chunks"] == {"recorded": 0, "raw": 1}
    assert data["team-a"]["cpuCost"] == pytest.approx(2 * 0.04, rel=REL)
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL, rel=REL)


@pytest.mark.parametrize("allocation", [
    {"policy": "max"}, {"policy": "request"}, {"policy": "usage", "usageRateWindow": "3m"},
    {"policy": "weighted", "requestWeight": 0.6, "resolution": "30s", "chunk": "30m"},
])
def test_mixin_records_exactly_what_the_exporter_reads(allocation: dict[str, Any]) -> None:
    cfg = parse_config({"allocation": allocation, "prometheus": {"ksmSelector": 'job="kube-state-metrics"',
                                                                 "cadvisorSelector": 'job="kubelet"'}})
    [group] = allocation_rules(cfg)["groups"]
    q = Queries(cfg.prometheus, cfg.allocation)
    policy = "weighted:0.6" if allocation["policy"] == "weighted" else allocation["policy"]
    labels = {"policy": policy, "usage_rate_window": cfg.allocation.usageRateWindow}
    # One labelled record for CPU and memory (one placement join), with the raw path's one-pass rows over both
    # (no node capacity), each row's `resource` its own; the heartbeat; the deprecated per-pair names, derived
    # from the record by selection.
    assert [(r["record"], r["labels"], r["expr"]) for r in group["rules"][:2]] == [
        (RECORDED_PARTS, labels, step_expr(q, ("cpu", "memory"), capacity=False)),
        (RULES_EVALUATED, {**labels, "layout": "v2"}, "vector(1)")]
    assert {r["record"]: (r["labels"], r["expr"]) for r in group["rules"][2:]} == {
        name: (labels, expr) for name, expr in deprecated_rules(q).items()}
    assert group["interval"] == cfg.allocation.resolution


def test_rules_command_renders_the_allocation_rules_for_a_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"allocation": {"policy": "request", "resolution": "5m", "chunk": "1h"}}))
    res = CliRunner().invoke(main, ["rules", "--config", str(cfg), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    groups = yaml.safe_load((tmp_path / "out" / "chargeback.rules.yaml").read_text())["groups"]
    [group] = [g for g in groups if g["name"] == "chargeback-allocation.rules"]
    assert group["interval"] == "5m"
    assert {r["labels"]["policy"] for r in group["rules"]} == {"request"}
    # A bad config is one line naming the key, as everywhere.
    cfg.write_text(yaml.safe_dump({"allocation": {"policy": "median"}}))
    res = CliRunner().invoke(main, ["rules", "--config", str(cfg), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and res.stderr.startswith("chargeback: error: ") and "allocation.policy" in res.stderr


def test_a_namespace_split_between_teams_reads_recorded_series(tmp_path_factory: pytest.TempPathFactory,
                                                                core_t0: int, tmp_path: Path) -> None:
    """web's pods belong to two teams: its chunks read the recorded amounts like the others, split between
    the teams by raw per-pod rows of web only (before, such chunks read raw series throughout)."""
    with recorded_hour(tmp_path_factory.mktemp("recorded-split"), share_cluster(core_t0), core_t0) as prom:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"},
                                       "allocation": {"chunk": "10m"}}))
        res = CliRunner().invoke(main, ["allocate", "--config", str(cfg), "--window", window_arg(core_t0),
                                        "--format", "json", "--aggregate", "team", "--stats"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stderr.strip().splitlines()[-1])["chunks"] == {"recorded": 6, "raw": 0}
    teams = {k: v["totalCost"] for k, v in json.loads(res.stdout)["data"][0].items()}
    # Pods cost cpu x 0.10 + GiB x 0.01 an hour: web-a's frontend (1 core, 2 GiB), web-b's admin (0.5, 1).
    assert teams["web-a"] == pytest.approx(1 * 0.10 + 2 * 0.01, rel=REL)
    assert teams["web-b"] == pytest.approx(0.5 * 0.10 + 1 * 0.01, rel=REL)
    assert sum(teams.values()) == pytest.approx(2.24, rel=REL)
