"""`chargeback serve`'s HTTP side: the handler that routes every endpoint, and the server around the loop.

The routing (`make_handler`'s do_GET) lives here; the answers come from `server.Exporter`.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client.exposition import choose_encoder

from exporter.config.schema import Config
from exporter.engine.limits import Admission, Busy, Cancelled, DeadlineExceeded
from exporter.outputs.allocbody import AllocationBody
from exporter.serve.httpserver import BoundedHTTPServer
from exporter.serve.mcpbridge import MCP_PATH, lazy_bridge
from exporter.serve.server import Exporter
from exporter.serve.webauth import Auth, load_auth
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ChargebackError, ConfigError
from exporter.vocab.redact import redact_url

log = logging.getLogger(__name__)

# OpenCost's path, its older one, and Kubecost's (same handler, same parameters).
ALLOCATION_PATHS = ("/allocation", "/allocation/compute", "/model/allocation")
# OpenCost's /allocation/summary (and its alias /allocation/compute/summary) and its topline.
SUMMARY_PATHS = {f"{p}{s}": s.endswith("topline") for p in ("", "/model") for s in
                 ("/allocation/summary", "/allocation/compute/summary", "/allocation/summary/topline")}
# OpenCost's web UI pages: path (also under /model) -> (Exporter method, what it answers)
OPENCOST_PAGES = {**{f"/cloudCost/{k}": ("cloud_view", k.rpartition("/")[2])
                     for k in ("view/table", "view/totals", "view/graph", "status")},
                  **{f"/customCost/{k}": ("custom_costs", k) for k in ("total", "timeseries")}}


def make_handler(exporter: Exporter, auth: Auth | None = None) -> type[BaseHTTPRequestHandler]:
    """The endpoints. /metrics, /healthz and /readyz are cheap and never refused for load;
    /allocation/compute runs on a bounded pool (429 beyond it) under a deadline (503 past it)."""
    api = exporter.cfg.api
    admission = Admission(api.maxConcurrent, parse_duration(api.timeout))
    checker = auth or Auth()
    mcp_bridge = lazy_bridge(exporter, admission)

    class Handler(BaseHTTPRequestHandler):
        server_version = "chargeback"
        computations = admission  # run_server stops them on shutdown

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def end_headers(self) -> None:  # every answer, send_error's included
            self.send_header("X-Content-Type-Options", "nosniff")
            super().end_headers()

        def _send(self, code: int, body: bytes, ctype: str, headers: list[tuple[str, str]] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers or []:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, code: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> None:
            self._send(code, json.dumps(payload).encode(), "application/json", headers)

        def _stream(self, body: AllocationBody) -> None:
            """A big answer written piece by piece as it is encoded; its end is the connection's (HTTP/1.0)."""
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if self.command == "HEAD":
                return
            try:
                for piece in body.chunks():
                    self.wfile.write(piece)
            except (BrokenPipeError, ConnectionResetError):
                log.debug("%s went away during the answer", self.address_string())
            except Exception:  # the status is sent: cutting the body short is all that is left to do
                log.exception("encoding the answer failed part way")

        def _error(self, code: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
            self._json(code, {"code": code, "message": message}, headers)

        def _authorized(self, path: str) -> bool:
            if not checker.required(path):
                return True
            try:
                return checker.allows(self.headers.get("Authorization"))
            except ConfigError as e:  # the token file vanished: refuse, and say why in the log
                log.error("cannot check credentials: %s", e)
                return False

        def _compute(self, path: str, run: Callable[[threading.Event], Any]) -> None:
            """An API answer on the bounded pool: 429 when full, 503 past the deadline, 400 for bad input."""
            try:
                body = admission.run(run)
                if isinstance(body, AllocationBody):
                    self._stream(body)
                else:
                    self._json(200, body)
            except Busy as e:
                self._error(429, str(e), [("Retry-After", "5")])
            except (DeadlineExceeded, Cancelled) as e:
                self._error(503, str(e))
            except ConfigError as e:
                self._error(400, str(e))
            except ChargebackError as e:
                self._error(502, str(e))
            except Exception as e:  # a bug must not drop the connection without an answer
                log.exception("%s failed unexpectedly", path)
                self._error(500, f"unexpected {type(e).__name__}")

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_POST(self) -> None:
            self._mcp()

        def do_DELETE(self) -> None:
            self._mcp()

        def _mcp(self) -> None:
            """/mcp (POST, GET, DELETE): MCP Streamable HTTP (exporter/serve/mcpserver.py), with the API's auth."""
            url = urlparse(self.path)
            if url.path.rstrip("/") != MCP_PATH:  # other paths answer POST/DELETE as http.server did before
                self.send_error(501, f"Unsupported method ({self.command!r})")
            elif not self._authorized(url.path):
                self._error(401, "authentication required", [("WWW-Authenticate", c) for c in checker.challenges()])
            else:
                mcp_bridge().serve(self, self._send, self._error)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if not self._authorized(url.path):
                self._error(401, "authentication required", [("WWW-Authenticate", c) for c in checker.challenges()])
            elif url.path == "/metrics":
                encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(exporter.registry), ctype)
            elif url.path == "/healthz":
                ok = exporter.healthy()
                h = exporter.health
                self._json(200 if ok else 503, {"alive": ok, "up": h.up, "lastError": h.last_error,
                                                "accruedUntil": exporter.ledger.watermark,
                                                "lastProgress": int(exporter.progress_at)})
            elif url.path == "/readyz":
                self._json(200 if exporter.health.up else 503, {"up": exporter.health.up,
                                                                "lastError": exporter.health.last_error})
            elif url.path in ALLOCATION_PATHS:  # blank values kept: `shareNamespaces=` turns sharing off
                query = parse_qs(url.query, keep_blank_values=True)
                self._compute(url.path, lambda cancel: exporter.allocation_body(query, cancel))
            elif url.path in SUMMARY_PATHS:
                query, top = parse_qs(url.query, keep_blank_values=True), SUMMARY_PATHS[url.path]
                self._compute(url.path, lambda cancel: exporter.allocation_summary(query, cancel, topline=top))
            elif url.path.rstrip("/") == MCP_PATH:
                self._mcp()
            elif url.path in ("/assets", "/model/assets", "/cloudCost", "/model/cloudCost"):
                query = parse_qs(url.query)
                compute = exporter.assets if url.path.endswith("/assets") else exporter.cloud_costs
                self._compute(url.path, lambda cancel: compute(query, cancel))
            elif (page := OPENCOST_PAGES.get(url.path.removeprefix("/model"))) is not None:
                query, (method, kind) = parse_qs(url.query), page
                self._compute(url.path, lambda cancel: getattr(exporter, method)(kind, query, cancel))
            else:
                self._error(404, f"no such path {url.path}")

    return Handler


def run_server(cfg: Config, until: str | None = None) -> None:
    auth, tls = load_auth(cfg.api.webConfigFile, cfg.api.bearerTokenFile, cfg.api.openPaths)
    exporter = Exporter(cfg, until)
    host, _, port = cfg.serve.listen.rpartition(":")
    handler = make_handler(exporter, auth)
    httpd = BoundedHTTPServer((host or "0.0.0.0", int(port)), handler, cfg.api.maxConnections,
                              parse_duration(cfg.api.readTimeout), tls)
    worker = threading.Thread(target=exporter.loop, name="accrual", daemon=True)

    def shutdown(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        exporter.close()
        handler.computations.close()  # type: ignore[attr-defined]
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log.info("serving on %s (Prometheus %s)", cfg.serve.listen, redact_url(cfg.prometheus.url))
    worker.start()
    httpd.serve_forever()
    worker.join(timeout=10)
