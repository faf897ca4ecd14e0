"""Grafana dashboards as code: evaluate the dashboards/ Jsonnet and write JSON plus sidecar ConfigMaps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from exporter.mixin.jsonnet import evaluate, source_dir


def render(config: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON; `config` overrides keys of the dashboards' _config."""
    entry = source_dir("CHARGEBACK_DASHBOARDS_DIR", "dashboards") / "lib" / "dashboards.jsonnet"
    result: dict[str, dict[str, Any]] = evaluate(entry, "the dashboards", config=config or {})
    return result


def write_dashboards(out: Path) -> list[Path]:
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for name, dash in sorted(render().items()):
        path = out / name
        path.write_text(json.dumps(dash, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def render_manifests() -> dict[str, dict[str, Any]]:
    """deploy/jsonnet/main.jsonnet: file name -> Kubernetes object (exporter, rules, dashboards, policy)."""
    entry = source_dir("CHARGEBACK_DEPLOY_JSONNET_DIR", "deploy/jsonnet") / "main.jsonnet"
    result: dict[str, dict[str, Any]] = evaluate(entry, "the manifests")
    return result


def write_manifests(deploy: Path) -> list[Path]:
    """Write deploy/manifests/*.yaml and the kustomization that lists them."""
    out = deploy / "manifests"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.yaml"):
        old.unlink()
    header = "# Generated from deploy/jsonnet/main.jsonnet by `make manifests`. Do not edit.\n"
    written = []
    for name, obj in sorted(render_manifests().items()):
        path = out / name
        path.write_text(header + yaml.safe_dump(obj, sort_keys=False, width=1000))
        written.append(path)
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": [f"manifests/{p.name}" for p in written]}
    (deploy / "kustomization.yaml").write_text(header + yaml.safe_dump(kustomization, sort_keys=False))
    return [*written, deploy / "kustomization.yaml"]
