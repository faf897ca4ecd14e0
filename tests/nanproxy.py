"""A small HTTP proxy in front of a real Prometheus that rewrites answers to NaN or +Inf.

Prometheus itself answers correctly; what a production Prometheus can answer after a bad scrape
(a NaN price from an exporter bug, an Inf capacity) is injected here, per query and series, for
queries evaluated inside a time range.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests

from demo.localprom import free_port


@dataclass
class Inject:
    """Answer `value` for every sample of a query containing `query_has` whose labels include `labels`,
    when the query is evaluated at a time in (after, until]."""

    query_has: str
    labels: dict[str, str]
    value: str = "NaN"
    after: float = float("-inf")
    until: float = float("inf")
    hits: list[str] = field(default_factory=list)  # the queries rewritten

    def applies(self, query: str, at: float) -> bool:
        return self.query_has in query and self.after < at <= self.until

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.labels.items())


class NanProxy:
    def __init__(self, upstream: str, injects: list[Inject] | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.injects = injects or []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def rewrite(self, params: dict[str, list[str]], body: dict[str, Any]) -> dict[str, Any]:
        query = params.get("query", [""])[0]
        at = float(params.get("time", ["0"])[0])
        active = [i for i in self.injects if i.applies(query, at)]
        if not active or body.get("status") != "success":
            return body
        for sample in body["data"]["result"]:
            for inject in active:
                if inject.matches(sample["metric"]):
                    inject.hits.append(query)
                    if "value" in sample:
                        sample["value"][1] = inject.value
                    for point in sample.get("values", []):
                        point[1] = inject.value
        return body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self, params: dict[str, list[str]], method: str, raw: bytes | None) -> None:
                url = proxy.upstream + urlparse(self.path).path
                if method == "POST":
                    resp = requests.post(url, data=raw, timeout=60,
                                         headers={"Content-Type": self.headers.get("Content-Type", "")})
                else:
                    resp = requests.get(url, params=params, timeout=60)
                try:
                    body = json.dumps(proxy.rewrite(params, resp.json())).encode()
                except ValueError:
                    body = resp.content
                self.send_response(resp.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._forward(parse_qs(urlparse(self.path).query), "GET", None)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._forward(parse_qs(raw.decode()), "POST", raw)

        return Handler

    def __enter__(self) -> NanProxy:
        self.thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
