"""A fault-injecting HTTP proxy in front of a real Prometheus, programmable per test.

Each request is matched against the faults in the order they were added: the first whose `match`
substring occurs in the PromQL query (or path) and that has uses left decides the answer; with none,
the request passes through to Prometheus untouched. So "fails twice, then recovers" is
`proxy.add(Fault("http500", times=2))`.
"""

from __future__ import annotations

import contextlib
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import requests

Mode = Literal["http500", "http503", "slow", "truncated", "dropped", "html200", "html502", "no_data", "list",
               "random", "gzip_garbage"]

HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@dataclass
class Fault:
    """One programmed failure. `times=None` applies to every matching request."""

    mode: Mode
    times: int | None = None
    match: str = ""
    delay: float = 0.0  # seconds, for `slow`
    seed: int = 0  # for `random`: the bytes of the n-th faulted request come from seed + n
    cut: float = 0.5  # for `truncated` and `dropped`: the fraction of the real answer sent


@dataclass
class Seen:
    query: str
    fault: Mode | None


@dataclass
class FaultProxy:
    """A ThreadingHTTPServer on a free 127.0.0.1 port that forwards to `upstream` unless a fault applies."""

    upstream: str
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, fault: Fault) -> FaultProxy:
        with self.lock:
            self.faults.append(fault)
        return self

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.seen.clear()

    def pick(self, query: str) -> tuple[Fault | None, int]:
        """The fault for this request (consuming one use) and how many requests it has faulted before."""
        with self.lock:
            for f in self.faults:
                if f.match in query and (f.times is None or f.times > 0):
                    used = sum(1 for s in self.seen if s.fault == f.mode)
                    if f.times is not None:
                        f.times -= 1
                    self.seen.append(Seen(query, f.mode))
                    return f, used
            self.seen.append(Seen(query, None))
            return None, 0

    def faulted(self) -> int:
        with self.lock:
            return sum(1 for s in self.seen if s.fault is not None)

    @contextmanager
    def running(self) -> Iterator[str]:
        """Serve until the block ends; yields the proxy's base URL."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus speaks it: a dropped body is then visible

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()  # headers and body go out in separate writes: no Nagle delay between them
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                self.handle_any(b"")

            def do_POST(self) -> None:
                self.handle_any(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def handle_any(self, body: bytes) -> None:
                params = parse_qs(urlsplit(self.path).query) | parse_qs(body.decode())
                query = (params.get("query") or [self.path])[0]
                fault, n = proxy.pick(query)
                if fault is None:
                    self.forward(body)
                else:
                    self.inject(fault, n, body)

            def upstream(self, body: bytes) -> requests.Response:
                """What Prometheus answers to this very request."""
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
                return requests.request(self.command, proxy.upstream + self.path, data=body or None,
                                        headers=headers, timeout=60)

            def forward(self, body: bytes) -> None:
                resp = self.upstream(body)
                self.reply(resp.status_code, resp.content, resp.headers.get("Content-Type", "application/json"))

            def reply(self, code: int, payload: bytes, ctype: str = "application/json",
                      extra: dict[str, str] | None = None, length: int | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload) if length is None else length))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def inject(self, f: Fault, n: int, body: bytes) -> None:
                m = f.mode
                if m == "http500":
                    self.reply(500, b"Internal Server Error\n", "text/plain")
                elif m == "http503":
                    self.reply(503, b"Service Unavailable\n", "text/plain", {"Retry-After": "1"})
                elif m == "slow":
                    time.sleep(f.delay)
                    with contextlib.suppress(OSError):  # the client gave up first, as it should
                        self.forward(body)
                elif m == "truncated":  # a consistent Content-Length, but the JSON stops mid-way
                    payload = self.upstream(body).content
                    self.reply(200, payload[: int(len(payload) * f.cut)])
                elif m == "dropped":  # the promised body is cut by a dropped connection
                    payload = self.upstream(body).content
                    self.close_connection = True
                    self.reply(200, payload[: int(len(payload) * f.cut)], length=len(payload))
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif m == "html200":
                    self.reply(200, HTML, "text/html")
                elif m == "html502":
                    self.reply(502, HTML, "text/html")
                elif m == "no_data":
                    self.reply(200, b'{"status":"success"}')
                elif m == "list":
                    self.reply(200, b'[{"status":"success"}]')
                elif m == "random":
                    rng = random.Random(f.seed + n)
                    self.reply(200, rng.randbytes(rng.randrange(0, 400)))
                elif m == "gzip_garbage":
                    self.reply(200, b"\x1f\x8b\x08\x00garbage", extra={"Content-Encoding": "gzip"})
                else:  # pragma: no cover - a test typo
                    raise AssertionError(f"unknown fault {m}")

        srv = _QuietServer(("127.0.0.1", 0), Handler)
        srv.daemon_threads = True
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{srv.server_address[1]}"
        finally:
            srv.shutdown()
            srv.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up (timed out, was killed) is part of the test, not an error to print."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

