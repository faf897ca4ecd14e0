"""The strict base model every config section uses, and the duration check they share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def valid_duration(v: str) -> str:
    """Prometheus duration check as a pydantic validator (a ValueError carries the key's location)."""
    try:
        parse_duration(v)
    except ConfigError as e:
        raise ValueError(str(e)) from e
    return v


# A Prometheus duration (`90s`, `5m`, `1h30m`): the one validator every duration key uses.
Duration = Annotated[str, AfterValidator(valid_duration)]


class StrictModel(BaseModel):
    """Unknown keys are errors; values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# A config, price book or budgets file is a few KiB; these bounds stop a wrong file (a log, a binary,
# a YAML alias bomb) from costing memory or minutes before its one-line error.
MAX_FILE_BYTES = 1 << 20  # 1 MiB
MAX_NODES = 250_000  # YAML nodes with every alias expanded where it is used
MAX_DEPTH = 64


def read_yaml(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML mapping from a file; ConfigError naming the file on any problem."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{what} {p}: cannot read: {e.strerror}") from e
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{what} {p}: larger than {MAX_FILE_BYTES >> 20} MiB; is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {p}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from e
    try:
        raw = _bounded_yaml(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {p}: not valid YAML: {str(e).splitlines()[0]}") from e
    except RecursionError as e:
        raise ConfigError(f"{what} {p}: nested too deeply (more than {MAX_DEPTH} levels)") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {p}: top level must be a mapping, got {type(raw).__name__}")
    return raw


def _bounded_yaml(text: str) -> Any:
    """yaml.safe_load, after checking the node graph's depth and its size with aliases expanded."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        height, size = _measure(node, {}, set())
        if height > MAX_DEPTH:
            raise RecursionError
        if size > MAX_NODES:
            raise yaml.YAMLError(f"more than {MAX_NODES:,} values once aliases are expanded (an alias bomb?)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _measure(node: yaml.Node, memo: dict[int, tuple[int, int]], open_: set[int]) -> tuple[int, int]:
    """(height, expanded size) of a node; each shared (aliased) node is measured once."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in open_:
        raise yaml.YAMLError("an alias refers to its own ancestor (a recursive structure)")
    if len(open_) > MAX_DEPTH:
        raise RecursionError
    open_.add(key)
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    height, size = 0, 1
    for child in children:
        h, n = _measure(child, memo, open_)
        height, size = max(height, h + 1), min(size + n, MAX_NODES + 1)
    open_.discard(key)
    memo[key] = (height, size)
    return height, size


def validated(model: type[M], raw: dict[str, Any], source: str) -> M:
    """Validate; the first error becomes one line naming its key path."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise ConfigError(f"{source}: {key}: {first['msg']}") from e
