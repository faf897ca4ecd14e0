"""A tiny Kubernetes API server: the real list and watch paths and JSON for namespaces and pods.

It speaks PartialObjectMetadata (what chargeback asks for), checks the bearer token,
and records every request it did not expect; the fixture fails the test on any.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

TOKEN = "chargeback-test-token"


class FakeKube:
    def __init__(self) -> None:
        kinds = ("namespaces", "pods", "nodes")
        self.objects: dict[str, dict[tuple[str, str], dict[str, str]]] = {k: {} for k in kinds}
        self.version = 100
        self.events: dict[str, list[tuple[int, dict[str, Any]]]] = {k: [] for k in kinds}
        self.unexpected: list[str] = []
        self.annotations: dict[tuple[str, str], dict[str, str]] = {}
        self.requests: list[str] = []
        self.cond = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeKube:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.cond.notify_all()
        self.server.shutdown()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))
        return path

    def put(self, kind: str, namespace: str, name: str, labels: dict[str, str], event: str = "ADDED") -> None:
        with self.cond:
            self.version += 1
            key = (namespace, name)
            if event == "DELETED":
                self.objects[kind].pop(key, None)
            else:
                self.objects[kind][key] = labels
            self.events[kind].append((self.version, {"type": event, "object": self._obj(kind, key, labels)}))
            self.cond.notify_all()

    def _obj(self, kind: str, key: tuple[str, str], labels: dict[str, str]) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": key[1], "labels": labels, "resourceVersion": str(self.version),
                                "uid": f"uid-{key[0]}-{key[1]}"}
        if kind == "pods":
            meta["namespace"] = key[0]
        if self.annotations.get(key):
            meta["annotations"] = self.annotations[key]
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _fail(self, code: int, why: str) -> None:
                fake.unexpected.append(f"{self.command} {self.path}: {why}")
                body = json.dumps({"kind": "Status", "status": "Failure", "code": code, "message": why}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                fake.requests.append(self.path)
                kind = {"/api/v1/namespaces": "namespaces", "/api/v1/pods": "pods",
                        "/api/v1/nodes": "nodes"}.get(url.path)
                if kind is None:
                    return self._fail(404, "unexpected path")
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._fail(401, "missing or wrong bearer token")
                if "as=PartialObjectMetadata" not in (self.headers.get("Accept") or ""):
                    return self._fail(406, "expected a PartialObjectMetadata request")
                q = parse_qs(url.query)
                if q.get("watch") == ["true"]:
                    return self._watch(kind, int(q.get("resourceVersion", ["0"])[0] or 0))
                with fake.cond:
                    items = [fake._obj(kind, k, v) for k, v in sorted(fake.objects[kind].items())]
                    version = fake.version
                body = json.dumps({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                   "metadata": {"resourceVersion": str(version)}, "items": items}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _watch(self, kind: str, since: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                self.end_headers()
                deadline = time.monotonic() + 2
                sent = since
                while time.monotonic() < deadline:
                    with fake.cond:
                        new = [(v, e) for v, e in fake.events[kind] if v > sent]
                        if not new:
                            fake.cond.wait(0.2)
                            continue
                    for v, e in new:
                        self.wfile.write(json.dumps(e).encode() + b"\n")
                        self.wfile.flush()
                        sent = v
                self.close_connection = True

        return Handler
