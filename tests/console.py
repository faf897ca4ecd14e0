"""The `chargeback` console script of the interpreter running the tests, never whatever PATH holds.

A fresh clone with a fresh venv has the script only in the venv's bin/, next to `sys.executable`;
a `chargeback` found on PATH may be a stale global install of some other version.
"""

from __future__ import annotations

import sys
from pathlib import Path

CHARGEBACK = str(Path(sys.executable).parent / "chargeback")
