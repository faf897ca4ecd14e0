"""Words and colours every report format shares: amounts, changes (only where the previous period is
covered), coverage notes, the title and each group's colour."""

from __future__ import annotations

from exporter.core.names import IDLE
from exporter.core.window import iso
from exporter.outputs.report import Group, Report, change_pct

# One colour per group, the same in the chart and the HTML legend; idle is grey.
PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#14b8a6", "#ec4899", "#84cc16", "#f97316",
           "#0ea5e9", "#a855f7", "#64748b")
IDLE_COLOUR = "#cbd5e1"


def money(v: float, cur: str) -> str:
    return f"{v:,.2f} {cur}"


def change_text(total: float, previous: float, comparable: bool, cur: str) -> str:
    """`+12.5% (+1.20 USD)`, `new (+1.20 USD)`, `no change` (under a cent), or `-` where no change can be
    told (an uncovered previous period)."""
    if not comparable:
        return "-"
    delta = total - previous
    if abs(delta) < 0.005:
        return "no change"
    sign = "+" if delta >= 0 else "-"
    pct = change_pct(total, previous, comparable)
    if pct is not None:
        return f"{sign}{abs(pct):.1f}% ({sign}{abs(delta):,.2f} {cur})"
    if abs(previous) < 0.005 and abs(total) >= 0.005:
        return f"new (+{total:,.2f} {cur})"
    return f"{sign}{abs(delta):,.2f} {cur}"


def group_change(g: Group, cur: str) -> str:
    return change_text(g.total, g.previous, g.comparable, cur)


def total_change(report: Report) -> str:
    return change_text(report.cluster_total, report.previous_total, report.comparable, report.currency)


def previous_note(report: Report) -> str:
    """Why no change is shown, or "" when it is."""
    if report.comparable:
        return ""
    covered = (report.previous_covered_seconds or 0) / 3600
    return (f"No change is shown: the previous period ({iso(report.previous.start)} .. {iso(report.previous.end)}) "
            f"has data for {covered:.1f} of its {report.previous.seconds / 3600:.1f} hours.")


def coverage_note(report: Report) -> str:
    if report.covered_seconds is None or report.covered_seconds >= report.window.seconds:
        return ""
    return (f"The window has data for {report.covered_seconds / 3600:.1f} of its {report.window.seconds / 3600:.1f} "
            "hours; the amounts are for those hours only.")


def listed(pairs: list[tuple[str, float]], sep: str = ", ") -> str:
    return sep.join(f"{n} {c:,.2f}" for n, c in pairs)


def gpu_waste_total(report: Report) -> float:
    return sum(g.gpu.waste_cost for g in report.groups if g.gpu)


def title(report: Report) -> str:
    return f"Cost report {iso(report.window.start)[:10]} to {iso(report.window.end)[:10]}, by {report.by}"


def pct(v: float | None) -> str:
    return f"{100 * v:.0f}%" if v is not None else "-"


def colours(report: Report) -> dict[str, str]:
    """Each group's colour, in the report's order (largest first); idle grey."""
    names = [g.name for g in report.groups]
    names += sorted({n for d in report.days for n in d.groups} - set(names))
    out, i = {}, 0
    for n in names:
        if n == IDLE:
            out[n] = IDLE_COLOUR
        else:
            out[n], i = PALETTE[i % len(PALETTE)], i + 1
    return out
