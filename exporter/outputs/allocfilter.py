"""OpenCost's v2 filter language (`filter=namespace:"a","b"+label[team]!:"x"`), parsed by recursive descent.

Grammar (OpenCost's core/pkg/filter/ast, restated):

    filter     := element (GROUP_OP element)*     one operator per scope: mixing + and | needs parentheses
    element    := '(' filter ')' | comparison
    comparison := field ['[' key ']'] OP value (',' value)*
    OP         := ':' | '!:' | '~:' | '!~:' | '<~:' | '!<~:' | '~>:' | '!~>:'   ('>~:' is taken for '~>:')
    value      := '"' chars '"'

Several values are alternatives (OR); after a negated operator they must all hold (AND), as in OpenCost.
Errors name the 0-based character position, as OpenCost's do. Pure: no I/O. Parentheses nest at most
MAX_DEPTH deep: the parser and the matcher recurse, and a query string must not exhaust the stack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.core.names import UNALLOCATED
from exporter.vocab.errors import ConfigError
from exporter.vocab.labels import either_key

# Operators, longest first so that '!~>:' is not read as '!~' + '>:'.
_OPS = {"!~>:": ("suffix", True), "!<~:": ("prefix", True), "!~:": ("contains", True), "~>:": ("suffix", False),
        ">~:": ("suffix", False), "<~:": ("prefix", False), "~:": ("contains", False), "!:": ("equals", True),
        ":": ("equals", False)}
# Field names as OpenCost spells them (controllerName), plus the short names its aggregate uses (controller).
FIELDS = {"cluster": "cluster", "node": "node", "namespace": "namespace", "controllerKind": "controllerKind",
          "controllerName": "controller", "controller": "controller", "pod": "pod", "container": "container",
          "services": "services", "provider": "providerID", "providerID": "providerID"}
# OpenCost's label aliases: `team:"x"` is label[team] (the project's own attribution names are added by the caller).
ALIASES = {"department": "department", "environment": "environment", "owner": "owner", "product": "product",
           "team": "team"}


MAX_DEPTH = 32  # no real filter needs more; 500 levels used to end in a RecursionError (a 500)


class FilterError(ConfigError):
    """A filter that does not parse; the message names the position."""


@dataclass(frozen=True)
class Schema:
    """The fields a filter may name and where a row keeps them, so one grammar serves every endpoint."""

    fields: Mapping[str, str]  # spelling in a filter -> the row attribute compared
    maps: Mapping[str, str]  # map fields (label[k]) -> the row attribute holding the map
    lists: frozenset[str] = frozenset()  # attributes holding several values (an allocation's services)
    aliases: Mapping[str, str] = field(default_factory=dict)  # names that mean label[key]
    example: str = "namespace, node, cluster or label[app]"


ALLOCATION = Schema(FIELDS, {"label": "labels", "annotation": "annotations"}, frozenset({"services"}), ALIASES)


@dataclass(frozen=True, slots=True)  # slots: one per pod-level group
class Props:
    """What a filter can look at on one allocation row (OpenCost's AllocationProperties)."""

    cluster: str = ""
    node: str = ""
    namespace: str = ""
    controllerKind: str = ""
    controller: str = ""
    pod: str = ""
    container: str = ""
    providerID: str = ""
    services: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Compare:
    field: str  # a schema's field value (FIELDS for allocations) or one of its map fields ("label")
    key: str | None  # the map key; None for plain fields and for key-less map tests (`label:"app"`: has key)
    op: str  # equals | contains | prefix | suffix
    negated: bool
    values: tuple[str, ...]
    position: int
    schema: Schema = dataclasses.field(default=ALLOCATION, compare=False, repr=False)

    def matches(self, p: Any) -> bool:
        """`p` is a row of the schema: Props for allocations, CloudProps for cloud costs."""
        hits = [self._one(p, v) for v in self.values]
        return not any(hits) if self.negated else any(hits)

    def _one(self, p: Any, value: str) -> bool:
        if self.field in self.schema.maps:
            m: Mapping[str, str] = getattr(p, self.schema.maps[self.field])
            if self.key is None:  # on the keys: `label:"app"` means the label is set
                return _test(self.op, list(m), value, slice_=True)
            return _test(self.op, [either_key(m, self.key) or ""], value)
        if self.field in self.schema.lists:
            return _test(self.op, list(getattr(p, self.field)), value, slice_=True)
        return _test(self.op, [getattr(p, self.field)], value)


def _test(op: str, candidates: list[str], value: str, slice_: bool = False) -> bool:
    if slice_ and op == "equals":
        return value in candidates
    for c in candidates:
        if op == "equals" and (c == value or (value == UNALLOCATED and c == "")):
            return True
        if (op == "contains" and value in c) or (op == "prefix" and c.startswith(value)) or (
                op == "suffix" and c.endswith(value)):
            return True
    return False


@dataclass(frozen=True)
class Group:
    op: str  # "and" | "or"
    items: tuple[Node, ...]

    def matches(self, p: Any) -> bool:
        results = (i.matches(p) for i in self.items)
        return all(results) if self.op == "and" else any(results)


Node = Compare | Group


def comparisons(node: Node) -> list[Compare]:
    """Every comparison in the tree, so the caller can refuse fields it cannot answer at this granularity."""
    if isinstance(node, Compare):
        return [node]
    return [c for item in node.items for c in comparisons(item)]


@dataclass(frozen=True)
class _Tok:
    kind: str  # ident str key op , + | ( ) eof
    text: str
    pos: int


def _is_ident(ch: str) -> bool:
    return ch.isalnum() or ch in "-_."


def _lex(src: str) -> list[_Tok]:
    out: list[_Tok] = []
    i = 0
    while i < len(src):
        ch = src[i]
        if ch in " \t\r\n":
            i += 1
        elif ch in ",+|()":
            out.append(_Tok(ch, ch, i))
            i += 1
        elif ch in "\"[":
            close = '"' if ch == '"' else "]"
            end = src.find(close, i + 1)
            if end < 0:
                what = "string" if ch == '"' else "key access"
                raise FilterError(f"filter position {i}: unterminated {what} starting here (missing {close})")
            out.append(_Tok("str" if ch == '"' else "key", src[i + 1:end], i))
            i = end + 1
        elif (op := next((o for o in _OPS if src.startswith(o, i)), None)) is not None:
            out.append(_Tok("op", op, i))
            i += len(op)
        elif _is_ident(ch):
            j = i
            while j < len(src) and _is_ident(src[j]):
                j += 1
            out.append(_Tok("ident", src[i:j], i))
            i = j
        else:
            raise FilterError(f"filter position {i}: unexpected character {ch!r}")
    out.append(_Tok("eof", "", len(src)))
    return out


def _describe(t: _Tok) -> str:
    return "the end of the filter" if t.kind == "eof" else f"{t.text!r}" if t.kind != "str" else f'"{t.text}"'


class _Parser:
    def __init__(self, tokens: list[_Tok], schema: Schema, aliases: Mapping[str, str]) -> None:
        self.toks, self.i, self.schema, self.aliases = tokens, 0, schema, aliases

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def fail(self, what: str) -> FilterError:
        t = self.peek()
        return FilterError(f"filter position {t.pos}: expected {what}, found {_describe(t)}")

    def filter(self, depth: int) -> Node:
        items = [self.element(depth)]
        group: str | None = None
        while self.peek().kind in "+|":
            t = self.take()
            if group is not None and t.kind != group:
                raise FilterError(f"filter position {t.pos}: '+' and '|' are mixed in one scope; "
                                  "group them with parentheses, e.g. a+(b|c)")
            group = t.kind
            items.append(self.element(depth))
        if self.peek().kind == ")" and depth == 0:
            raise FilterError(f"filter position {self.peek().pos}: ')' without a matching '('")
        if group is None:
            return items[0]
        return Group("and" if group == "+" else "or", tuple(items))

    def element(self, depth: int) -> Node:
        if self.peek().kind == "(":
            opened = self.take()
            if depth >= MAX_DEPTH:
                raise FilterError(f"filter position {opened.pos}: parentheses nested more than {MAX_DEPTH} deep")
            inner = self.filter(depth + 1)
            if self.peek().kind != ")":
                if self.peek().kind == "eof":
                    raise FilterError(f"filter position {opened.pos}: '(' without a matching ')'")
                raise self.fail("'+', '|' or ')'")
            self.take()
            return inner
        return self.comparison()

    def comparison(self) -> Compare:
        t = self.peek()
        if t.kind != "ident":
            raise self.fail(f"a field such as {self.schema.example}")
        self.take()
        key: str | None = None
        fields = self.schema.fields
        if t.text in self.schema.maps:
            name = t.text
            if self.peek().kind == "key":
                key = self.take().text
        elif t.text in fields:
            name = fields[t.text]
        elif t.text in self.aliases:
            name, key = "label", self.aliases[t.text]
        else:
            known = ", ".join([*fields, *(f"{m}[k]" for m in self.schema.maps), *self.aliases])
            raise FilterError(f"filter position {t.pos}: unknown field {t.text!r}; use {known}")
        if self.peek().kind != "op":
            raise self.fail("an operator (:, !:, ~:, !~:, <~:, !<~:, ~>:, !~>:)")
        op, negated = _OPS[self.take().text]
        values = [self.value()]
        while self.peek().kind == ",":
            self.take()
            values.append(self.value())
        return Compare(name, key, op, negated, tuple(values), t.pos, self.schema)

    def value(self) -> str:
        if self.peek().kind != "str":
            raise self.fail('a quoted value such as "kube-system"')
        return self.take().text


def parse_filter(text: str, aliases: Mapping[str, str] | None = None, schema: Schema = ALLOCATION) -> Node | None:
    """Parse a filter over `schema`'s fields (allocations by default); None for an empty one.
    `aliases` maps extra field names to label keys."""
    if not text.strip():
        return None
    parser = _Parser(_lex(text), schema, {**schema.aliases, **(aliases or {})})
    node = parser.filter(0)
    if parser.peek().kind != "eof":
        raise parser.fail("'+', '|' or the end of the filter")
    return node

