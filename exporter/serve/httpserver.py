"""The HTTP server under serve: uvicorn (asyncio, h11) on one event loop; a connection costs no thread.

The thread-per-connection server it replaces let 64 slow clients (one byte every 3 s) take every
connection thread, so /healthz went unanswered and a kubelet would restart the pod. Here a waiting
connection is a socket and a few kilobytes on the loop. uvicorn closes an idle keep-alive connection
after `timeout_keep_alive`, but a client that keeps dripping bytes resets that timer, and uvicorn has
no deadline for reading a request: `DeadlineProtocol` adds one (`api.readTimeout`), armed when a
connection opens and after each answer, cleared once a request (head and body) has been read.
TLS handshakes run on the loop under asyncio's handshake timeout, never on a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import h11
from uvicorn import Config, Server
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

KEEP_ALIVE = 5.0  # seconds an idle keep-alive connection stays open between requests


def deadline_protocol(read_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline of `read_timeout` seconds for reading each request."""

    class DeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(read_timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                log.debug("closing a connection from %s: no whole request within %.0fs",
                          (self.client or ("?",))[0], read_timeout)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is not h11.DONE:
                self._arm()  # the next request's head, from now (a pipelined one may be read already)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return DeadlineProtocol


class _Server(Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Signals are run_server's (it stops the accrual loop and the computations first)."""
        yield


class AsyncHTTPServer:
    """An ASGI app served by uvicorn on a socket bound at construction (so the port is known at once).

    The socketserver-like surface (`serve_forever`, `shutdown`, `server_close`, `server_address`)
    lets run_server and the tests drive it from any thread.
    """

    def __init__(self, address: tuple[str, int], app: Any, read_timeout: float = 10.0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.socket = socket.create_server(address, backlog=1024, reuse_port=False)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        config = Config(app, http=deadline_protocol(read_timeout), lifespan="on", log_config=None,
                        access_log=False, server_header=False, timeout_keep_alive=int(min(KEEP_ALIVE, read_timeout))
                        or 1, timeout_graceful_shutdown=10, backlog=1024,
                        ssl_context_factory=(lambda _c, _d: tls) if tls is not None else None)
        self.server = _Server(config)
        # Its start-up lines, and a warning per malformed request (a hostile client could fill the log): the
        # former server logged these at debug. Failures of the app itself (ERROR) still show.
        logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
        self.stopped = threading.Event()

    @property
    def computations(self) -> Any:
        """The API's admission (engine/limits.py), stopped on shutdown."""
        return self.app.state.admission

    def serve_forever(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.socket]))
        finally:
            self.stopped.set()

    def shutdown(self) -> None:
        self.server.should_exit = True
        self.stopped.wait(30)

    def server_close(self) -> None:
        self.socket.close()
