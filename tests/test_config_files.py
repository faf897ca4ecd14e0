"""Wrong files (not UTF-8, too big, unreadable, not a mapping, alias bombs, deep nesting), through the real
console script: one line `chargeback: error: ...`, rc 2, never a traceback, and quickly."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

CHARGEBACK = Path(sys.executable).parent / "chargeback"


def one_line_error(*args: str) -> str:
    started = time.monotonic()
    proc = subprocess.run([str(CHARGEBACK), *args], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("chargeback: error: ")
    return line


def _bomb(levels: int = 9) -> str:
    """The YAML billion laughs: 9 levels of 9 aliases expand to 9**9 (387 million) strings."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "not UTF-8": (lambda p: p.write_bytes(b"prometheus:\n  url: http://prom\xe9theus:9090\n"),
                  "not UTF-8 text (byte 0xe9 at offset 30)"),  # 12 + len("  url: ") + len("http://prom")
    "oversize": (lambda p: p.write_text("pricing:\n  currency: USD\n# " + "x" * (1 << 20) + "\n"),
                 "larger than 1 MiB; is it the right file?"),
    "a list": (lambda p: p.write_text("- prometheus\n- pricing\n"), "top level must be a mapping, got list"),
    "a scalar": (lambda p: p.write_text("just some text\n"), "top level must be a mapping, got str"),
    "alias bomb": (lambda p: p.write_text(_bomb()),
                   "not valid YAML: more than 250,000 values once aliases are expanded (an alias bomb?)"),
    "deep nesting": (lambda p: p.write_text("sharing: " + "[" * 5000 + "]" * 5000 + "\n"),
                     "nested too deeply (more than 64 levels)"),
    "recursive alias": (lambda p: p.write_text("sharing: &s {policies: *s}\n"),
                        "not valid YAML: an alias refers to its own ancestor (a recursive structure)"),
    "invalid YAML": (lambda p: p.write_text("a: [\n"), "not valid YAML: while parsing a flow node"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_config_file(case: str, tmp_path: Path) -> None:
    write, why = CASES[case]
    path = tmp_path / "c.yaml"
    write(path)
    assert one_line_error("allocate", "--config", str(path)) == f"chargeback: error: config {path}: {why}"


def test_bad_budgets_file_shares_the_loader(tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text(_bomb())
    line = one_line_error("rules", "--budgets", str(path), "--out", str(tmp_path / "out"))
    assert line.startswith(f"chargeback: error: budgets {path}: not valid YAML: more than 250,000 values")


def test_unreadable_config(tmp_path: Path) -> None:
    inside_a_file = tmp_path / "file" / "c.yaml"
    (tmp_path / "file").write_text("")
    line = one_line_error("allocate", "--config", str(inside_a_file))
    assert line == f"chargeback: error: config {inside_a_file}: cannot read: Not a directory"
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.yaml"
        locked.write_text("{}")
        locked.chmod(0)
        assert one_line_error("allocate", "--config", str(locked)).endswith("cannot read: Permission denied")


def test_secret_and_token_files_that_are_not_text(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfe\x00t")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"prometheus: {{bearerTokenFile: {token}}}\n")
    line = one_line_error("allocate", "--config", str(cfg))
    assert line == f"chargeback: error: prometheus.bearerTokenFile {token}: cannot read: not UTF-8 text"
    cfg.write_text(f"prometheus: {{bearerTokenFile: {tmp_path / 'missing'}}}\n")
    assert one_line_error("allocate", "--config", str(cfg)).endswith("cannot read: No such file or directory")


FOCUS_HEADER = ("ChargePeriodStart,ChargePeriodEnd,EffectiveCost,BilledCost,ListCost,ChargeCategory,ResourceId,"
                "ServiceName,BillingCurrency\n")


@pytest.mark.parametrize(("name", "content", "why"), [
    ("bill.csv", FOCUS_HEADER.encode() + b"2026-11-01T00:00:00Z,2026-11-01T01:00:00Z,1,1,1,Usage,i-\xe9,EC2,USD\n",
     "not UTF-8 text"),
    ("bill.csv.gz", gzip.compress(FOCUS_HEADER.encode() + b"".join(
        b"2026-11-01T00:00:00Z,2026-11-01T01:00:00Z,1,1,1,Usage,i-%d,EC2,USD\n" % i for i in range(20000)))[:5000],
     "unreadable: Compressed file ended before the end-of-stream marker was reached"),
    ("bill.csv.gz", b"not gzip at all", "unreadable: Not a gzipped file (b'no')"),
])
def test_bills_that_are_not_utf8_csv(tmp_path: Path, name: str, content: bytes, why: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    line = one_line_error("reconcile", "--bill", str(path), "--prometheus-url", "http://127.0.0.1:1")
    assert line == f"chargeback: error: bill {path}: {why}"


def test_a_bill_field_over_the_csv_limit_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bill.csv"
    path.write_text(FOCUS_HEADER + '"' + "x" * 200_000 + '",b\n')
    line = one_line_error("reconcile", "--bill", str(path), "--prometheus-url", "http://127.0.0.1:1")
    assert line == "chargeback: error: bill.csv:2: not valid CSV: field larger than field limit (131072)"
