"""`chargeback serve` against a real Prometheus that scrapes it: restart, outage, endpoints, metric hygiene."""

from __future__ import annotations

import itertools
import json
import os
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
from prometheus_client.parser import text_string_to_metric_families

from demo.localprom import PrometheusServer, backfill, free_port
from exporter.config.schema import parse_config
from exporter.serve.accrual import NamespaceKey
from exporter.serve.server import Exporter

from .scenarios import CORE_CONFIG, WINDOW_SECONDS, core_cluster
from .test_allocate_core import EXPECTED, NODES_TOTAL, REL, window_arg


def iso(t: int) -> str:
    return window_arg(t, 0).split(",")[0]


def wait_for(pred: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def wait_scraping(url: str, job: str = "chargeback") -> None:
    """Wait until Prometheus runs its scrape loop for `job` (it starts a few seconds after Prometheus does).

    The exporter shows a new series at 0 for serve.exposeNewSeriesFor on its own clock; a Prometheus
    that only starts scraping after that misses the 0, as it would for a pod discovered too late.
    """
    def scraping() -> bool:
        body = requests.get(f"{url}/api/v1/query", params={"query": f'up{{job="{job}"}}'}, timeout=10).json()
        return bool(body["data"]["result"])
    wait_for(scraping, what=f"Prometheus {url} to scrape job {job}")


class Stack:
    """A Prometheus holding the core scenario and scraping an exporter port every second."""

    def __init__(self, root: Path, t0: int) -> None:
        self.t0 = t0
        self.port = free_port()
        self.root = root
        backfill(core_cluster(t0), root / "data", t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
        self.prom = PrometheusServer(root / "data", {"chargeback": f"127.0.0.1:{self.port}"}, "1s").start()
        wait_scraping(self.prom.url)
        cfg = dict(CORE_CONFIG, prometheus={"url": self.prom.url},
                   allocation={"chunk": "10m"},
                   serve={"interval": "1s", "lag": "3m", "listen": f"127.0.0.1:{self.port}",
                          "exposeNewSeriesFor": "10s"})
        self.config = root / "serve.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.procs: list[subprocess.Popen[str]] = []

    def serve(self, *args: str) -> subprocess.Popen[str]:
        log = (self.root / f"serve-{len(self.procs)}.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config", str(self.config), *args],
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)
        return proc

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = requests.get(f"{self.prom.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def scraped_watermark(self) -> float | None:
        rows = self.query('chargeback_accrued_until_timestamp_seconds{job="chargeback"}')
        return float(rows[0]["value"][1]) if rows else None

    def wait_watermark(self, t: int) -> None:
        wait_for(lambda: self.scraped_watermark() == t, what=f"Prometheus to scrape watermark {iso(t)}")
        time.sleep(2.5)  # a couple more scrapes of the settled values

    def set_scraping(self, on: bool) -> None:
        targets = {"chargeback": f"127.0.0.1:{self.port}"} if on else {}
        self.prom.scrape_targets = targets
        (self.root / f"prometheus-{self.prom.port}.yml").write_text(yaml.safe_dump(self.prom._config()))
        requests.post(f"{self.prom.url}/-/reload", timeout=10).raise_for_status()

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.prom.stop()


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[Stack]:
    t0 = int(time.time()) // 3600 * 3600 - 3 * 3600
    s = Stack(tmp_path, t0)
    yield s
    s.close()


def increase_by_series(stack: Stack, metric: str, by: str) -> dict[str, float]:
    """Reset-aware increase from raw samples, exactly as increase() counts (the first sample is the base)."""
    rows = stack.query(f'{metric}{{job="chargeback"}}[15m]')
    out: dict[str, float] = {}
    for row in rows:
        values = [float(v) for _, v in row["values"]]
        inc = sum(b - a if b >= a else b for a, b in itertools.pairwise(values))
        key = row["metric"][by]
        out[key] = out.get(key, 0.0) + inc
    return out


def test_restart_loses_nothing_and_counts_nothing_twice(stack: Stack) -> None:
    t0 = stack.t0
    # Run A accrues (T0, T0+20m] and is scraped, then killed.
    a = stack.serve("--start", iso(t0), "--until", iso(t0 + 1200))
    stack.wait_watermark(t0 + 1200)
    a.send_signal(signal.SIGKILL)
    a.wait()
    # Run B accrues to T0+40m while Prometheus is not scraping, then dies: its work was never published.
    stack.set_scraping(False)
    b = stack.serve("--until", iso(t0 + 2400))
    wait_for(lambda: "catching up: 2/2" in (stack.root / "serve-1.log").read_text(), what="run B to accrue")
    b.send_signal(signal.SIGKILL)
    b.wait()
    stack.set_scraping(True)
    # Run C reads the last *scraped* watermark (T0+20m) back from Prometheus; --start is ignored.
    c = stack.serve("--start", iso(t0 - 7200), "--until", iso(t0 + 3600))
    stack.wait_watermark(t0 + 3600)
    assert "watermark read back from Prometheus" in (stack.root / "serve-2.log").read_text()
    got = increase_by_series(stack, "chargeback_namespace_cost_total", "namespace")
    assert set(got) == set(EXPECTED)
    for ns, exp in EXPECTED.items():
        assert got[ns] == pytest.approx(sum(exp.values()), rel=REL), ns
    assert sum(got.values()) == pytest.approx(NODES_TOTAL, rel=REL)
    cluster = increase_by_series(stack, "chargeback_cluster_cost_total", "resource")
    assert sum(cluster.values()) == pytest.approx(NODES_TOTAL, rel=REL)
    # Period-to-date sums were read back with the watermark: the day, week and month so far hold the hour.
    assert "restored period-to-date cost" in (stack.root / "serve-2.log").read_text()
    for period in ("daily", "weekly", "monthly"):
        rows = stack.query(f'sum(chargeback_period_cost{{job="chargeback",period="{period}"}})')
        assert float(rows[0]["value"][1]) == pytest.approx(NODES_TOTAL, rel=REL), period
    team_a = stack.query('sum(chargeback_period_cost{job="chargeback",period="monthly",namespace="team-a"})')
    assert float(team_a[0]["value"][1]) == pytest.approx(4 * 0.04 + 3 * 0.005, rel=REL)
    c.send_signal(signal.SIGTERM)
    assert c.wait(15) == 0


def test_endpoints_and_metric_hygiene(stack: Stack) -> None:
    t0 = stack.t0
    stack.serve("--start", iso(t0), "--until", iso(t0 + 3600))
    stack.wait_watermark(t0 + 3600)
    base = f"http://127.0.0.1:{stack.port}"
    metrics = requests.get(f"{base}/metrics", timeout=10).text
    check = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check.stdout + check.stderr
    assert "chargeback_up 1.0" in metrics
    assert 'chargeback_info{currency="USD"' in metrics
    samples = [s for fam in text_string_to_metric_families(metrics) for s in fam.samples]
    assert samples and all(s.timestamp is None for s in samples)  # no sample timestamps
    assert all(s.name.startswith("chargeback_") for s in samples)
    # The spot node is priced at default spot rates and says so.
    assert ('chargeback_node_hourly_cost{instance_type="m5.2xlarge",node="n-spot",price_source="default-spot",'
            'spot="true"}') in metrics
    # n-od: 13 GiB of its 16 idle at 0.005/GiB-h, no idle CPU (overflowed).
    idle = {(s.labels["node"], s.labels["resource"]): s.value for s in samples
            if s.name == "chargeback_node_idle_cost_total"}
    assert idle[("n-od", "memory")] == pytest.approx(13 * 0.005, rel=REL)
    assert ("n-od", "cpu") not in idle  # overflowed: no idle CPU, so no series
    assert idle[("n-gpu", "gpu")] == pytest.approx(3 * 2.0, rel=REL)  # 3 of 4 GPUs unrequested
    assert "chargeback_nodes_default_priced 2.0" in metrics  # n-spot and n-default
    health = requests.get(f"{base}/healthz", timeout=10).json()
    assert health["alive"] and health["up"] and health["accruedUntil"] == t0 + 3600
    # /allocation/compute answers like OpenCost's API.
    alloc = requests.get(f"{base}/allocation/compute", params={"window": window_arg(t0), "aggregate": "namespace",
                                                                         "includeIdle": "true"},
                         timeout=30).json()
    assert alloc["code"] == 200
    for ns, exp in EXPECTED.items():
        assert alloc["data"][0][ns]["totalCost"] == pytest.approx(sum(exp.values()), rel=REL)
    bad = requests.get(f"{base}/allocation/compute", params={"window": "yesterdayish"}, timeout=10)
    assert bad.status_code == 400 and "invalid window" in bad.json()["message"]
    # The hourly gauge shows the last interval's rate: team-a burns 0.175/h (0.16 cpu + 0.015 memory).
    rows = stack.query('sum by (namespace) (chargeback_namespace_hourly_cost{namespace="team-a"})')
    assert float(rows[0]["value"][1]) == pytest.approx(4 * 0.04 + 3 * 0.005, rel=REL)


def test_prometheus_outage_keeps_values_and_catches_up(core_prom: PrometheusServer, core_t0: int) -> None:
    """In-process: a dead Prometheus sets up=0 and keeps the ledger; the next good cycle catches up."""
    raw = dict(CORE_CONFIG, prometheus={"url": core_prom.url, "retries": 0}, allocation={"chunk": "10m"},
               serve={"lag": "3m", "start": iso(core_t0), "exposeNewSeriesFor": "0s"})
    exporter = Exporter(parse_config(raw), until=iso(core_t0 + 1800))
    exporter.run_once()
    assert exporter.health.up
    assert exporter.ledger.watermark == core_t0 + 1800
    before = dict(exporter.ledger.counters)
    exporter.client.url = f"http://127.0.0.1:{free_port()}"
    exporter.until = core_t0 + 3600
    exporter.run_once()
    assert not exporter.health.up
    assert "unreachable" in (exporter.health.last_error or "")
    assert exporter.ledger.counters == before and exporter.ledger.watermark == core_t0 + 1800
    metrics = exporter.registry.get_sample_value("chargeback_up")
    assert metrics == 0
    assert exporter.registry.get_sample_value("chargeback_prometheus_query_errors_total",
                                              {"reason": "unreachable"}) == 1
    exporter.client.url = core_prom.url
    exporter.run_once()
    assert exporter.health.up and exporter.ledger.watermark == core_t0 + 3600
    ns_counters = {k: v for k, v in exporter.ledger.counters.items() if isinstance(k, NamespaceKey)}
    total = sum(ns_counters.values())
    assert total == pytest.approx(NODES_TOTAL, rel=REL)
    team_a = sum(v for k, v in ns_counters.items() if k.namespace == "team-a")
    assert team_a == pytest.approx(4 * 0.04 + 3 * 0.005, rel=REL)


def test_serve_survives_prometheus_down_at_start(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"prometheus": {"url": f"http://127.0.0.1:{free_port()}", "retries": 0},
                                   "serve": {"interval": "1s", "listen": f"127.0.0.1:{port}"}}))
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config", str(cfg)], stdout=log,
                            stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        def metrics() -> str | None:
            try:
                return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except requests.RequestException:
                return None
        text = wait_for(lambda: (m := metrics()) and "unreachable\"} 1.0" in m and m, what="a failed cycle")
        assert "chargeback_up 0.0" in text
        assert "chargeback_accrued_until_timestamp_seconds" not in text  # unknown until Prometheus answers
        time.sleep(2)
        assert proc.poll() is None, "serve must keep running while Prometheus is down"
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 503
        logged = (tmp_path / "serve.log").read_text()
        assert "is unreachable" in logged and logged.count("accrual cycle failed") == 1  # logged once, not per cycle
        assert json.loads(requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).text)["up"] is False
    finally:
        proc.terminate()
        proc.wait(10)
