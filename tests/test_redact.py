"""No secret in any log line, error, FAIL summary, dry-run output or /metrics: every delivery failure mode
against real loopback servers (HTTP, TLS mismatch, SMTP), and a Prometheus URL with a password."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from click.testing import CliRunner

from demo.localprom import free_port
from exporter.cli import main
from exporter.config.schema import Reports
from exporter.core.window import Window
from exporter.outputs.delivery import deliver
from exporter.outputs.report import Group, Report
from exporter.vocab.redact import install_log_redaction, redact, redact_url

from .test_allocate_core import window_arg
from .test_report import Mailbox
from .test_serve import wait_for

CHARGEBACK = Path(sys.executable).parent / "chargeback"


@pytest.mark.parametrize(("text", "expected"), [
    ("http://user:hunter22@prom:9090/api", "http://user:***@prom:9090/api"),
    ("https://ghp_TOKEN1234@github.com/x", "https://***@github.com/x"),
    ("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com/services/***"),
    ("https://hooks.slack.com/triggers/T000/123/XXXXSECRET", "https://hooks.slack.com/triggers/***"),
    ("https://acme.webhook.office.com/webhookb2/aa-bb@cc-dd/IncomingWebhook/ee/ff",
     "https://acme.webhook.office.com/webhookb2/***"),
    ("https://outlook.office.com/webhook/aa@bb/IncomingWebhook/cc/dd", "https://outlook.office.com/webhook/***"),
    ("https://discord.com/api/webhooks/123/SECRETTOKEN", "https://discord.com/api/webhooks/***"),
    ("https://portal/in?token=abc123&team=x&access_token=def&api_key=k1&sig=s1&signature=s2&password=p&secret=q",
     "https://portal/in?token=***&team=x&access_token=***&api_key=***&sig=***&signature=***&password=***&secret=***"),
    # Power Automate (Teams workflows): the signature is in the query.
    ("https://p.logic.azure.com/workflows/1/triggers/manual/paths/invoke?api-version=1&sv=1.0&sig=SIGSECRET",
     "https://p.logic.azure.com/workflows/1/triggers/***?api-version=1&sv=1.0&sig=***"),
    # urllib3's exception text has the path without scheme or host.
    ("HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /services/T0/B0/SEC?token=t1 (Caused",
     "HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /services/***?token=*** (Caused"),
    # Left alone: a Kubernetes API path, PromQL, plain messages.
    ("GET /api/v1/namespaces/a/services/b", "GET /api/v1/namespaces/a/services/b"),
    ('sum by (namespace) (rate(x{job="kubelet"}[5m]))', 'sum by (namespace) (rate(x{job="kubelet"}[5m]))'),
])
def test_redact_patterns(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_configured_secrets_are_redacted_even_without_a_pattern() -> None:
    url = "https://finance.example.com/ingest/Zq81HOOKSECRET"
    assert redact(f"POST {url} failed", [url]) == "POST *** failed"
    assert redact("with url: /ingest/Zq81HOOKSECRET (Caused by", [url]) == "with url: *** (Caused by"
    assert redact_url(url, [url]) == "https://finance.example.com/***"  # still says where it went


# ---- every delivery failure mode, on loopback -------------------------------------------------------

class Hooks(BaseHTTPRequestHandler):
    """Answers by the path's marker, echoing the request path in the body as many servers do."""

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if "SLOW" in self.path:
            time.sleep(2)  # past reports.timeout
        code = 404 if "ECHO404" in self.path else 500 if "FAIL500" in self.path else 200
        body = f"no such hook: {self.path}".encode()
        try:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout)


def _smtp_auth(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    return AuthResult(success=False, handled=False)  # aiosmtpd then answers 535


SECRET_WORDS = ["REFUSEDSLACKSECRET", "USERINFOSECRET", "ECHO404SECRET", "FAIL500TOKENSECRET", "TEAMSFAIL500SECRET",
                "TLSSLACKSECRET", "SLOWGENERICSECRET", "ACCESSTOKENSECRET", "SMTPSECRET"]


@pytest.fixture()
def destinations(tmp_path: Path) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """reports: and the environment holding its secrets; every destination fails a different way."""
    http = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()
    port, closed = http.server_address[1], free_port()
    base = f"http://127.0.0.1:{port}"
    smtp_port = free_port()
    smtp = Controller(Mailbox(), hostname="127.0.0.1", port=smtp_port, authenticator=_smtp_auth,
                      auth_require_tls=False)
    smtp.start()
    env = {
        "S_REFUSED": f"http://127.0.0.1:{closed}/services/T000/B000/REFUSEDSLACKSECRET",  # connection refused
        "W_USERINFO": f"http://hookuser:USERINFOSECRET@127.0.0.1:{closed}/in",  # refused, credentials in userinfo
        "S_404": f"{base}/services/T000/B000/ECHO404SECRET",  # 404 whose body echoes the path
        "W_500": f"{base}/hook?token=FAIL500TOKENSECRET",  # 500 after retries, body echoes the query
        "W_TEAMS": f"{base}/webhookb2/TEAMSFAIL500SECRET@tenant/IncomingWebhook/a/b",  # Teams-style path, 500
        "S_TLS": f"https://127.0.0.1:{port}/services/T000/B000/TLSSLACKSECRET",  # TLS to a plain-HTTP server
        "W_SLOW": f"{base}/generic/SLOWGENERICSECRET",  # read timeout; a path secret no pattern knows
        "W_QUERY": f"{base}/in?access_token=ACCESSTOKENSECRET&ECHO404=1",  # 404
        "SMTP_PASSWORD": "SMTPSECRET",  # SMTP AUTH refused
    }
    reports = {
        "retries": 1, "backoff": 0.01, "timeout": 0.5,
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "starttls": False, "username": "chargeback",
                 "password": {"env": "SMTP_PASSWORD"}, "sender": "chargeback@example.com", "timeout": 5},
        "teams": {
            "payments": {"slack": {"env": "S_REFUSED"}, "webhook": {"env": "W_USERINFO"},
                         "email": ["payments-lead@example.com"]},
            "search": {"slack": {"env": "S_404"}, "webhook": {"env": "W_500"}},
            "web-a": {"slack": {"env": "S_TLS"}, "webhook": {"env": "W_TEAMS"}},
            "web-b": {"webhook": {"env": "W_SLOW"}},
            "web": {"webhook": {"env": "W_QUERY"}},
        },
    }
    yield reports, env
    smtp.stop()
    http.shutdown()


def _report() -> Report:
    groups = [Group(name, total=1.0) for name in ("payments", "search", "web-a", "web-b", "web")]
    return Report(Window(0, 3600, 60), Window(-3600, 0, 60), "team", "computed", "USD", groups, 5.0, 0.0)


def _assert_clean(text: str, env: dict[str, str]) -> None:
    for word in [*SECRET_WORDS, *env.values()]:
        assert word not in text, f"secret {word!r} leaked in:\n{text}"


def test_no_secret_in_any_delivery_failure(destinations: Any, caplog: pytest.LogCaptureFixture,
                                           capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    reports, env = destinations
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    install_log_redaction()  # as `chargeback` does at start-up: urllib3's own log lines name the path
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")  # an earlier CLI run in this process may have quietened it
    outcomes = deliver(_report(), Reports.model_validate(reports))
    got = {o.destination: o for o in outcomes}
    assert len(got) == 9 and not any(o.ok for o in outcomes)
    detail = {k: o.detail for k, o in got.items()}
    assert "Connection refused" in detail["team payments: slack"] and "/services/***" in detail["team payments: slack"]
    assert "Connection refused" in detail["team payments: webhook"]
    assert detail["team payments: email"].startswith("SMTP 127.0.0.1:") and "535" in detail["team payments: email"]
    assert detail["team search: slack"] == "HTTP 404 after retries: no such hook: /services/***"
    # The configured URL's path is masked too: a generic webhook's path may be its credential.
    assert detail["team search: webhook"] == "HTTP 500 after retries: no such hook: ***?token=***"
    assert "SSL" in detail["team web-a: slack"]
    assert detail["team web-a: webhook"] == "HTTP 500 after retries: no such hook: /webhookb2/***"
    assert "timed out" in detail["team web-b: webhook"]
    assert detail["team web: webhook"] == "HTTP 404 after retries: no such hook: /in?access_token=***&ECHO404=1"
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "urllib3" in {r.name.split(".")[0] for r in caplog.records}  # its retry lines were seen, redacted
    out = capsys.readouterr()
    for text in (logged, out.out, out.err, *detail.values()):
        _assert_clean(text, env)


def test_report_send_and_dry_run_print_no_secret(share_prom: Any, destinations: Any, tmp_path: Path) -> None:
    """The CLI end to end, at DEBUG so every library's log line reaches stderr."""
    prom, t0 = share_prom
    reports, env = destinations
    from .test_report import cfg_file

    cfg = cfg_file(tmp_path, prom.url, reports=reports)
    args = ["--log-level", "DEBUG", "report", "--config", str(cfg), "--window", window_arg(t0), "--send"]
    dry = CliRunner(env=env).invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"to http://127.0.0.1:{env['S_404'].split(':')[2].split('/')[0]}/services/***" in dry.output
    assert "to http://hookuser:***@127.0.0.1:" in dry.output and "/generic/***" not in dry.output
    res = CliRunner(env=env).invoke(main, args)
    assert res.exit_code == 1
    fails = [line for line in res.stderr.splitlines() if line.startswith("FAIL ")]
    assert len(fails) == 9, res.stderr
    assert "FAIL team search: webhook: HTTP 500 after retries: no such hook: ***?token=***" in fails
    assert sum("delivery to" in line and "ERROR" in line for line in res.stderr.splitlines()) == 9
    for text in (dry.stdout, dry.stderr, res.stdout, res.stderr):
        _assert_clean(text, env)


# ---- the Prometheus URL ------------------------------------------------------------------------------

PROM_SECRET = "PROMPASSWORDSECRET"


def test_allocate_never_prints_the_prometheus_password(tmp_path: Path) -> None:
    url = f"http://promuser:{PROM_SECRET}@127.0.0.1:{free_port()}"
    proc = subprocess.run([str(CHARGEBACK), "--log-level", "DEBUG", "allocate", "--prometheus-url", url,
                           "--window", "1h"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("chargeback: error: Prometheus at http://promuser:***@127.0.0.1:") and "refused" in last
    assert "Traceback" not in proc.stderr
    assert PROM_SECRET not in proc.stdout + proc.stderr


def test_serve_logs_healthz_and_metrics_carry_no_password(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://promuser:{PROM_SECRET}@127.0.0.1:{free_port()}/?access_token=QUERYSECRET"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"attribution": {"source": "prometheus"},
                                   "prometheus": {"retries": 0}, "serve": {"interval": "1s"}}))
    log = tmp_path / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([str(CHARGEBACK), "--log-level", "DEBUG", "serve", "--config", str(cfg),
                                 "--prometheus-url", url, "--listen", f"127.0.0.1:{port}"],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        def failed() -> Any:
            try:
                body = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
            except requests.RequestException:
                return None
            return body if body["lastError"] else None

        health = wait_for(failed, what="a failed accrual cycle")
        assert "promuser:***@" in health["lastError"]
        pages = [json.dumps(health)] + [requests.get(f"http://127.0.0.1:{port}{p}", timeout=5).text
                                        for p in ("/metrics", "/readyz")]
        assert "chargeback_prometheus_query_errors_total" in pages[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    text = log.read_text()
    assert "(Prometheus http://promuser:***@127.0.0.1:" in text and "access_token=***" in text
    for page in [*pages, text]:
        assert PROM_SECRET not in page and "QUERYSECRET" not in page
