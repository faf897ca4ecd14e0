"""Hostile clients on loopback (slow drips, idle sockets, probes), for the load test and before/after figures.

`python -m tests.hostile ROOT [ROOT...]` starts a small real Prometheus, then for each source tree ROOT a
`chargeback serve` run from it (PYTHONPATH=ROOT), and prints what issue 25 measured: probe latency under
64 slow connections, a scrape's latency under 200 idle ones, and a `GET /mcp` with valid credentials.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

from demo.localprom import PrometheusServer, backfill, free_port

from .limits_stack import DAY, day_cluster

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4000 + b"\r\n\r\n"


class Drip(threading.Thread):
    """`n` connections, each sending one byte of a request every `every` seconds; one closed by the
    server is counted and reopened, so `n` stay open for as long as the drip lasts."""

    def __init__(self, port: int, n: int, every: float) -> None:
        super().__init__(daemon=True)
        self.port, self.n, self.every = port, n, every
        self.stop = threading.Event()
        self.closed_by_server = 0
        self.lifetimes: list[float] = []
        self.socks: list[tuple[socket.socket, float, int]] = []

    def _open(self) -> tuple[socket.socket, float, int]:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.setblocking(False)
        return s, time.monotonic(), 0

    def run(self) -> None:
        self.socks = [self._open() for _ in range(self.n)]
        while not self.stop.wait(self.every):
            for i, (s, opened, sent) in enumerate(self.socks):
                try:
                    with contextlib.suppress(BlockingIOError):
                        if s.recv(1) == b"":
                            raise ConnectionResetError
                    s.send(REQUEST[sent % len(REQUEST):sent % len(REQUEST) + 1])
                    self.socks[i] = (s, opened, sent + 1)
                except OSError:
                    s.close()
                    self.closed_by_server += 1
                    self.lifetimes.append(time.monotonic() - opened)
                    with contextlib.suppress(OSError):
                        self.socks[i] = self._open()

    def close(self) -> None:
        self.stop.set()
        self.join(10)
        for s, _, _ in self.socks:
            s.close()


def timed_get(url: str, timeout: float = 10, headers: dict[str, str] | None = None) -> tuple[float | None, int | None]:
    """(seconds, status) of one GET on a fresh connection; (None, None) if no answer within `timeout`."""
    started = time.monotonic()
    try:
        r = requests.get(url, timeout=timeout, headers={"Connection": "close", **(headers or {})})
    except requests.RequestException:
        return None, None
    return time.monotonic() - started, r.status_code


def measure(url: str, port: int, token: str) -> dict[str, object]:
    """The three figures of issue 25 against one running serve."""
    auth = {"Authorization": f"Bearer {token}"}
    out: dict[str, object] = {}
    drip = Drip(port, 64, 3.0)
    drip.start()
    time.sleep(1)
    probes = [timed_get(f"{url}{p}", 10, headers=auth) for _ in range(5) for p in ("/healthz", "/metrics")]
    drip.close()
    out["64 slow: probe seconds (max; None = dropped after 10 s)"] = (
        None if any(t is None for t, _ in probes) else round(max(t for t, _ in probes if t is not None), 3))
    out["64 slow: probes unanswered of 10"] = sum(t is None for t, _ in probes)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    time.sleep(0.5)
    out["200 idle: scrape seconds"] = timed_get(f"{url}/metrics", 60, headers=auth)[0]
    for s in idle:
        s.close()
    out["GET /mcp with credentials (seconds, status)"] = timed_get(f"{url}/mcp", 30, headers=auth)
    return out


def main(roots: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = int(time.time()) // 3600 * 3600 - 2 * 3600
        backfill(day_cluster(), root / "data", t0 - DAY - 1800, t0 + 600, 60)
        (root / "token").write_text("s3cret\n")
        with PrometheusServer(root / "data") as prom:
            for tree in roots:
                port = free_port()
                cfg = {"prometheus": {"url": prom.url}, "serve": {"interval": "1h", "listen": f"127.0.0.1:{port}"},
                       "api": {"bearerTokenFile": str(root / "token")}}
                (root / "serve.yaml").write_text(yaml.safe_dump(cfg))
                cmd = [sys.executable, "-m", "exporter", "serve", "--config", str(root / "serve.yaml")]
                proc = subprocess.Popen(cmd,
                                        env={**os.environ, "PYTHONPATH": tree, "PYTHONDONTWRITEBYTECODE": "1"}, cwd=tmp,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    url = f"http://127.0.0.1:{port}"
                    deadline = time.monotonic() + 30
                    while timed_get(f"{url}/readyz", 2)[1] is None and time.monotonic() < deadline:
                        time.sleep(0.2)
                    print(tree, measure(url, port, "s3cret"), flush=True)
                finally:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
