"""Showback reports: amounts by hand and equal to allocate, both sources, and delivery to real loopback
servers (SMTP via aiosmtpd, Slack and webhooks via http.server), with retries and failures."""

from __future__ import annotations

import email
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from demo.localprom import PrometheusServer, backfill, free_port
from exporter.cli import main

from .scenarios import WINDOW_SECONDS, share_cluster
from .test_allocate_core import REL, window_arg
from .test_serve import wait_for, wait_scraping
from .test_sharing import BASE_SHARING, SHARED, TEAMS

# Team totals for the hour with kube-system and monitoring shared by weight (see test_sharing).
TEAM_TOTAL = {t: c + SHARED * c / 0.72 for t, c in TEAMS.items()}
IDLE = 1.12


def run(args: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner(env=env).invoke(main, args)


def cfg_file(tmp_path: Path, prom_url: str, **extra: Any) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": prom_url}, "sharing": BASE_SHARING,
                                    "attribution": {"source": "prometheus"}, **extra}))
    return path


def test_report_amounts_by_hand_and_equal_to_allocate(share_prom: Any, tmp_path: Path) -> None:
    prom, t0 = share_prom
    cfg = cfg_file(tmp_path, prom.url)
    res = run(["report", "--config", str(cfg), "--window", window_arg(t0), "--by", "team", "--format", "json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["source"] == "computed" and rep["addsUp"] is True
    got = {g["team"]: g for g in rep["groups"]}
    assert set(got) == {*TEAM_TOTAL, "__idle__"}
    for team, total in TEAM_TOTAL.items():
        assert got[team]["total"] == pytest.approx(total, rel=REL)
        assert got[team]["allocated"] == pytest.approx(TEAMS[team], rel=REL)
        assert got[team]["shared"] == pytest.approx(SHARED * TEAMS[team] / 0.72, rel=REL)
    assert got["__idle__"]["idle"] == pytest.approx(IDLE, rel=REL)
    assert rep["clusterTotal"] == pytest.approx(2.24, rel=REL) and rep["groupsTotal"] == pytest.approx(2.24, rel=REL)
    # Every container uses half its request: CPU efficiency 50%, half the CPU cost is unused requests.
    assert got["payments"]["cpu_efficiency"] == pytest.approx(0.5, rel=REL)
    assert got["payments"]["unused_request_cost"] == pytest.approx(0.2 * 0.5, rel=REL)
    # Top workloads by their whole cost, from the engine's pod rows: payments' pod "api" belongs to Deployment
    # payments-api (kube_pod_owner -> ReplicaSet -> kube_replicaset_owner) and carries all of payments:
    # 0.24 allocated + 0.40 shared x 0.24 / 0.72 = 0.3733. web's pods have no owner: web-a's frontend
    # 0.12 + 0.40 x 0.12 / 0.72 = 0.1867.
    assert got["payments"]["top_workloads"] == "payments/deployment:payments-api 0.37"
    assert got["web-a"]["top_workloads"] == "web/frontend 0.19"
    [api] = got["payments"]["workloads"]
    assert api["name"] == "payments/deployment:payments-api" and api["totalCost"] == pytest.approx(
        0.24 + 0.40 * 0.24 / 0.72, rel=REL)
    # The previous hour starts 30 minutes before the data: no change is shown, and the report says so.
    assert rep["previous"]["comparable"] is False and got["payments"]["change"] is None
    assert rep["previous"]["coveredSeconds"] < 3600 and rep["change"] is None
    # The same numbers as allocate for the same window.
    alloc = run(["allocate", "--config", str(cfg), "--window", window_arg(t0), "--aggregate", "team",
                 "--format", "json"])
    data = json.loads(alloc.stdout)["data"][0]
    for team in TEAM_TOTAL:
        assert got[team]["total"] == pytest.approx(data[team]["totalCost"], rel=REL)
    # The previous hour holds only 31 one-minute steps of data (it starts 30 minutes before t0).
    assert rep["previousTotal"] == pytest.approx(2.24 * 31 / 60, rel=REL)
    md = run(["report", "--config", str(cfg), "--window", window_arg(t0), "--by", "team"]).stdout
    assert "| payments | 0.37 |" in md and "add up to 2.24 USD, the cluster total." in md


@pytest.fixture(scope="module")
def exporter_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    """A real exporter accrued the scenario's hour in 10-minute chunks and Prometheus scraped every watermark."""
    tmp = tmp_path_factory.mktemp("rep")
    t0 = int(time.time()) // 3600 * 3600 - 3 * 3600
    port = free_port()
    backfill(share_cluster(t0), tmp / "data", t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
    prom = PrometheusServer(tmp / "data", {"chargeback": f"127.0.0.1:{port}"}, "1s").start()
    cfg = cfg_file(tmp, prom.url, allocation={"chunk": "10m"},
                   serve={"interval": "1s", "listen": f"127.0.0.1:{port}", "exposeNewSeriesFor": "10s"})
    start = window_arg(t0).split(",")[0]
    import requests

    def reached(t: int) -> bool:
        body = requests.get(f"{prom.url}/api/v1/query",
                            params={"query": "chargeback_accrued_until_timestamp_seconds"}, timeout=5).json()
        return any(float(r["value"][1]) == t for r in body["data"]["result"])

    wait_scraping(prom.url)
    # Two runs, so a scrape sees the watermark at exactly t0+30m too (catch-up applies chunks together).
    for until in (t0 + 1800, t0 + 3600):
        serve = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config", str(cfg), "--start", start,
                                  "--until", window_arg(until).split(",")[0]],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda u=until: reached(u), what="accrual")
            time.sleep(2)
        finally:
            serve.kill()
            serve.wait()
    yield prom, t0
    prom.stop()


def test_report_from_the_exporter_series_matches_the_computation(exporter_history: Any, tmp_path: Path) -> None:
    prom, t0 = exporter_history
    cfg = cfg_file(tmp_path, prom.url)
    half = f"{window_arg(t0 + 1800, 0.5)}"  # the second half hour; the first half is the previous period
    out = {}
    for source in ("exporter", "computed"):
        res = run(["report", "--config", str(cfg), "--window", half, "--format", "json", "--source", source])
        assert res.exit_code == 0, res.output
        out[source] = {g["team"]: g for g in json.loads(res.stdout)["groups"]}
        assert json.loads(res.stdout)["source"] == source
    for team, total in TEAM_TOTAL.items():
        assert out["exporter"][team]["total"] == pytest.approx(total / 2, rel=REL), team
        assert out["exporter"][team]["previous"] == pytest.approx(total / 2, rel=REL), team
        assert out["exporter"][team]["total"] == pytest.approx(out["computed"][team]["total"], rel=REL), team
    # A window the exporter never passed through exactly falls back, and says so.
    res = run(["report", "--config", str(cfg), "--window", window_arg(t0 + 1830, 0.25), "--format", "json",
               "--source", "exporter"])
    assert res.exit_code == 2 and "do not cover" in res.stderr


# ---- delivery -------------------------------------------------------------------------------------

class Hooks(BaseHTTPRequestHandler):
    received: dict[str, list[Any]]
    counts: dict[str, int]

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.counts[self.path] = self.counts.get(self.path, 0) + 1
        if self.path == "/always-fails" or (self.path == "/flaky" and self.counts[self.path] <= 2):
            self.send_response(500)
            self.end_headers()
            return
        self.received.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.end_headers()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content)
        msg["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(msg)
        return "250 OK"


@pytest.fixture()
def servers() -> Iterator[tuple[str, dict[str, list[Any]], dict[str, int], Mailbox, int]]:
    received: dict[str, list[Any]] = {}
    counts: dict[str, int] = {}
    http = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (Hooks,), {"received": received, "counts": counts}))
    threading.Thread(target=http.serve_forever, daemon=True).start()
    box = Mailbox()
    smtp_port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    yield f"http://127.0.0.1:{http.server_address[1]}", received, counts, box, smtp_port
    smtp.stop()
    http.shutdown()


def test_delivery_to_slack_email_and_webhooks(share_prom: Any, tmp_path: Path, servers: Any) -> None:
    prom, t0 = share_prom
    base, received, counts, box, smtp_port = servers
    env = {"SLACK_PAYMENTS": f"{base}/slack-payments", "SEARCH_HOOK": f"{base}/flaky",
           "WEB_HOOK": f"{base}/always-fails", "FINANCE_PORTAL": f"{base}/finance", "SMTP_PASSWORD": "s3cret"}
    reports = {
        "grafanaURL": "https://grafana.example.com",
        "retries": 3, "backoff": 0.01,
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "starttls": False, "sender": "chargeback@example.com"},
        "teams": {
            "payments": {"slack": {"env": "SLACK_PAYMENTS"}, "email": ["payments-lead@example.com"]},
            "search": {"webhook": {"env": "SEARCH_HOOK"}},
            "web": {"webhook": {"env": "WEB_HOOK"}},
        },
        "finance": {"email": ["finops@example.com"], "webhook": {"env": "FINANCE_PORTAL"}},
    }
    cfg = cfg_file(tmp_path, prom.url, reports=reports)
    args = ["report", "--config", str(cfg), "--window", window_arg(t0), "--by", "team", "--send"]

    dry = run([*args, "--dry-run"], env=env)
    assert dry.exit_code == 0 and "would send" in dry.output and not received and not box.messages

    res = run(args, env=env)
    assert res.exit_code == 1, res.output  # the web destination always fails ...
    assert "FAIL team web: webhook: HTTP 500 after retries" in res.output
    # ... and everything else still arrives.
    [slack] = received["/slack-payments"]
    assert slack["blocks"][0]["type"] == "header" and "payments" in slack["blocks"][2]["text"]["text"]
    assert f"{TEAM_TOTAL['payments']:,.2f}" in slack["blocks"][1]["text"]["text"]
    assert "grafana.example.com/d/chargeback-team" in json.dumps(slack["blocks"][-1])
    [search] = received["/flaky"]  # 500, 500, then 200: delivered on the third try
    assert counts["/flaky"] == 3
    assert [g["team"] for g in search["report"]["groups"]] == ["search"]
    assert search["report"]["groups"][0]["total"] == pytest.approx(TEAM_TOTAL["search"], rel=REL)
    assert counts["/always-fails"] == 4  # one try and three retries
    [finance] = received["/finance"]
    assert finance["report"]["groupsTotal"] == pytest.approx(2.24, rel=REL)

    mails = {m["X-Envelope-To"]: m for m in box.messages}
    assert set(mails) == {"payments-lead@example.com", "finops@example.com"}
    lead = mails["payments-lead@example.com"]
    parts = {p.get_content_type(): p for p in lead.walk()}
    assert {"text/plain", "text/html", "image/png", "text/csv"} <= set(parts)
    assert parts["image/png"].get_payload(decode=True)[:8] == b"\x89PNG\r\n\x1a\n"
    html = parts["text/html"].get_payload(decode=True).decode()
    assert f"{TEAM_TOTAL['payments']:,.2f}" in html and "cid:" in html
    csv_rows = parts["text/csv"].get_payload(decode=True).decode().splitlines()
    assert csv_rows[0].startswith("team,total") and len(csv_rows) == 2 and csv_rows[1].startswith("payments,")
    finance_csv = {p.get_content_type(): p for p in mails["finops@example.com"].walk()}["text/csv"]
    assert len(finance_csv.get_payload(decode=True).decode().splitlines()) == 1 + len(TEAM_TOTAL) + 1  # + __idle__


def test_secrets_never_in_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"reports": {"teams": {"a": {"slack": "https://hooks.slack.com/x"}}}}))
    res = run(["report", "--config", str(cfg)])
    assert res.exit_code == 2 and "reports.teams.a.slack" in res.stderr
    cfg.write_text(yaml.safe_dump({"reports": {"smtp": {"host": "h", "password": {"env": "A", "file": "b"}}}}))
    res = run(["report", "--config", str(cfg)])
    assert res.exit_code == 2 and "exactly one of 'env' or 'file'" in res.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_email_over_starttls_with_auth(share_prom: Any, tmp_path: Path) -> None:
    """A verified STARTTLS session (our own CA file) and AUTH LOGIN with the password from a secret file."""
    import ssl

    from aiosmtpd.smtp import AuthResult

    prom, t0 = share_prom
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret")

    box = Mailbox()
    port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port, tls_context=server_ctx, require_starttls=True,
                      authenticator=authenticator, auth_require_tls=True)
    smtp.start()
    try:
        (tmp_path / "smtp-password").write_text("s3cret\n")
        secret = {"file": str(tmp_path / "smtp-password")}
        reports = {"retries": 0, "smtp": {"host": "127.0.0.1", "port": port, "starttls": True,
                                          "username": "chargeback", "password": secret,
                                          "caFile": str(tmp_path / "cert.pem"), "sender": "chargeback@example.com"},
                   "finance": {"email": ["finops@example.com"]}}
        cfg = cfg_file(tmp_path, prom.url, reports=reports)
        res = run(["report", "--config", str(cfg), "--window", window_arg(t0), "--send"])
        assert res.exit_code == 0, res.output
        assert logins == [(b"chargeback", b"s3cret")] and len(box.messages) == 1
    finally:
        smtp.stop()


def test_change_only_where_it_means_something() -> None:
    """A change needs a covered previous period; a cent is the smallest change told; a group that was
    under a cent before is new, one under a cent now shows what it lost, never "-100.0%" on 0.00."""
    from exporter.outputs.reporttext import change_text
    assert change_text(96.7, 1.0, False, "USD") == "-"  # previous period partly before the data
    assert change_text(0.0, 0.00075, True, "USD") == "no change"  # under a cent both sides
    assert change_text(0.0, 0.5, True, "USD") == "-0.50 USD"
    assert change_text(1.0, 0.0, True, "USD") == "new (+1.00 USD)"
    assert change_text(3.0, 2.0, True, "USD") == "+50.0% (+1.00 USD)"
    assert change_text(1.5, 2.0, True, "USD") == "-25.0% (-0.50 USD)"


def test_a_group_with_no_cost_is_listed_only_to_read_what_it_lost() -> None:
    """The demo's 24 h report listed `__unallocated__` at 0.00: 0.00075 USD in the previous period only (one
    minute of its 32.85/month NAT gateway, 32.85 / 730 / 60 = 0.00075, before any byte was counted)."""
    from exporter.core.window import Window
    from exporter.outputs.report import Entries, build
    unkeyed = ("__unattributed__",)
    now: Entries = {("ml", ("ml",), "allocated"): 10.0}
    before: Entries = {("ml", ("ml",), "allocated"): 8.0, ("old", ("old",), "allocated"): 0.5,
              ("__unallocated__", unkeyed, "allocated"): 0.00075}
    w, prev = Window(86400, 172800, 60), Window(0, 86400, 60)

    def groups(covered: int) -> dict[str, tuple[float, float]]:
        r = build(w, prev, "team", ("team",), "computed", "USD", now, before, previous_covered_seconds=covered)
        assert r.previous_total == 8.0 + 0.5 + 0.00075 and r.adds_up  # the totals are the cluster's
        return {g.name: (g.total, g.previous) for g in r.groups}

    # Previous day covered: `old` reads what it lost (-0.50 USD); 0.00075 rounds to 0.00 and is not listed.
    assert groups(86400) == {"ml": (10.0, 8.0), "old": (0.0, 0.5)}
    # Previous day covered for 2,040 s (the demo's): no change is told, so a group gone says nothing either.
    assert groups(2040) == {"ml": (10.0, 8.0)}


def test_budget_rows_carry_the_budget_labels_not_the_recorded_name() -> None:
    """A report's budgets are the budget rules' series; the rule's name is how they were asked for, not a fact
    about the budget (the JSON showed "__name__": "budget:chargeback_budget_usage:ratio" on every row)."""
    from exporter.config.schema import parse_config
    from exporter.outputs.report import ReportSource

    class Answer:  # Prometheus' instant answer for the usage series, as PrometheusClient.query yields it
        def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
            assert expr == "budget:chargeback_budget_usage:ratio" and at == 1800.0
            return [({"__name__": expr, "budget": "payments-daily", "period": "daily", "team": "payments"}, 1.2)]

    src = ReportSource(parse_config({}), Answer(), None)  # type: ignore[arg-type]
    assert src.budgets(1800.0) == [{"budget": "payments-daily", "period": "daily", "team": "payments", "usage": 1.2}]
