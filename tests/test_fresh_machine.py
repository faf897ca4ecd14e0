"""The suite passes on a fresh clone whose venv is the only place `chargeback` is installed (issue 12, 9)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .console import CHARGEBACK

ROOT = Path(__file__).resolve().parent.parent
# What a fresh machine's shell has: system binaries (prometheus, promtool, jq), no venv, no global install.
MINIMAL_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def test_console_script_is_the_venvs_and_runs_without_path() -> None:
    assert Path(CHARGEBACK).parent == Path(sys.executable).parent
    proc = subprocess.run([CHARGEBACK, "--help"], env=MINIMAL_ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "allocate" in proc.stdout, proc.stderr


def test_console_script_test_passes_with_a_minimal_path(tmp_path: Path) -> None:
    """`env -i PATH=/usr/bin:/bin`: the test that runs the script must not need it on PATH."""
    test = "tests/test_allocate_core.py::test_console_script_output_works_with_opencost_jq"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
                           str(tmp_path / "t"), test], cwd=ROOT, env=MINIMAL_ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_no_test_runs_chargeback_from_path() -> None:
    """A bare "chargeback" as a program name in tests/ or bench/ would find it on PATH (or not at all)."""
    bare = re.compile(r"""(?:run|Popen|check_output|check_call|call)\(\s*\[\s*["']chargeback["']""")
    offenders = [str(p.relative_to(ROOT)) for d in ("tests", "bench") for p in (ROOT / d).rglob("*.py")
                 if bare.search(p.read_text())]
    assert offenders == []
