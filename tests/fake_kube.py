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
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}  # coordination.k8s.io/v1
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
        self.server.shutdown()  # a no-op if a test already shut it down

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

            def _lease_path(self) -> tuple[str, str | None] | None:
                parts = urlparse(self.path).path.split("/")
                # /apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]
                if parts[1:4] == ["apis", "coordination.k8s.io", "v1"] and len(parts) in (7, 8) \
                        and parts[4] == "namespaces" and parts[6] == "leases":
                    return parts[5], (parts[7] if len(parts) == 8 else None)
                return None

            def _send_json(self, code: int, obj: dict[str, Any]) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _status(self, code: int, reason: str) -> None:
                self._send_json(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                                       "reason": reason, "message": reason})

            def _lease_write(self) -> None:
                fake.requests.append(f"{self.command} {self.path}")
                where = self._lease_path()
                if where is None or self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._fail(404, "unexpected path or token")
                obj = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ns, name = where[0], where[1] or obj["metadata"]["name"]
                with fake.cond:
                    current = fake.leases.get((ns, name))
                    if self.command == "POST" and current is not None:
                        return self._status(409, "AlreadyExists")
                    if self.command == "PUT":
                        if current is None:
                            return self._status(404, "NotFound")
                        if obj["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                            return self._status(409, "Conflict")
                    fake.version += 1
                    obj["metadata"].update(namespace=ns, resourceVersion=str(fake.version))
                    obj.update(kind="Lease", apiVersion="coordination.k8s.io/v1")
                    fake.leases[(ns, name)] = obj
                self._send_json(201 if self.command == "POST" else 200, obj)

            do_POST = _lease_write
            do_PUT = _lease_write

            def do_GET(self) -> None:
                url = urlparse(self.path)
                fake.requests.append(self.path)
                lease = self._lease_path()
                if lease is not None and lease[1] is not None:
                    with fake.cond:
                        current = fake.leases.get((lease[0], lease[1]))
                    return self._send_json(200, current) if current else self._status(404, "NotFound")
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
