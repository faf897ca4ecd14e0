"""The strict base model every config section uses, and the duration check they share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .errors import ConfigError
from .window import parse_duration


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
