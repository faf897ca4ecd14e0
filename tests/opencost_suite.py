"""Reading the logs of OpenCost's integration suite (`go test -v`, one log per package, from its run.sh).

The suite's comparison tests pass without comparing anything where the series they query are absent, so a
pass is only worth its compared items: the "[Pass]" lines a comparison logs (one per item compared), the
resources the UID tests found with UIDs, the pods the controller test found in both, the costs the MCP and
summary tests matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Lines that say one item (or N items) was compared, as the suite logs them.
_ITEMS = (
    (re.compile(r"\[Pass\]"), None),  # "<what>[Pass]: ~ value", one per item
    (re.compile(r"Metric \S+: Found (\d+) resources with UIDs"), 1),  # uid_verification_test.go
    (re.compile(r"Prometheus and (\d+) valid pods in allocation data"), 1),  # allocation_controller_consistency
    (re.compile(r"Cost match for '"), None),  # mcp/*_mcp_vs_http_test.go
    (re.compile(r"Cost Information for resources match for namespace"), None),  # allocationSummary comparison
)
_RUN = re.compile(r"^=== (?:RUN|CONT|NAME|PAUSE)\s+(\S+)")
_RESULT = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+)")
_LOCATION = re.compile(r"^\s+\S+_test\.go:\d+: (.*)")
_PANIC = re.compile(r"^panic: (.*)")
_FAILING = re.compile(r"[Ee]rror|[Ff]ail|mismatch|not match|n't match|[Mm]issing|expected|unexpected|status|non-200|"
                      r"[Nn]o valid|not found|[Ii]nvalid")
_FUNC = re.compile(r"^func (Test\w+)\(t \*testing\.T\)", re.M)
# Files of tests that compare the API with Prometheus, or one door with another (besides "[Pass]" loggers).
_OTHER_COMPARING = ("uid_verification_test.go", "allocation_controller_consistency_test.go",
                    "_mcp_vs_http_test.go", "allocation_allocationSummary_namespace_aggregation_comparison_test.go")


def suite_tests(suite: Path) -> tuple[set[str], set[str]]:
    """All the suite's top-level tests, and those that compare items, from its source: tests whose file logs
    "[Pass]" per item, and the UID, controller, MCP-versus-HTTP and summary comparisons."""
    every: set[str] = set()
    comparing: set[str] = set()
    for f in suite.rglob("*_test.go"):
        text = f.read_text(errors="replace")
        names = _FUNC.findall(text)
        every.update(names)
        if "[Pass]" in text or f.name.endswith(_OTHER_COMPARING):
            comparing.update(names)
    return every, comparing


@dataclass
class SuiteTest:
    name: str
    package: str
    status: str = "RUN"  # PASS, FAIL, SKIP; RUN if the package stopped (a panic) before it ended
    compared: int = 0
    reasons: list[str] = field(default_factory=list)
    last: list[str] = field(default_factory=list)  # its last log lines, the reason when none reads as one


def parse(logs: dict[str, str], every: frozenset[str] = frozenset()) -> dict[str, SuiteTest]:
    """Top-level tests by name, from `go test -v` logs keyed by package, with their compared items and the
    first lines of their failure messages; a test of `every` the logs lack failed: it never ran."""
    tests: dict[str, SuiteTest] = {name: SuiteTest(name, "?", "FAIL", reasons=["never ran: its package stopped first"])
                                   for name in every}
    for package, text in sorted(logs.items()):
        current: SuiteTest | None = None
        for line in text.splitlines():
            if m := _RUN.match(line):
                top = m.group(1).split("/")[0]
                current = _seen(tests, top, package)
            elif (m := _RESULT.match(line)) and "/" not in m.group(2):
                t = _seen(tests, m.group(2), package)
                t.status = m.group(1)
            elif current is None:
                continue
            elif (n := _items(line)) is not None:
                current.compared += n
            elif (m := _PANIC.match(line)) and len(current.reasons) < 3:
                current.reasons.append("panic: " + m.group(1)[:200])
            elif m := _LOCATION.match(line):
                current.last = [*current.last[-2:], m.group(1)[:200]]
                if _FAILING.search(m.group(1)) and "[Skipped]" not in line and len(current.reasons) < 3:
                    current.reasons.append(m.group(1)[:200])
    for t in tests.values():
        if t.status == "RUN":  # never finished: its package panicked or timed out
            t.status = "FAIL"
            t.reasons.append("did not finish (the package stopped: see its log)")
        if t.status == "FAIL" and not t.reasons:
            t.reasons = t.last
    return tests


def _seen(tests: dict[str, SuiteTest], name: str, package: str) -> SuiteTest:
    """The test as the logs show it, replacing its never-ran placeholder."""
    if name not in tests or tests[name].package == "?":
        tests[name] = SuiteTest(name, package)
    return tests[name]


def _items(line: str) -> int | None:
    for pattern, group in _ITEMS:
        if m := pattern.search(line):
            return int(m.group(group)) if group else 1
    return None


def read_logs(results: Path) -> dict[str, str]:
    return {p.stem.strip("_").replace("_", "/"): p.read_text(errors="replace") for p in sorted(results.glob("*.log"))}


def summary(tests: dict[str, SuiteTest]) -> str:
    """One line per test: status, compared items and the first failure reason."""
    lines = []
    for t in sorted(tests.values(), key=lambda t: (t.package, t.name)):
        why = f"  {t.reasons[0]}" if t.reasons and t.status == "FAIL" else ""
        lines.append(f"{t.status:4} {t.name} ({t.package}) compared {t.compared}{why}")
    return "\n".join(lines)
