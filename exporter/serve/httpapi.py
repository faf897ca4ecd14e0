"""`chargeback serve`'s HTTP side: the ASGI app that routes every endpoint, and the server around the loop.

The routing (`Api.dispatch`) lives here; the answers come from `server.Exporter`. The app runs on one
event loop (serve/httpserver.py); nothing here blocks it: /healthz and /readyz read a few fields,
/metrics is built on a small pool of its own, credentials are checked on another (bcrypt is slow), and
the API's computations run on engine/limits.py's bounded pool, awaited without holding a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from exporter.config.schema import Config
from exporter.engine.limits import Admission, Busy, Cancelled, DeadlineExceeded
from exporter.outputs.allocbody import AllocationBody
from exporter.serve.httpserver import AsyncHTTPServer
from exporter.serve.mcpbridge import MCP_PATH, McpMount
from exporter.serve.server import Exporter
from exporter.serve.webauth import Auth, load_auth
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ChargebackError, ConfigError
from exporter.vocab.redact import redact_url

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[MutableMapping[str, Any]], Any]

# OpenCost's path, its older one, and Kubecost's (same handler, same parameters).
ALLOCATION_PATHS = ("/allocation", "/allocation/compute", "/model/allocation")
# OpenCost's /allocation/summary (and its alias /allocation/compute/summary) and its topline.
SUMMARY_PATHS = {f"{p}{s}": s.endswith("topline") for p in ("", "/model") for s in
                 ("/allocation/summary", "/allocation/compute/summary", "/allocation/summary/topline")}
# OpenCost's web UI pages: path (also under /model) -> (Exporter method, what it answers)
OPENCOST_PAGES = {**{f"/cloudCost/{k}": ("cloud_view", k.rpartition("/")[2])
                     for k in ("view/table", "view/totals", "view/graph", "status")},
                  **{f"/customCost/{k}": ("custom_costs", k) for k in ("total", "timeseries")}}


def _json(code: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload).encode(), code, headers, "application/json")


def _error(code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(code, {"code": code, "message": message}, headers)


class Api:
    """The endpoints. /metrics, /healthz and /readyz are cheap and never refused for load;
    the API runs on a bounded pool (429 beyond it) under a deadline (503 past it)."""

    def __init__(self, exporter: Exporter, auth: Auth | None) -> None:
        api = exporter.cfg.api
        self.exporter = exporter
        self.admission = Admission(api.maxConcurrent, parse_duration(api.timeout))
        self.checker = auth or Auth()
        self.probes = ThreadPoolExecutor(2, thread_name_prefix="metrics")
        self.auth_pool = ThreadPoolExecutor(2, thread_name_prefix="auth")
        self.mcp = McpMount(exporter, self.admission)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every answer carries nosniff (and the server's name), the errors included."""
        async def stamped(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff"),
                                      (b"server", b"chargeback")]
            await send(message)
        await self.dispatch(scope, receive, stamped)

    async def _authorized(self, path: str, headers: Headers) -> bool:
        if not self.checker.required(path):
            return True
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.auth_pool, self.checker.allows, headers.get("authorization"))
        except ConfigError as e:  # the token file vanished: refuse, and say why in the log
            log.error("cannot check credentials: %s", e)
            return False

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path, headers = scope["method"], scope["path"], Headers(scope=scope)
        if method not in ("GET", "HEAD") and path.rstrip("/") != MCP_PATH:
            answer = _error(501, f"Unsupported method ({method!r})")
        elif not await self._authorized(path, headers):
            answer = _error(401, "authentication required")
            for challenge in self.checker.challenges():  # one header per accepted scheme
                answer.headers.append("WWW-Authenticate", challenge)
        elif path.rstrip("/") == MCP_PATH:
            await self.mcp(scope, receive, send)
            return
        else:
            answer = await self.get(path, scope["query_string"].decode("latin-1"), headers)
        await answer(scope, receive, send)

    async def get(self, path: str, raw_query: str, headers: Headers) -> Response:
        ex, query = self.exporter, parse_qs(raw_query)
        if path == "/metrics":
            encoder, ctype = choose_encoder(headers.get("accept", ""))
            body = await asyncio.get_running_loop().run_in_executor(self.probes, encoder, ex.registry)
            return Response(body, 200, media_type=ctype)
        if path == "/healthz":
            ok, h = ex.healthy(), ex.health
            return _json(200 if ok else 503, {"alive": ok, "up": h.up, "lastError": h.last_error,
                                              "accruedUntil": ex.ledger.watermark, "lastProgress": int(ex.progress_at)})
        if path == "/readyz":
            return _json(200 if ex.health.up else 503, {"up": ex.health.up, "lastError": ex.health.last_error})
        if path in ALLOCATION_PATHS or path in SUMMARY_PATHS:  # blank values kept: `shareNamespaces=` turns sharing off
            kept = parse_qs(raw_query, keep_blank_values=True)
            if path in ALLOCATION_PATHS:
                return await self.compute(path, lambda cancel: ex.allocation_body(kept, cancel))
            top = SUMMARY_PATHS[path]
            return await self.compute(path, lambda cancel: ex.allocation_summary(kept, cancel, topline=top))
        if path in ("/assets", "/model/assets", "/cloudCost", "/model/cloudCost"):
            fn = ex.assets if path.endswith("/assets") else ex.cloud_costs
            return await self.compute(path, lambda cancel: fn(query, cancel))
        if (page := OPENCOST_PAGES.get(path.removeprefix("/model"))) is not None:
            method, kind = page
            return await self.compute(path, lambda cancel: getattr(ex, method)(kind, query, cancel))
        return _error(404, f"no such path {path}")

    async def compute(self, path: str, run: Callable[[threading.Event], Any]) -> Response:
        """An API answer on the bounded pool: 429 when full, 503 past the deadline, 400 for bad input."""
        try:
            body = await self.admission.run_async(run)
            if isinstance(body, AllocationBody):
                return StreamingResponse(iterate_in_threadpool(_pieces(body)), media_type="application/json")
            return _json(200, body)
        except Busy as e:
            return _error(429, str(e), {"Retry-After": "5"})
        except (DeadlineExceeded, Cancelled) as e:
            return _error(503, str(e))
        except ConfigError as e:
            return _error(400, str(e))
        except ChargebackError as e:
            return _error(502, str(e))
        except Exception as e:  # a bug must not drop the connection without an answer
            log.exception("%s failed unexpectedly", path)
            return _error(500, f"unexpected {type(e).__name__}")

    def close(self) -> None:
        """On shutdown: stop the computations at their next chunk."""
        self.admission.close()
        self.probes.shutdown(wait=False, cancel_futures=True)
        self.auth_pool.shutdown(wait=False, cancel_futures=True)


def _pieces(body: AllocationBody) -> Iterator[bytes]:
    """A big answer encoded piece by piece on a worker thread, each piece sent before the next is made
    (the transport's flow control holds the producer), so memory stays at a piece or two."""
    try:
        yield from body.chunks()
    except Exception:  # the status is sent: cutting the body short (no final chunk) is all that is left
        log.exception("encoding the answer failed part way")
        raise


def make_app(exporter: Exporter, auth: Auth | None = None) -> Starlette:
    """The ASGI app of serve; `app.state.admission` is the API's pool (run_server stops it on shutdown)."""
    api = Api(exporter, auth)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await api.mcp.close()

    app = Starlette(routes=[Route("/{path:path}", api, methods=None)], lifespan=lifespan)
    app.state.admission = api.admission
    app.state.api = api
    return app


def run_server(cfg: Config, until: str | None = None) -> None:
    auth, tls = load_auth(cfg.api.webConfigFile, cfg.api.bearerTokenFile, cfg.api.openPaths)
    exporter = Exporter(cfg, until)
    host, _, port = cfg.serve.listen.rpartition(":")
    app = make_app(exporter, auth)
    if cfg.api.maxConnections != type(cfg.api).model_fields["maxConnections"].default:
        log.warning("api.maxConnections is deprecated and ignored: a connection costs no thread since serve is "
                    "asynchronous (api.readTimeout bounds a slow request); remove the key")
    httpd = AsyncHTTPServer((host or "0.0.0.0", int(port)), app, parse_duration(cfg.api.readTimeout), tls)
    worker = threading.Thread(target=exporter.loop, name="accrual", daemon=True)

    def shutdown(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        exporter.close()
        app.state.api.close()
        httpd.server.should_exit = True

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log.info("serving on %s (Prometheus %s)", cfg.serve.listen, redact_url(cfg.prometheus.url))
    worker.start()
    httpd.serve_forever()
    worker.join(timeout=10)
