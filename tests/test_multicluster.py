"""Two clusters, each with its own Prometheus (external label cluster=a|b) and exporter, remote-writing into
a central Prometheus that stands in for Thanos Receive. Central queries, recording rules and the
multi-cluster dashboard must give each cluster's exact cost, and never merge same-named namespaces.
The same again on VictoriaMetrics: a vmagent per cluster, one central store, vmalert for the rules."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer, backfill, free_port
from demo.localvm import VictoriaMetricsServer, VMAgent, VMAlert, missing_binaries
from exporter.cli import main
from exporter.mixin.budgets import render as render_rules
from exporter.mixin.dashboards import render as render_dashboards

from .scenarios import CORE_CONFIG, WINDOW_SECONDS, core_cluster, share_cluster
from .test_allocate_core import D_CPU, D_RAM, REL, window_arg
from .test_allocate_core import NODES_TOTAL as CORE_TOTAL
from .test_serve import wait_for, wait_scraping
from .test_sharing import NODES as SHARE_TOTAL

CLUSTERS = {"a": (share_cluster, {}, SHARE_TOTAL), "b": (core_cluster, CORE_CONFIG, CORE_TOTAL)}
# kube-system exists in both: 1 core + 2 GiB at 0.10/0.01 in a; 0.25 core + 0.25 GiB at default rates in b.
KUBE_SYSTEM = {"a": 0.12, "b": 0.25 * D_CPU + 0.25 * D_RAM}


def query(url: str, expr: str) -> list[dict[str, Any]]:
    # nocache=1: VictoriaMetrics would answer as of 30 s ago (-search.latencyOffset); Prometheus ignores it.
    body = requests.get(f"{url}/api/v1/query", params={"query": expr, "nocache": "1"}, timeout=10).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def by_cluster(url: str, expr: str) -> dict[str, float]:
    return {r["metric"].get("cluster", ""): float(r["value"][1]) for r in query(url, expr)}


Stoppable = PrometheusServer | VictoriaMetricsServer | VMAgent | VMAlert


@dataclass(frozen=True)
class Estate:
    """The central store's URL, each cluster's exporter `prometheus` config, and what makes the samples
    received so far searchable (VictoriaMetrics shows a new series about 10 s after its first sample)."""

    central_url: str
    sources: dict[str, dict[str, str]]
    settle: Callable[[], None] = lambda: None


def prometheus_estate(tmp_path: Path, t0: int, rules: Path, ports: dict[str, int],
                      running: list[Stoppable]) -> Estate:
    """A central Prometheus (Thanos Receive's stand-in: remote-write receiver, rule evaluation) holding both
    clusters' raw series with a cluster label, and per cluster a Prometheus that holds the cluster's series,
    scrapes its exporter and remote-writes with external label cluster=<name>. Returns the central URL and
    each exporter's `prometheus` config (its own Prometheus)."""
    central_data = tmp_path / "central"
    central_data.mkdir()
    for name, (make, _cfg, _total) in CLUSTERS.items():
        staging = tmp_path / f"central-{name}"
        backfill(make(t0), staging, t0 - 1800, t0 + WINDOW_SECONDS + 600, 60, extra_labels={"cluster": name})
        for block in staging.iterdir():
            block.rename(central_data / block.name)
    central = PrometheusServer(central_data, {}, "1s", rule_files=[rules],
                               extra_args=["--web.enable-remote-write-receiver"]).start()
    running.append(central)
    sources = {}
    for name, (make, _cfg, _total) in CLUSTERS.items():
        backfill(make(t0), tmp_path / name, t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
        prom = PrometheusServer(tmp_path / name, {"chargeback": f"127.0.0.1:{ports[name]}"}, "1s",
                                external_labels={"cluster": name},
                                remote_write=[f"{central.url}/api/v1/write"]).start()
        running.append(prom)
        wait_scraping(prom.url)
        sources[name] = {"url": prom.url}
    return Estate(central.url, sources)


def victoriametrics_estate(tmp_path: Path, t0: int, rules: Path, ports: dict[str, int],
                           running: list[Stoppable]) -> Estate:
    """One VictoriaMetrics holding both clusters' raw series with a cluster label, vmalert evaluating the
    rules against it, and per cluster a vmagent that scrapes the exporter and remote-writes with
    cluster=<name>. Each exporter reads the central store, narrowed by prometheus.clusterSelector."""
    central = VictoriaMetricsServer(tmp_path / "central")
    running.append(central)
    central.start()
    for name, (make, _cfg, _total) in CLUSTERS.items():
        central.import_cluster(make(t0), t0 - 1800, t0 + WINDOW_SECONDS + 600, 60, extra_labels={"cluster": name})
    running.append(VMAlert(tmp_path, [rules], central.url, central.url, interval="1s").start())
    for name in CLUSTERS:
        running.append(VMAgent(tmp_path, {"chargeback": f"127.0.0.1:{ports[name]}"}, central.write_url,
                               labels={"cluster": name}).start())
    def scraping() -> bool:
        central.flush()
        return set(by_cluster(central.url, 'up{job="chargeback"}')) == set(CLUSTERS)

    wait_for(scraping, what="both vmagents to scrape")
    sources = {name: {"url": central.url, "clusterSelector": f'cluster="{name}"'} for name in CLUSTERS}
    return Estate(central.url, sources, central.flush)


ESTATES = {"prometheus": prometheus_estate, "victoriametrics": victoriametrics_estate}


@pytest.fixture()
def running() -> Iterator[list[Stoppable]]:
    """Servers the test started, stopped at teardown whatever happened (the central store last)."""
    servers: list[Stoppable] = []
    yield servers
    for server in reversed(servers):
        server.stop()


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mixin's rules, evaluated every second; rendered once for both stores (Jsonnet takes seconds)."""
    path = tmp_path_factory.mktemp("central-rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(render_rules([], config={"ruleInterval": "1s"})[0]))
    return path


@pytest.mark.parametrize("store", list(ESTATES))
def test_two_clusters_through_a_central_store(tmp_path: Path, store: str, rules: Path,
                                              running: list[Stoppable]) -> None:
    if store == "victoriametrics" and missing_binaries():
        pytest.skip(f"not on PATH: {', '.join(missing_binaries())} (Debian package victoria-metrics)")
    t0 = int(time.time()) // 3600 * 3600 - 3 * 3600
    start, until = window_arg(t0).split(",")
    ports = {name: free_port() for name in CLUSTERS}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        estate = ESTATES[store](tmp_path, t0, rules, ports, running)
        central_url, sources = estate.central_url, estate.sources
        for name, (_make, cfg, _total) in CLUSTERS.items():
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump({**cfg, "prometheus": sources[name],
                                            "attribution": {"source": "prometheus"}, "allocation": {"chunk": "30m"},
                                            "serve": {"interval": "1s", "listen": f"127.0.0.1:{ports[name]}",
                                                      "exposeNewSeriesFor": "10s"}}))
            procs.append(subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config", str(path),
                                           "--start", start, "--until", until],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))

        def arrived() -> bool:
            estate.settle()
            marks = by_cluster(central_url, "chargeback_accrued_until_timestamp_seconds")
            return marks == {"a": t0 + 3600, "b": t0 + 3600}

        wait_for(arrived, timeout=90, what="both clusters' watermarks at the central store")
        time.sleep(4)  # the settled counters follow within a send deadline

        totals = by_cluster(central_url, "sum by (cluster) (chargeback_cluster_cost_total)")
        assert totals == pytest.approx({"a": SHARE_TOTAL, "b": CORE_TOTAL}, rel=REL)
        [grand] = query(central_url, "sum(chargeback_cluster_cost_total)")
        assert float(grand["value"][1]) == pytest.approx(SHARE_TOTAL + CORE_TOTAL, rel=REL)
        # Conservation per cluster: the namespaces add up to each cluster's own total.
        ns = by_cluster(central_url, "sum by (cluster) (chargeback_namespace_cost_total)")
        assert ns == pytest.approx({"a": SHARE_TOTAL, "b": CORE_TOTAL}, rel=REL)
        # Same namespace name, two clusters: two series, never merged.
        ks = by_cluster(central_url, 'sum by (cluster) (chargeback_namespace_cost_total{namespace="kube-system"})')
        assert ks == pytest.approx(KUBE_SYSTEM, rel=REL)
        # Recording rules evaluated centrally (as Thanos Ruler would) keep clusters apart.
        def rules_done() -> bool:
            estate.settle()
            return len(query(central_url, "cluster:chargeback_cost_month_to_date:sum")) == 2

        wait_for(rules_done, what="rules")
        mtd = by_cluster(central_url, "cluster:chargeback_cost_month_to_date:sum")
        assert mtd == pytest.approx({"a": SHARE_TOTAL, "b": CORE_TOTAL}, rel=REL)
        ns_mtd = {(r["metric"]["cluster"], r["metric"]["namespace"]): float(r["value"][1])
                  for r in query(central_url, 'namespace:chargeback_cost_month_to_date:sum{namespace="kube-system"}')}
        assert ns_mtd == pytest.approx({("a", "kube-system"): KUBE_SYSTEM["a"], ("b", "kube-system"): KUBE_SYSTEM["b"]},
                                       rel=REL)
        # The multi-cluster dashboard's month-to-date panel.
        panel = next(p for p in render_dashboards()["chargeback-clusters.json"]["panels"]
                     if p["title"] == "Month to date by cluster")
        expr = panel["targets"][0]["expr"].replace("$cluster", ".*")
        assert by_cluster(central_url, expr) == pytest.approx({"a": SHARE_TOTAL, "b": CORE_TOTAL}, rel=REL)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for server in running[1:]:  # the scrapers and the rule engine; the central store stays
            server.stop()

    # allocate against the central store, one cluster at a time, with --cluster-selector.
    central_cfg = tmp_path / "central.yaml"
    central_cfg.write_text(yaml.safe_dump({**CORE_CONFIG, "prometheus": {"url": central_url},
                                           "attribution": {"source": "prometheus"}}))
    for name, (_make, _c, total) in CLUSTERS.items():
        args = ["allocate", "--config", str(central_cfg), "--window", window_arg(t0), "--format", "json",
                "--aggregate", "cluster", "--cluster-selector", f'cluster="{name}"']
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        got = json.loads(res.stdout)["data"][0]["cluster"]["totalCost"]
        assert got == pytest.approx(total, rel=REL), name


def test_cluster_name_labels_every_series(share_prom: Any) -> None:
    from exporter.config.schema import parse_config
    from exporter.serve.server import Exporter

    prom, t0 = share_prom
    start, until = window_arg(t0).split(",")
    exporter = Exporter(parse_config({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"},
                                      "serve": {"start": start, "clusterName": "prod-eu-1",
                                                "exposeNewSeriesFor": "0s"}}), until=until)
    exporter.run_once()
    samples = [s for m in exporter.registry.collect() for s in m.samples]
    assert samples and all(s.labels.get("cluster") == "prod-eu-1" for s in samples)
    total = exporter.registry.get_sample_value("chargeback_cluster_cost_total",
                                               {"resource": "cpu", "cluster": "prod-eu-1"})
    assert total == pytest.approx(2 * 8 * 0.10, rel=REL)  # two nodes, 8 cores at 0.10 for the hour
