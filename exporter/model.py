"""The strict base model every config section uses, and the duration check they share."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError
from .window import parse_duration

M = TypeVar("M", bound=BaseModel)


def valid_duration(v: str) -> str:
    """Prometheus duration check as a pydantic validator (a ValueError carries the key's location)."""
    try:
        parse_duration(v)
    except ConfigError as e:
        raise ValueError(str(e)) from e
    return v


class StrictModel(BaseModel):
    """Unknown keys are errors; values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def read_yaml(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML mapping from a file; ConfigError naming the file on any problem."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"{what} {p}: cannot read: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {p}: not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {p}: top level must be a mapping, got {type(raw).__name__}")
    return raw


def validated(model: type[M], raw: dict[str, Any], source: str) -> M:
    """Validate; the first error becomes one line naming its key path."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise ConfigError(f"{source}: {key}: {first['msg']}") from e
