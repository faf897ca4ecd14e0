"""Bad input gets one clear line naming the cause and a non-zero exit; never silent zeros."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from demo.localprom import PrometheusServer, free_port
from exporter.cli import main
from exporter.config.schema import load_config
from exporter.vocab.errors import ConfigError

from .test_allocate_core import window_arg


def allocate(*args: str) -> Result:
    return CliRunner().invoke(main, ["allocate", "--format", "json", *args])


def allocate_with(tmp_path: Path, raw: dict[str, Any], window: str = "1h") -> Result:
    """`allocate` with this config written to a file."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    return allocate("--config", str(cfg), "--window", window)


def one_line_error(res: Result) -> str:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chargeback: error: "), res.stderr
    return lines[0]


class FakePrometheus(BaseHTTPRequestHandler):
    """Answers /api/v1/query with a canned failure; anything else is a test bug."""

    mode = "error"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        assert self.path == "/api/v1/query", f"unexpected path {self.path}"
        if self.mode == "hang":
            time.sleep(3)
        body = json.dumps({"status": "error", "errorType": "bad_data",
                           "error": "1:5: parse error: unexpected character"}).encode()
        code = 400
        if self.mode == "html":
            body, code = b"<html>502 Bad Gateway</html>", 502
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def fake_prom() -> Iterator[tuple[str, type[FakePrometheus]]]:
    handler = type("H", (FakePrometheus,), {})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    srv.shutdown()


def test_prometheus_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(allocate("--prometheus-url", url, "--window", "1h"))
    assert f"Prometheus at {url} is unreachable" in line


def test_query_error_is_reported_with_prometheus_message(fake_prom: tuple[str, type[FakePrometheus]]) -> None:
    url, _ = fake_prom
    line = one_line_error(allocate("--prometheus-url", url, "--window", "1h"))
    assert "Prometheus query failed (HTTP 400, bad_data): 1:5: parse error" in line


def test_query_error_with_parallel_chunks_is_one_line(fake_prom: tuple[str, type[FakePrometheus]],
                                                      tmp_path: Path) -> None:
    url, _ = fake_prom
    raw = {"prometheus": {"url": url}, "allocation": {"chunk": "10m", "concurrency": 4}}
    line = one_line_error(allocate_with(tmp_path, raw))
    assert "Prometheus query failed (HTTP 400, bad_data): 1:5: parse error" in line


def test_non_json_answer(fake_prom: tuple[str, type[FakePrometheus]], tmp_path: Path) -> None:
    url, handler = fake_prom
    handler.mode = "html"
    line = one_line_error(allocate_with(tmp_path, {"prometheus": {"url": url, "retries": 0}}))
    assert "answered HTTP 502 with a non-JSON body" in line


def test_query_timeout(fake_prom: tuple[str, type[FakePrometheus]], tmp_path: Path) -> None:
    url, handler = fake_prom
    handler.mode = "hang"
    # the client allows the server-side timeout plus 5s of transport slack before giving up
    line = one_line_error(allocate_with(tmp_path, {"prometheus": {"url": url, "timeout": "1s", "retries": 0}}))
    assert "Prometheus query failed" in line or "timed out" in line


def test_empty_prometheus_is_an_error_not_zero(tmp_path: Path) -> None:
    with PrometheusServer(tmp_path / "empty") as prom:
        line = one_line_error(allocate("--prometheus-url", prom.url, "--window", "1h"))
    assert "kube_node_status_capacity is missing" in line


def test_unpriced_node_with_defaults_disabled(core_config: Path, core_t0: int, tmp_path: Path) -> None:
    cfg = yaml.safe_load(core_config.read_text())
    cfg["pricing"]["allowDefaultRates"] = False
    line = one_line_error(allocate_with(tmp_path, cfg, window_arg(core_t0)))
    assert "node n-default has no price" in line


def test_default_priced_nodes_are_warned_about(core_config: Path, core_t0: int) -> None:
    res = allocate("--config", str(core_config), "--window", window_arg(core_t0))
    assert res.exit_code == 0
    assert "2 node(s) priced at default rates" in res.stderr and "n-default" in res.stderr


@pytest.mark.parametrize("raw,expected", [
    ("prometheus: [1, 2]\n", "prometheus: Input should be a valid dictionary"),
    ("allocation:\n  policy: cheapest\n", "allocation.policy: Input should be 'max', 'request', 'usage' or 'weighted'"),
    ("allocation:\n  resolution: 5 minutes\n", "allocation.resolution: Value error, invalid duration"),
    ("allocation:\n  resolution: 7m\n  chunk: 1h\n", "allocation.resolution: Value error, 7m does not divide 24h"),
    ("allocation:\n  resolution: 8m\n  chunk: 1h\n",
     "allocation.chunk: Value error, 1h is not a whole multiple of allocation.resolution (8m)"),
    ("pricing:\n  rules:\n  - match: {a: b}\n    cpu: 1\n", "pricing.rules.0: Value error, a price rule needs"),
    ("pricing:\n  defaults:\n    cpu: -1\n", "pricing.defaults.cpu: Input should be greater than or equal to 0"),
    ("prometheus:\n  ksmSelector: job=ksm\n", "prometheus.ksmSelector: Value error, not a list of label matchers"),
    ("prometheus:\n  dcgmSelector: dcgm\n", "prometheus.dcgmSelector: Value error, not a list of label matchers"),
    ("promethus:\n  url: x\n", "promethus: Extra inputs are not permitted"),
    ("key: [unclosed\n", "not valid YAML"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("sharing:\n  policies:\n    monitoring: {split: fixed, percentages: {a: 60, b: 30}}\n",
     "sharing.policies.monitoring: Value error, fixed percentages must sum to 100, got 90"),
    ("sharing:\n  shareSplit: proportional\n", "sharing.shareSplit: Input should be 'weighted' or 'even'"),
    ("sharing:\n  policies:\n    x: {split: random}\n",
     "sharing.policies.x.split: Input should be 'weighted', 'even', 'fixed' or 'metric'"),
    ("sharing:\n  policies:\n    kube-system: {split: metric, query: 'sum by (ns (up)'}\n",
     "sharing.policies.kube-system: Value error, query is not valid PromQL"),
    ("sharing:\n  policies:\n    monitoring: {split: fixed, fixedBy: squad, percentages: {a: 100}}\n",
     "sharing.policies.monitoring.fixedBy: 'squad' is neither 'namespace' nor an attribution label"),
    ("attribution:\n  labels: {namespace: team}\n", "attribution.labels: Value error, 'namespace' cannot be"),
    ("pricing:\n  rules:\n  - {match: {a: b}, hourly: 1, price: 2}\n",
     "pricing.rules.0.price: Extra inputs are not permitted"),
    ("pricing:\n  rules:\n  - {match: {a: b}, spotHourly: -0.1}\n",
     "pricing.rules.0.spotHourly: Input should be greater than or equal to 0"),
    ("pricing:\n  storage:\n    classes: {gp3: -1}\n", "pricing.storage.classes: Value error, negative price"),
    ("pricing:\n  network:\n    unclassified: everywhere\n", "pricing.network.unclassified: Input should be"),
])
def test_malformed_config_names_the_key(tmp_path: Path, raw: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(raw)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value) and "\n" not in str(err.value)
    line = one_line_error(allocate("--config", str(path), "--window", "1h"))
    assert expected in line


def test_missing_config_file(tmp_path: Path) -> None:
    line = one_line_error(allocate("--config", str(tmp_path / "nope.yaml"), "--window", "1h"))
    assert "cannot read" in line


def test_shipped_example_config_is_valid() -> None:
    cfg = load_config("examples/chargeback.yaml")
    assert cfg.sharing.policies["ingress-nginx"].namespaceLabel == "exported_namespace"
    assert cfg.sharing.fixed_costs() == {"eks-control-plane": 73, "support": 1500}
