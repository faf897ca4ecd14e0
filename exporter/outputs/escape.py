"""Escaping for outputs that other programs interpret: CSV cells, markdown table cells, Slack mrkdwn.

Label and annotation values reach every output from Prometheus, written by whoever can label a pod, so
none may run as a spreadsheet formula, break a markdown table or ping a Slack channel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# OWASP's CSV injection guidance: a cell starting with one of these may be read as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """A text cell that could start a formula gets a leading single quote; numbers (-0.5, 1e-05) stay
    numbers, since a spreadsheet reads them as values, not formulas."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START) or _NUMBER.fullmatch(value):
        return value
    return "'" + value


def csv_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every cell of every row through csv_cell (nested values as the csv module writes them: str())."""
    return [{k: csv_cell(v if isinstance(v, (str, int, float)) or v is None else str(v)) for k, v in r.items()}
            for r in rows]


def md_cell(text: str) -> str:
    """A markdown table cell: `|` would end the cell and a newline the row (GFM); backslashes first, so
    that a value's own `\\|` cannot undo the escape."""
    return (text.replace("\\", "\\\\").replace("|", "\\|")
            .replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>"))


def slack_text(text: str) -> str:
    """Slack mrkdwn's three control characters: `<!channel>` or `<https://x|y>` must arrive as text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
