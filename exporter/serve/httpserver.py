"""The HTTP server under serve: a thread per connection, but a bounded number, each with a read timeout.

ThreadingHTTPServer alone starts a thread for every connection and lets it wait forever for a
request line, so 1,000 idle half-open connections held 1,000 threads. Here a connection that sends
nothing for `read_timeout` is closed, at most `max_connections` are served at once (the others wait
in the listen backlog, so a scrape is delayed, not refused), and the TLS handshake runs on the
connection's thread under the same timeout, never on the accept loop.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


class BoundedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog that holds connections beyond max_connections

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int,
                 read_timeout: float, tls: ssl.SSLContext | None = None) -> None:
        self.max_connections = max_connections
        self.slots = threading.BoundedSemaphore(max_connections)
        self.read_timeout = read_timeout
        self.tls = tls
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Waiting here pauses accept(); a connection that waits longer than a read timeout is dropped.
        if not self.slots.acquire(timeout=self.read_timeout):
            log.warning("all %d connection threads busy for %.0fs: dropping a connection from %s",
                        self.max_connections, self.read_timeout, client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.read_timeout)
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log.debug("TLS handshake with %s failed: %s", client_address[0], e)
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished mid-answer is routine, not a traceback on stderr."""
        log.debug("connection from %s failed", client_address[0], exc_info=True)
