"""The stack on VictoriaMetrics (Debian `victoria-metrics`: the single-node server runs the query engine of a
cluster's vmselect, and ships vmagent and vmalert) instead of Prometheus.

`allocate` reads the same hand-worked amounts as on Prometheus; the mixin's rules, evaluated by `vmalert`,
feed the recorded path; `serve`'s counters, scraped by `vmagent`, increase by what `allocate` computes. The
differences measured (docs/victoriametrics.md) are pinned here too: MetricsQL's `rate` does not
extrapolate, so a container that starts is charged its usage from its second sample on, where PromQL ramps
up over the rate window; and a bare selector reaches back one step, not 5 minutes, so a source's gap is
bridged from its start. The multi-cluster test runs on VictoriaMetrics too (tests/test_multicluster.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner

from demo.clusters import demo_cluster
from demo.localprom import PrometheusServer, backfill, free_port
from demo.localvm import VictoriaMetricsServer, VMAgent, VMAlert, missing_binaries
from demo.synthetic import GIB, Cluster, Container, Node, Pod
from exporter.cli import main

from .scenarios import CORE_CONFIG, WINDOW_SECONDS, core_cluster
from .test_allocate_core import EXPECTED, NODES_TOTAL, REL, run_allocate, window_arg
from .test_demo_cluster import CONTROL_PLANE, LB, PV, demo_config, network
from .test_demo_cluster import NODES as DEMO_NODES
from .test_serve import iso, wait_for

pytestmark = pytest.mark.skipif(bool(missing_binaries()), reason=f"not on PATH: {', '.join(missing_binaries())} "
                                "(Debian package victoria-metrics; .ci/run installs it)")


def scenario_vm(root: Path, cluster: Cluster, t0: int) -> VictoriaMetricsServer:
    """A VictoriaMetrics holding a scenario from 30 minutes before t0 to 10 minutes after the hour under test,
    as conftest.scenario_prom backfills a Prometheus."""
    vm = VictoriaMetricsServer(root)
    vm.start()
    try:
        vm.import_cluster(cluster, t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
    except BaseException:
        vm.stop()
        raise
    return vm


@pytest.fixture(scope="module")
def core_vm(tmp_path_factory: pytest.TempPathFactory, core_t0: int) -> Iterator[VictoriaMetricsServer]:
    vm = scenario_vm(tmp_path_factory.mktemp("core-vm"), core_cluster(core_t0), core_t0)
    yield vm
    vm.stop()


def allocate(url: str, tmp_path: Path, window: str, config: dict[str, Any] | None = None,
             **allocation: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """`allocate --format json --stats` against `url`: (the namespaces, the stats line)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**(CORE_CONFIG if config is None else config), "prometheus": {"url": url},
                                   "allocation": allocation}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(cfg), "--window", window, "--format", "json",
                                    "--stats"])
    assert res.exit_code == 0, res.output
    data: dict[str, Any] = json.loads(res.stdout)["data"][0]
    return data, json.loads(res.stderr.strip().splitlines()[-1])


def assert_core_hour(data: dict[str, Any]) -> None:
    """The core scenario's hand-worked hour (tests/test_allocate_core.py) and conservation."""
    assert set(data) == set(EXPECTED)
    for ns, exp in EXPECTED.items():
        assert data[ns]["cpuCost"] == pytest.approx(exp["cpu"], rel=REL), ns
        assert data[ns]["ramCost"] == pytest.approx(exp["memory"], rel=REL), ns
        assert data[ns]["gpuCost"] == pytest.approx(exp["gpu"], rel=REL, abs=1e-12), ns
        assert data[ns]["totalCost"] == pytest.approx(sum(exp.values()), rel=REL), ns
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL, rel=REL)


def test_allocate_on_victoriametrics_gives_the_hand_worked_amounts(core_vm: VictoriaMetricsServer, core_t0: int,
                                                                    tmp_path: Path) -> None:
    data, stats = allocate(core_vm.url, tmp_path, window_arg(core_t0))
    assert stats["chunks"] == {"recorded": 0, "raw": 1}
    assert_core_hour(data)
    # Requests 1 + 1 core and usage 0.5 + 4 cores: MetricsQL's rate of a steady counter is PromQL's.
    assert data["team-a"]["cpuCoreRequestAverage"] == pytest.approx(2.0, rel=REL)
    assert data["team-a"]["cpuCoreUsageAverage"] == pytest.approx(4.5, rel=REL)
    # batch ran 30 of 60 minutes at 2 cores, api all hour at 0.5.
    assert data["team-b"]["cpuCoreHours"] == pytest.approx(2 * 0.5 + 0.5, rel=REL)
    # Six 10-minute chunks tile the hour as on Prometheus.
    tiled, stats = allocate(core_vm.url, tmp_path, window_arg(core_t0), chunk="10m")
    assert stats["chunks"] == {"recorded": 0, "raw": 6}
    assert_core_hour(tiled)


def test_a_starting_container_is_charged_from_its_second_sample(tmp_path: Path, core_t0: int) -> None:
    """The one difference from Prometheus: `rate` without extrapolation. Under the usage policy a pod that starts
    at t0 + 10 min using 2 cores (samples every 60 s, rate over 5m) is charged, at each 1-minute step:
      - VictoriaMetrics: nothing at t0+10m (one sample, no rate), then the exact 2 cores from t0+11m: 50 steps;
      - Prometheus: extrapolates the first samples only half an interval back, over the 5-minute range, so
        (60 + 30) / 300 = 0.3, (120 + 30) / 300 = 0.5 and (180 + 30) / 300 = 0.7 of the rate at t0+11, +12
        and +13 min, then the full rate once the first sample is within 1.1 intervals of the range start:
        50 - (0.7 + 0.5 + 0.3) = 48.5 steps.
    1.5 minutes of usage per container start: 3% of this pod's hour. Conservation holds on both."""
    cluster = Cluster((Node("n1", 8, 32 * GIB, opencost={"cpu": 0.1, "ram": 0.01}),), (
        Pod("a", "steady", "n1", (Container("app", 1, GIB, 0, 1, GIB),)),
        Pod("b", "late", "n1", (Container("app", 0.5, GIB, 0, 2, GIB),), start=core_t0 + 600),
    ))
    config = {"allocation": {"policy": "usage"}}
    backfill(cluster, tmp_path / "prom", core_t0 - 1800, core_t0 + WINDOW_SECONDS + 600, 60)
    vm = scenario_vm(tmp_path / "vm", cluster, core_t0)
    try:
        with PrometheusServer(tmp_path / "prom") as prom:
            on_prom, _ = allocate(prom.url, tmp_path, window_arg(core_t0), config, policy="usage")
        on_vm, _ = allocate(vm.url, tmp_path, window_arg(core_t0), config, policy="usage")
    finally:
        vm.stop()
    nodes_total = 8 * 0.1 + 32 * 0.01  # one node, the hour
    for data, steps in ((on_vm, 50), (on_prom, 48.5)):
        assert data["b"]["cpuCoreHours"] == pytest.approx(2 * steps / 60, rel=REL)
        assert data["b"]["cpuCost"] == pytest.approx(2 * steps / 60 * 0.1, rel=REL)
        assert data["a"]["cpuCost"] == pytest.approx(1 * 0.1, rel=REL)  # steady: the same on both
        assert sum(v["totalCost"] for v in data.values()) == pytest.approx(nodes_total, rel=REL)


def test_demo_hour_on_victoriametrics_adds_up_and_bridges_the_gap_from_its_start(tmp_path: Path,
                                                                                   core_t0: int) -> None:
    """The demo cluster (sharing, volumes, load balancers, network, GPU, spot) on VictoriaMetrics: the hour is
    the hand-worked total of test_demo_cluster. Its kube-state-metrics gap (no sample strictly between t0 + 20
    and t0 + 30 min) is bridged from t0 + 21 min: a bare selector in MetricsQL reaches back one step
    (and the scrape interval), not Prometheus' 5-minute lookback, which bridges only t0 + 25 .. 29 min."""
    vm = scenario_vm(tmp_path / "vm", demo_cluster(ksm_gap_at=core_t0 + 1200), core_t0)
    try:
        body = run_allocate(demo_config(tmp_path, vm.url), window_arg(core_t0))
    finally:
        vm.stop()
    data = body["data"][0]
    total = DEMO_NODES + sum(PV.values()) + LB + network() + CONTROL_PLANE
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(total, rel=REL)
    assert data["ml"]["gpuCost"] == pytest.approx(2.5, rel=REL)  # the p3's one GPU, requested all hour
    assert data["web"]["loadBalancerCost"] == pytest.approx(0.0225, rel=REL)
    assert data["payments"]["pvCost"] == pytest.approx(PV["payments"], rel=REL)
    cov = body["coverage"]
    assert cov["bridged"] == [{"start": iso(core_t0 + 1260), "end": iso(core_t0 + 1740), "source": "ksm"}]
    assert cov["uncovered"] == [] and cov["coveredSeconds"] == 3600


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("rule_file", ["rules/generated/chargeback.rules.yaml",
                                       "rules/tests/generated/chargeback.rules.yaml"])  # the second with budgets
def test_vmalert_accepts_every_committed_rule_and_alert(rule_file: str) -> None:
    """vmalert parses each expression with MetricsQL's parser and rejects the file on any it cannot parse."""
    check = subprocess.run(["vmalert", "-dryRun", "-loggerLevel=ERROR", f"-rule={ROOT / rule_file}"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-800:]


def test_mixin_rules_evaluated_by_vmalert_feed_the_recorded_path(tmp_path: Path, core_t0: int) -> None:
    # The committed rule file (`make rules`; tests/test_rules.py keeps it equal to the mixin): the core config
    # sets only prices, so its allocation group is the default one that file holds.
    rules = ROOT / "rules/generated/chargeback.rules.yaml"
    vm = scenario_vm(tmp_path / "vm", core_cluster(core_t0), core_t0)
    try:
        # vmalert's replay evaluates the groups over history, every interval, as promtool's rule backfill does
        # (test_recorded.py): from t0 - 10 min, missing two evaluations after minute 20.
        vmalert = VMAlert(tmp_path, [rules], vm.url, vm.url)
        vmalert.replay(core_t0 - 600, core_t0 + 1200)
        vmalert.replay(core_t0 + 1320, core_t0 + WINDOW_SECONDS)
        vm.flush()
        data, stats = allocate(vm.url, tmp_path, window_arg(core_t0), chunk="10m")
        raw, raw_stats = allocate(vm.url, tmp_path, window_arg(core_t0), chunk="10m", recordedRules="off")
    finally:
        vm.stop()
    # The chunk of minutes 20-30 misses evaluations and reads raw series; the other five the recorded sums.
    assert stats["chunks"] == {"recorded": 5, "raw": 1}
    assert raw_stats["chunks"] == {"recorded": 0, "raw": 6}
    # Replay evaluates on the minute, so each step's sample saw its own minute: batch counts exactly 30
    # minutes, and the recorded hour is the hand-worked one (on Prometheus it depends on the group's phase).
    assert_core_hour(data)
    assert_core_hour(raw)
    assert data["team-a"]["cpuCoreUsageAverage"] == pytest.approx(4.5, rel=REL)  # from the recorded usage


def instant(vm: VictoriaMetricsServer, expr: str) -> dict[str, float]:
    """`expr` now, by namespace. `nocache=1`: else VictoriaMetrics answers as of 30 s ago (-search.latencyOffset)."""
    body = requests.get(f"{vm.url}/api/v1/query", params={"query": expr, "nocache": "1"}, timeout=10).json()
    assert body["status"] == "success", body
    return {r["metric"].get("namespace", ""): float(r["value"][1]) for r in body["data"]["result"]}


def test_serve_counters_scraped_by_vmagent(tmp_path: Path, core_t0: int) -> None:
    """serve reads the core scenario from VictoriaMetrics; vmagent scrapes it every second and remote-writes
    the counters back. A restart reads the watermark back from VictoriaMetrics and counts nothing twice: the
    watermark the first run published seconds before it died, not VictoriaMetrics' answer for 30 s ago."""
    vm = scenario_vm(tmp_path / "vm", core_cluster(core_t0), core_t0)
    port = free_port()
    agent = VMAgent(tmp_path, {"chargeback": f"127.0.0.1:{port}"}, vm.write_url)
    procs: list[subprocess.Popen[bytes]] = []
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(yaml.safe_dump({**CORE_CONFIG, "prometheus": {"url": vm.url}, "allocation": {"chunk": "10m"},
                                   "serve": {"interval": "1s", "lag": "3m", "listen": f"127.0.0.1:{port}",
                                             "exposeNewSeriesFor": "10s"}}))

    def serve(*args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"serve-{len(procs)}.log").open("wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config", str(cfg), *args],
                                      stdout=log, stderr=subprocess.STDOUT))
        return procs[-1]

    def watermark_stored(t: int) -> bool:
        got = instant(vm, 'max(chargeback_accrued_until_timestamp_seconds{job="chargeback"})')
        return got.get("") == t

    try:
        agent.start()
        first = serve("--start", iso(core_t0), "--until", iso(core_t0 + 1800))
        wait_for(lambda: watermark_stored(core_t0 + 1800), what="vmagent to deliver watermark t0+30m")
        time.sleep(2.5)  # a couple more scrapes of the settled values
        first.send_signal(signal.SIGKILL)
        first.wait()
        # --start is ignored: the watermark comes back from VictoriaMetrics.
        last = serve("--start", iso(core_t0 - 7200), "--until", iso(core_t0 + 3600))
        wait_for(lambda: watermark_stored(core_t0 + 3600), what="vmagent to deliver watermark t0+1h")
        time.sleep(2.5)
        assert "watermark read back from Prometheus" in (tmp_path / "serve-1.log").read_text()
        # MetricsQL's increase over the last 10 minutes (both runs, a counter reset between them) is the hour.
        got = instant(vm, 'sum by (namespace) (increase(chargeback_namespace_cost_total{job="chargeback"}[10m]))')
        assert set(got) == set(EXPECTED)
        for ns, exp in EXPECTED.items():
            assert got[ns] == pytest.approx(sum(exp.values()), rel=REL), ns
        assert sum(got.values()) == pytest.approx(NODES_TOTAL, rel=REL)
        cluster = instant(vm, 'sum(increase(chargeback_cluster_cost_total{job="chargeback"}[10m]))')
        assert cluster[""] == pytest.approx(NODES_TOTAL, rel=REL)
        # allocate over the same window, against the same store, says the same.
        data, _ = allocate(vm.url, tmp_path, window_arg(core_t0))
        for ns, amount in got.items():
            assert data[ns]["totalCost"] == pytest.approx(amount, rel=REL), ns
        # A report from the exporter's own series, between watermarks it published (t0, t0+30m, t0+1h): the
        # nodes' cost for each half hour, and per namespace what the raw metrics give.
        out = {}
        for source in ("exporter", "computed"):
            res = CliRunner().invoke(main, ["report", "--config", str(cfg), "--window", window_arg(core_t0 + 1800, 0.5),
                                            "--by", "namespace", "--format", "json", "--source", source])
            assert res.exit_code == 0, res.output
            body = json.loads(res.stdout)
            assert body["source"] == source
            out[source] = {g["namespace"]: (g["total"], g["previous"]) for g in body["groups"]}
        assert sum(now for now, _ in out["exporter"].values()) == pytest.approx(NODES_TOTAL / 2, rel=REL)
        assert sum(before for _, before in out["exporter"].values()) == pytest.approx(NODES_TOTAL / 2, rel=REL)
        for ns, (now, before) in out["computed"].items():
            assert out["exporter"][ns] == (pytest.approx(now, rel=REL), pytest.approx(before, rel=REL)), ns
        last.send_signal(signal.SIGTERM)
        assert last.wait(15) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        agent.stop()
        vm.stop()
