"""Grafana dashboards as code: evaluate the dashboards/ Jsonnet and write JSON plus sidecar ConfigMaps."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import _jsonnet
import yaml

from .errors import ConfigError


def dashboards_dir() -> Path:
    """The dashboards/ folder: $CHARGEBACK_DASHBOARDS_DIR, else next to the package in a source checkout."""
    env = os.environ.get("CHARGEBACK_DASHBOARDS_DIR")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "dashboards"
    if not (path / "mixin.libsonnet").is_file():
        raise ConfigError(f"dashboards not found at {path}: set CHARGEBACK_DASHBOARDS_DIR to the dashboards/ folder")
    return path


def render(config: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON; `config` overrides keys of the dashboards' _config."""
    try:
        out = _jsonnet.evaluate_file(str(dashboards_dir() / "lib" / "dashboards.jsonnet"),
                                     tla_codes={"config": json.dumps(config or {})})
    except RuntimeError as e:
        raise ConfigError(f"rendering the dashboards failed: {str(e).splitlines()[0]}") from e
    result: dict[str, dict[str, Any]] = json.loads(out)
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
    entry = dashboards_dir().parent / "deploy" / "jsonnet" / "main.jsonnet"
    try:
        result: dict[str, dict[str, Any]] = json.loads(_jsonnet.evaluate_file(str(entry)))
    except RuntimeError as e:
        raise ConfigError(f"rendering the manifests failed: {str(e).splitlines()[0]}") from e
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
