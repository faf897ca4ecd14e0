"""Evaluating the project's Jsonnet (rules/, dashboards/, deploy/jsonnet/) with the jsonnet library."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import _jsonnet

from exporter.vocab.errors import ConfigError


def source_dir(env: str, folder: str) -> Path:
    """A Jsonnet folder: $<env>, else next to the package in a source checkout (or the image's /opt)."""
    override = os.environ.get(env)
    path = Path(override) if override else Path(__file__).resolve().parents[2] / folder
    if not (path / "mixin.libsonnet").is_file() and not (path / "main.jsonnet").is_file():
        raise ConfigError(f"{folder}/ not found at {path}: set {env} to that folder")
    return path


def evaluate(entry: Path, what: str, **tla: Any) -> Any:
    """Evaluate an entry point with top-level arguments; a Jsonnet error becomes one ConfigError line."""
    try:
        return json.loads(_jsonnet.evaluate_file(str(entry), tla_codes={k: json.dumps(v) for k, v in tla.items()}))
    except RuntimeError as e:
        raise ConfigError(f"rendering {what} failed: {str(e).splitlines()[0]}") from e
