"""Two real Prometheus servers scrape one `chargeback serve` at different intervals and phases (as
kube-prometheus' two replicas do). Each must see every new series at 0 before its first increment,
so `increase()` on either equals `allocate` over the run, to the cent, for a namespace created
during the run too. Publication runs on the exporter's clock; a scrape changes nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from demo.localprom import PrometheusServer, backfill, free_port
from demo.synthetic import GIB, Cluster, Container, Pod

from .scenarios import CORE_CONFIG, WINDOW_SECONDS, core_cluster
from .test_allocate_core import EXPECTED, NODES_TOTAL, run_allocate, window_arg
from .test_serve import wait_for

CENT = 0.005
INTERVALS = ("1s", "3s")  # the slower scraper sets serve.exposeNewSeriesFor: 2 x 3 s
# A preview namespace's pod on n-gpu (price book: cpu 0.05/core-h, ram 0.006/GiB-h) requests 1 core and
# 4 GiB and uses half. It appears after t0+30m, so its first sample is at t0+31m, and runs through t0+45m:
# 15 one-minute steps, a quarter hour: 0.25 x (1 x 0.05 + 4 x 0.006) = 0.0185, taken from n-gpu's idle.
PREVIEW = 0.25 * (1 * 0.05 + 4 * 0.006)


def with_preview(t0: int) -> Cluster:
    core = core_cluster(t0)
    pod = Pod("preview-42", "app", "n-gpu", (Container("app", 1, 4 * GIB, 0, 0.5, 2 * GIB),), start=t0 + 1801,
              end=t0 + 2700)
    return Cluster(core.nodes, (*core.pods, pod), core.namespaces, core.extra)


def query(url: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    body = requests.get(f"{url}/api/v1/query", params=params, timeout=10).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


class Scrapers:
    """Prometheus 0 holds the cluster's history and scrapes every 1 s; Prometheus 1 scrapes every 3 s."""

    def __init__(self, root: Path, t0: int) -> None:
        self.t0, self.port = t0, free_port()
        backfill(with_preview(t0), root / "p0", t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
        target = {"chargeback": f"127.0.0.1:{self.port}"}
        self.proms = [PrometheusServer(root / f"p{i}", target, every, external_labels={"replica": str(i)})
                      for i, every in enumerate(INTERVALS)]
        for p in self.proms:
            p.start()
        self.config = root / "serve.yaml"
        self.config.write_text(yaml.safe_dump({
            **CORE_CONFIG, "prometheus": {"url": self.proms[0].url}, "allocation": {"chunk": "10m"},
            "serve": {"interval": "1s", "listen": f"127.0.0.1:{self.port}", "exposeNewSeriesFor": "6s"}}))
        self.log = root / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def serve(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config", str(self.config), *args],
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for p in self.proms:
            p.stop()


@pytest.fixture()
def scrapers(tmp_path: Path) -> Iterator[Scrapers]:
    s = Scrapers(tmp_path, int(time.time()) // 3600 * 3600 - 3 * 3600)
    yield s
    s.close()


def last_scrape(url: str) -> float:
    rows = query(url, 'chargeback_up{job="chargeback"}[1m]')
    return max(float(t) for r in rows for t, _ in r["values"])


def test_every_scraper_sees_new_series_at_zero_first(scrapers: Scrapers) -> None:
    s, t0 = scrapers, scrapers.t0
    for p in s.proms:  # both scrape loops run (the target is still down) before the exporter starts
        wait_for(lambda p=p: query(p.url, 'up{job="chargeback"}'), what=f"Prometheus {p.port} to scrape")
    start, until = window_arg(t0).split(",")
    s.serve("--start", start, "--until", until)
    for p in s.proms:
        wait_for(lambda p=p: query(p.url, f"chargeback_accrued_until_timestamp_seconds == {t0 + 3600}"),
                 what=f"Prometheus {p.port} to scrape the end of the run")
    time.sleep(3.5)  # one more scrape by each
    alloc = run_allocate(s.config, window_arg(t0))["data"][0]
    expected = {**{ns: sum(v.values()) for ns, v in EXPECTED.items()}, "preview-42": PREVIEW}
    expected["__idle__"] -= PREVIEW
    assert set(alloc) == set(expected)
    for ns, amount in expected.items():  # allocate agrees with the hand-computed amounts
        assert abs(alloc[ns]["totalCost"] - amount) < 1e-9, ns
    for p in s.proms:
        at = last_scrape(p.url)  # a range ending on a sample: increase() does not extrapolate
        rows = query(p.url, 'sum by (namespace) (increase(chargeback_namespace_cost_total{job="chargeback"}[5m]))',
                     at)
        got = {r["metric"]["namespace"]: float(r["value"][1]) for r in rows}
        assert set(got) == set(expected), p.scrape_interval
        for ns, amount in expected.items():
            assert abs(got[ns] - alloc[ns]["totalCost"]) < CENT, (p.scrape_interval, ns, got[ns], amount)
        assert abs(sum(got.values()) - NODES_TOTAL) < CENT, (p.scrape_interval, sum(got.values()))
        [total] = query(p.url, 'sum(increase(chargeback_namespace_cost_total{job="chargeback"}[5m]))', at)
        assert abs(float(total["value"][1]) - NODES_TOTAL) < CENT, p.scrape_interval
