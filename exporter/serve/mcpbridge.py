"""/mcp on serve's own port: the MCP SDK's Streamable HTTP app bridged into the stdlib HTTP server.

The SDK's transport is ASGI (Starlette); serve is a bounded stdlib `ThreadingHTTPServer`. Rather than
re-implementing the transport, `McpBridge` runs the SDK's own app on a private asyncio loop in one
background thread, and each connection thread hands it one request and waits for the answer. The app
runs stateless with JSON responses (`stateless_http=True, json_response=True`): one POST in, one JSON
body out, no session held by the server (any replica can answer) and no long-lived SSE stream tying up
one of the api.maxConnections threads. The SDK is imported on the first /mcp request only.

Sessions: clients written for stateful servers (OpenCost's integration suite among them) insist on an
`Mcp-Session-Id` from `initialize`, so the bridge issues a random one there. It is an opaque token the
server never stores: later requests may carry it or not, and any replica accepts it, which a stateful
session manager (sessions in one process's memory, 404 elsewhere or after a restart) could not offer.
GET, the server-initiated SSE stream, gets 405 as the specification allows: a stateless server has
nothing to push, and an open stream would hold a connection thread until REQUEST_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.engine.limits import Admission
    from exporter.serve.server import Exporter

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
MAX_BODY = 1 << 20  # bytes of one JSON-RPC request; tool arguments are a few short strings
# Seconds a connection thread waits for the loop. Tools run under the API's admission deadline (api.timeout),
# so this only bounds a stuck loop.
REQUEST_TIMEOUT = 900.0
SESSION_HEADER = "mcp-session-id"
Send = Callable[[int, bytes, str, list[tuple[str, str]]], None]
Error = Callable[[int, str], None]


@dataclass
class Answer:
    status: int = 500
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class McpBridge:
    """The SDK's Streamable HTTP app on a private asyncio loop, called from the connection threads."""

    def __init__(self, exporter: Exporter, admission: Admission) -> None:
        from mcp.server.transport_security import TransportSecuritySettings

        from exporter.serve.mcpserver import build_server

        server = build_server(exporter, admission)
        # Host/Origin checks off: /mcp is guarded by serve's own TLS and auth (webauth), as the API is,
        # and serve listens on any interface under any Service name.
        self.app = server.streamable_http_app(
            streamable_http_path=MCP_PATH, json_response=True, stateless_http=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        self.manager = server.session_manager
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="mcp", daemon=True)
        self.thread.start()
        if not self.ready.wait(30) or self.failed is not None:
            raise RuntimeError(f"the MCP session manager did not start: {self.failed}")

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as e:  # reported to the constructor waiting on `ready`
            self.failed = e
            self.ready.set()

    async def _serve(self) -> None:
        self.stopped = asyncio.Event()
        async with self.manager.run():  # the task group that stateless requests run in
            self.ready.set()
            await self.stopped.wait()

    def close(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stopped.set)
            self.thread.join(timeout=5)

    def handle(self, method: str, query: str, headers: list[tuple[str, str]], body: bytes,
               client: tuple[str, int]) -> Answer:
        """One HTTP exchange through the ASGI app; the whole body is collected (JSON responses only)."""
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": MCP_PATH, "raw_path": MCP_PATH.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
                 "client": client, "server": ("chargeback", 0)}
        answer = Answer()
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:  # the request is whole and the client still waits: nothing more until cancelled
                await asyncio.Event().wait()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")

        asyncio.run_coroutine_threadsafe(self.app(scope, receive, send), self.loop).result(REQUEST_TIMEOUT)
        if (method == "POST" and answer.status == 200 and opens_session(body)
                and not any(k.lower() == SESSION_HEADER for k, _ in answer.headers)):
            answer.headers.append((SESSION_HEADER, uuid.uuid4().hex))
        return answer

    def serve(self, handler: BaseHTTPRequestHandler, send: Send, error: Error) -> None:
        """Read the request from a stdlib handler, run it through the app, write the answer back."""
        if handler.command not in ("POST", "DELETE"):  # GET (and HEAD): no stream to offer, see the module doc
            send(405, NO_STREAM, "application/json", [("Allow", "POST")])
            return
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            error(400, "bad Content-Length")
            return
        if length > MAX_BODY:
            error(413, f"request body over {MAX_BODY} bytes")
            return
        body = handler.rfile.read(length) if length else b""
        query = handler.path.partition("?")[2]
        try:
            answer = self.handle(handler.command, query, list(handler.headers.items()), body,
                                 (handler.client_address[0], handler.client_address[1]))
        except Exception as e:  # a bug must not drop the connection without an answer
            log.exception("%s failed unexpectedly", MCP_PATH)
            error(500, f"unexpected {type(e).__name__}")
            return
        ctype = next((v for k, v in answer.headers if k.lower() == "content-type"), "application/json")
        send(answer.status, answer.body, ctype,
             [(k, v) for k, v in answer.headers if k.lower() not in ("content-type", "content-length")])


NO_STREAM = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
    "code": -32600, "message": "Method Not Allowed: this server is stateless and opens no SSE stream; POST requests"}
}).encode()


def opens_session(body: bytes) -> bool:
    """Whether a JSON-RPC body (one message or a batch) is `initialize`."""
    try:
        message = json.loads(body)
    except ValueError:
        return False
    messages = message if isinstance(message, list) else [message]
    return any(isinstance(m, dict) and m.get("method") == "initialize" for m in messages)


def lazy_bridge(exporter: Exporter, admission: Admission) -> Callable[[], McpBridge]:
    """The bridge of one handler class, started on first use (so serve without MCP clients never loads the SDK)."""
    made: list[McpBridge] = []
    lock = threading.Lock()

    def get() -> McpBridge:
        with lock:
            if not made:
                made.append(McpBridge(exporter, admission))
            return made[0]
    return get
