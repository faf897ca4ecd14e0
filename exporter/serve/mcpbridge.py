"""/mcp on serve's own port: the MCP SDK's Streamable HTTP app, called from serve's ASGI app.

Serve runs on uvicorn's event loop (serve/httpserver.py), so the SDK's own ASGI app is called directly
with the request, behind serve's TLS and auth (serve/httpapi.py). It runs stateless with JSON
responses (`stateless_http=True, json_response=True`): one POST in, one JSON body out, no session
held by the server (any replica can answer). The SDK is imported, and its session manager's task
group started, on the first /mcp request only.

Sessions: clients written for stateful servers (OpenCost's integration suite among them) insist on an
`Mcp-Session-Id` from `initialize`, so the mount issues a random one there. It is an opaque token the
server never stores: later requests may carry it or not, and any replica accepts it, which a stateful
session manager (sessions in one process's memory, 404 elsewhere or after a restart) could not offer.
GET, the server-initiated SSE stream, gets 405 as the specification allows: a stateless server has
nothing to push.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.engine.limits import Admission
    from exporter.serve.server import Exporter

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
MAX_BODY = 1 << 20  # bytes of one JSON-RPC request; tool arguments are a few short strings
SESSION_HEADER = "mcp-session-id"
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class McpMount:
    """The SDK's Streamable HTTP app as an ASGI callable, started on first use."""

    def __init__(self, exporter: Exporter, admission: Admission) -> None:
        self.exporter, self.admission = exporter, admission
        self.app: Any = None
        self.started = asyncio.Lock()
        self.stop: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None

    async def _start(self) -> Any:
        async with self.started:
            if self.app is None:
                from mcp.server.transport_security import TransportSecuritySettings

                from exporter.serve.mcpserver import build_server

                server = build_server(self.exporter, self.admission)
                # Host/Origin checks off: /mcp is guarded by serve's own TLS and auth (webauth), as the API is,
                # and serve listens on any interface under any Service name.
                app = server.streamable_http_app(
                    streamable_http_path=MCP_PATH, json_response=True, stateless_http=True,
                    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
                ready, self.stop = asyncio.Event(), asyncio.Event()
                self.task = asyncio.create_task(self._run(server.session_manager, ready, self.stop))
                await ready.wait()
                if self.task.done():
                    raise RuntimeError(f"the MCP session manager did not start: {self.task.exception()}")
                self.app = app
        return self.app

    @staticmethod
    async def _run(manager: Any, ready: asyncio.Event, stop: asyncio.Event) -> None:
        try:
            async with manager.run():  # the task group that stateless requests run in
                ready.set()
                await stop.wait()
        finally:
            ready.set()

    async def close(self) -> None:
        if self.stop is not None and self.task is not None:
            self.stop.set()
            await asyncio.wait([self.task], timeout=5)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """One exchange: GET (and HEAD) get 405, a body over MAX_BODY 413, the rest goes to the SDK."""
        method = scope["method"]
        if method not in ("POST", "DELETE"):  # no stream to offer, see the module doc
            await _answer(send, 405, NO_STREAM, [(b"allow", b"POST")])
            return
        body = await _read_body(scope, receive)
        if isinstance(body, int):
            message = "bad Content-Length" if body == 400 else f"request body over {MAX_BODY} bytes"
            await _answer(send, body, json.dumps({"code": body, "message": message}).encode())
            return
        session = method == "POST" and opens_session(body)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if delivered:  # the body was given whole: what is left is the client going away
                message: dict[str, Any] = await receive()
                return message
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def sending(message: MutableMapping[str, Any]) -> None:
            if session and message["type"] == "http.response.start" and message["status"] == 200:
                headers = list(message.get("headers", []))
                if not any(k.lower() == SESSION_HEADER.encode() for k, _ in headers):
                    message["headers"] = [*headers, (SESSION_HEADER.encode(), uuid.uuid4().hex.encode())]
            await send(message)

        try:
            app = await self._start()
            await app({**scope, "path": MCP_PATH, "raw_path": MCP_PATH.encode()}, replay, sending)
        except Exception as e:  # a bug must not drop the connection without an answer
            log.exception("%s failed unexpectedly", MCP_PATH)
            await _answer(send, 500, json.dumps({"code": 500, "message": f"unexpected {type(e).__name__}"}).encode())


async def _read_body(scope: MutableMapping[str, Any], receive: Receive) -> bytes | int:
    """The request body, or the error status: 400 for a bad Content-Length, 413 past MAX_BODY."""
    declared = dict(scope["headers"]).get(b"content-length", b"0")
    try:
        length = int(declared or 0)
    except ValueError:
        return 400
    if length < 0:
        return 400
    if length > MAX_BODY:
        return 413
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return 400  # the client went away
        parts.append(message.get("body", b""))
        size += len(parts[-1])
        if size > MAX_BODY:
            return 413
        if not message.get("more_body", False):
            return b"".join(parts)


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


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
