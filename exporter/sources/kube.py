"""Namespace and pod labels from the Kubernetes API: list, then watch, metadata only.

Uses the kubernetes client's configuration (in-cluster service account, or a kubeconfig)
for TLS and auth, and asks the API server for PartialObjectMetadata, so a pod costs a
few hundred bytes here instead of its whole spec. RBAC needed: get/list/watch on
namespaces, pods and nodes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from exporter.config.schema import Attribution
from exporter.core.attribution import BUDGET_PREFIX
from exporter.vocab.errors import ConfigError
from exporter.vocab.labels import Metadata

log = logging.getLogger(__name__)

PARTIAL = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
PARTIAL_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
RESOURCES = {"namespaces": "/api/v1/namespaces", "pods": "/api/v1/pods", "nodes": "/api/v1/nodes"}


def load_api_client(kubeconfig: str | None) -> k8s.ApiClient:
    """In-cluster config when running in a pod, else the kubeconfig; ConfigError if neither works."""
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
            return k8s.ApiClient()
        cfg = k8s.Configuration()
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
        return k8s.ApiClient(configuration=cfg)
    except (k8s_config.ConfigException, OSError, TypeError) as e:
        raise ConfigError(f"Kubernetes API not configured: {e}") from e


class KubeMetadata:
    """A label cache for namespaces and pods; `snapshot()` is safe to call from any thread."""

    def __init__(self, api: k8s.ApiClient, timeout: float = 30) -> None:
        self.api = api
        self.timeout = timeout
        self.lock = threading.Lock()
        self.objects: dict[str, dict[tuple[str, str], dict[str, str]]] = {k: {} for k in RESOURCES}
        self.versions: dict[str, str] = {}
        self.annotations: dict[tuple[str, str], dict[str, str]] = {}  # namespaces' chargeback.io/* only
        self.stop = threading.Event()

    def _get(self, path: str, accept: str, params: list[tuple[str, Any]], stream: bool = False) -> Any:
        """GET through the client's auth/TLS setup; returns the raw urllib3 response (not preloaded)."""
        method, url, headers, _body, _post = self.api.param_serialize(
            "GET", path, query_params=params, header_params={"Accept": accept}, auth_settings=["BearerToken"])
        resp = self.api.call_api(method, url, header_params=headers,
                                 _request_timeout=None if stream else self.timeout).response
        if resp.status != 200:
            text = resp.data[:300].decode(errors="replace") if not stream else resp.reason
            raise RuntimeError(f"GET {path} answered HTTP {resp.status}: {text}")
        return resp

    def list(self, kind: str) -> None:
        """Full list: replaces the cache for `kind` and records the resourceVersion to watch from."""
        items: dict[tuple[str, str], dict[str, str]] = {}
        notes: dict[tuple[str, str], dict[str, str]] = {}
        cont: str | None = None
        while True:
            params: list[tuple[str, Any]] = [("limit", 500)] + ([("continue", cont)] if cont else [])
            body = json.loads(self._get(RESOURCES[kind], PARTIAL, params).data)
            for obj in body.get("items", []):
                items[_key(obj)] = (obj.get("metadata") or {}).get("labels") or {}
                if kind == "namespaces":
                    notes[_key(obj)] = _budget_annotations(obj)
            cont = (body.get("metadata") or {}).get("continue")
            if not cont:
                break
        with self.lock:
            self.objects[kind] = items
            if kind == "namespaces":
                self.annotations = notes
            self.versions[kind] = (body.get("metadata") or {}).get("resourceVersion", "")

    def sync(self) -> KubeMetadata:
        for kind in RESOURCES:
            self.list(kind)
        return self

    def events(self, kind: str) -> Iterator[dict[str, Any]]:
        params: list[tuple[str, Any]] = [("watch", "true"), ("allowWatchBookmarks", "true"),
                                         ("resourceVersion", self.versions.get(kind, "")),
                                         ("timeoutSeconds", 300)]
        resp = self._get(RESOURCES[kind], PARTIAL_WATCH, params, stream=True)
        buf = b""
        for chunk in resp.stream(4096, decode_content=True):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)

    def apply(self, kind: str, event: dict[str, Any]) -> bool:
        """Apply one watch event; False means the watch is stale (410 Gone) and needs a relist."""
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        if event.get("type") == "ERROR":
            return obj.get("code") != 410
        if meta.get("resourceVersion"):
            self.versions[kind] = meta["resourceVersion"]
        if event.get("type") == "BOOKMARK":
            return True
        with self.lock:
            if event.get("type") == "DELETED":
                self.objects[kind].pop(_key(obj), None)
                self.annotations.pop(_key(obj), None)
            else:
                self.objects[kind][_key(obj)] = meta.get("labels") or {}
                if kind == "namespaces":
                    self.annotations[_key(obj)] = _budget_annotations(obj)
        return True

    def watch_forever(self, kind: str) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                for event in self.events(kind):
                    if not self.apply(kind, event):
                        log.info("watch on %s expired; relisting", kind)
                        self.list(kind)
                        break
                backoff = 1.0
            except Exception as e:  # keep the last good cache; retry with backoff
                if self.stop.is_set():  # closed: the connection dropping is expected, not news
                    return
                log.warning("watch on %s failed: %s; retrying in %.0fs", kind, e, backoff)
                if self.stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 60)
                try:
                    self.list(kind)
                except Exception as le:
                    log.warning("relist of %s failed: %s", kind, le)

    def start_watches(self) -> None:
        for kind in RESOURCES:
            threading.Thread(target=self.watch_forever, args=(kind,), name=f"watch-{kind}", daemon=True).start()

    def close(self) -> None:
        """Stop watching; a watcher blocked on an open stream exits quietly when it next wakes."""
        self.stop.set()

    def snapshot(self, _window: object = None) -> Metadata:
        with self.lock:
            namespaces = {name: dict(labels) for (_ns, name), labels in self.objects["namespaces"].items()}
            nodes = {name: dict(labels) for (_ns, name), labels in self.objects["nodes"].items()}
            notes = {name: dict(a) for (_ns, name), a in self.annotations.items() if a}
            pods = {k: dict(v) for k, v in self.objects["pods"].items()}
        counts: dict[str, int] = {}
        for ns, _pod in pods:
            counts[ns] = counts.get(ns, 0) + 1
        return Metadata("kubernetes", namespaces, pods, counts, nodes, notes)


def _budget_annotations(obj: dict[str, Any]) -> dict[str, str]:
    notes = (obj.get("metadata") or {}).get("annotations") or {}
    return {k: str(v) for k, v in notes.items() if k.startswith(BUDGET_PREFIX)}


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def connect(kubeconfig: str | None, watch: bool) -> KubeMetadata:
    """Configure, list once (fail fast with a clear error), and optionally keep watching."""
    meta = KubeMetadata(load_api_client(kubeconfig))
    started = time.monotonic()
    try:
        meta.sync()
    except Exception as e:
        raise ConfigError(f"Kubernetes API unreachable: {str(e).splitlines()[0][:300]}") from e
    log.info("attribution labels from the Kubernetes API: %d namespaces, %d pods listed in %.1fs",
             len(meta.objects["namespaces"]), len(meta.objects["pods"]), time.monotonic() - started)
    if watch:
        meta.start_watches()
    return meta


def metadata_source(attribution: Attribution, watch: bool) -> Callable[[object], Metadata] | None:
    """The Kubernetes API when configured and reachable (`auto`), else None: read labels from Prometheus."""
    if attribution.source == "prometheus" or not attribution.labels:
        return None
    try:
        return connect(attribution.kubeconfig, watch).snapshot
    except ConfigError as e:
        if attribution.source == "kubernetes":
            raise
        log.info("attribution labels from Prometheus (kube_pod_labels, kube_namespace_labels): %s",
                 str(e).splitlines()[0][:300])
        return None
