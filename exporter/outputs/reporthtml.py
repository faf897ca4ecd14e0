"""The HTML report, as a team lead opens it in a mail client: inline styles only (no <style>, which
Gmail and Outlook drop or rewrite), layout by tables, no script and no external asset. The chart is
the PNG, inline as a data: URI in a file or as a cid: part in an email."""

from __future__ import annotations

import base64
from html import escape

from exporter.core.names import IDLE
from exporter.outputs.report import Group, Report
from exporter.outputs.reporttext import (
    colours,
    coverage_note,
    gpu_waste_total,
    group_change,
    money,
    pct,
    previous_note,
    title,
    total_change,
)

FONT = "font-family:Helvetica,Arial,sans-serif;color:#0f172a"
MUTED = "color:#64748b;font-size:12px"
TH = "padding:8px 10px;border-bottom:2px solid #cbd5e1;background:#f1f5f9;font-size:12px;text-align:{align}"
TD = "padding:7px 10px;border-bottom:1px solid #e2e8f0;font-size:13px;text-align:{align};vertical-align:top"


def _table(heads: list[tuple[str, str]], body: list[list[str]], shade: list[bool] | None = None) -> str:
    """A table; `heads` as (label, align); cells are HTML already escaped."""
    th = "".join(f'<th style="{TH.format(align=a)}">{escape(h)}</th>' for h, a in heads)
    trs = []
    for i, cells in enumerate(body):
        bg = "#ffffff" if not (shade and shade[i]) else "#f8fafc"
        tds = "".join(f'<td style="{TD.format(align=a)}">{c}</td>' for c, (_h, a) in zip(cells, heads, strict=True))
        trs.append(f'<tr style="background:{bg}">{tds}</tr>')
    return (f'<table role="presentation" cellpadding="0" cellspacing="0" width="100%" '
            f'style="border-collapse:collapse;margin:8px 0 20px 0">{"".join([f"<tr>{th}</tr>", *trs])}</table>')


def _tile(label: str, value: str, note: str, accent: str) -> str:
    return (f'<td width="25%" style="padding:12px 14px;border:1px solid #e2e8f0;border-top:4px solid {accent};'
            f'vertical-align:top"><div style="{MUTED}">{escape(label)}</div>'
            f'<div style="font-size:20px;font-weight:bold;margin:4px 0">{escape(value)}</div>'
            f'<div style="{MUTED}">{escape(note)}</div></td>')


def _tiles(report: Report) -> str:
    cur = report.currency
    change = total_change(report) if report.comparable else "no comparison: previous period not covered"
    gpu = [g for g in report.groups if g.gpu]
    gpu_cost = sum(g.gpu.gpu_cost for g in gpu if g.gpu)
    waste = gpu_waste_total(report)
    seen = any(g.gpu.observed_gpu_hours > 0 for g in gpu if g.gpu)
    budgets = [b for g in report.groups for b in g.budgets]
    over = sum(1 for b in budgets if b.get("usage", 0) >= 1)
    near = sum(1 for b in budgets if 0.8 <= b.get("usage", 0) < 1)
    idle = sum(g.total for g in report.groups if g.name == IDLE)
    cells = [
        _tile("Total", money(report.cluster_total, cur), change, "#2563eb"),
        _tile("GPU waste", (money(waste, cur) if seen else "not measured") if gpu else "no GPU cost",
              (f"of {money(gpu_cost, cur)} GPU cost" if seen else f"no dcgm-exporter data for {money(gpu_cost, cur)} "
               "GPU cost") if gpu else "", "#ef4444" if waste else "#10b981" if seen else IDLE_ACCENT),
        _tile("Budgets", f"{over} over, {near} near" if budgets else "none set",
              f"{len(budgets)} budget(s)" if budgets else "", "#ef4444" if over else "#f59e0b" if near else "#10b981"),
        _tile("Idle capacity", money(idle, cur), f"{100 * idle / report.cluster_total:.0f}% of the total"
              if report.cluster_total else "", IDLE_ACCENT),
    ]
    return (f'<table role="presentation" cellpadding="0" cellspacing="8" width="100%" '
            f'style="border-collapse:separate;margin:0 -8px"><tr>{"".join(cells)}</tr></table>')


IDLE_ACCENT = "#94a3b8"


def _swatch(colour: str) -> str:
    return (f'<span style="display:inline-block;width:10px;height:10px;background:{colour};'
            f'margin-right:6px;vertical-align:middle"></span>')


def _group_rows(report: Report) -> list[list[str]]:
    cur, cols = report.currency, colours(report)
    out = []
    for g in report.groups:
        out.append([f'<span style="white-space:nowrap">{_swatch(cols.get(g.name, "#000"))}<b>{escape(g.name)}</b>'
                    "</span>", f"<b>{g.total:,.2f}</b>",
                    f"{g.by_component.get('allocated', 0):,.2f}", f"{g.by_component.get('shared', 0):,.2f}",
                    f"{g.by_component.get('idle', 0):,.2f}", _change_cell(g, cur), pct(g.cpu_efficiency),
                    f"{g.unused_request_cost:,.2f}", _ranked(g.top_workloads()),
                    f"{g.energy_kwh:,.3f}", f"{g.carbon_kg:,.3f}"])
    return out


def _ranked(pairs: list[tuple[str, float]]) -> str:
    """Workloads one a line, the amount kept with its name."""
    return "<br>".join(f'{escape(n)}&nbsp;<span style="white-space:nowrap;color:#334155">{c:,.2f}</span>'
                       for n, c in pairs)


def _change_cell(g: Group, cur: str) -> str:
    text = group_change(g, cur)
    colour = "#64748b" if g.change is None or text == "-" else "#b91c1c" if g.change > 0 else "#15803d"
    return f'<span style="color:{colour}">{escape(text)}</span>'


def _gpu_section(report: Report) -> str:
    gpu = sorted((g for g in report.groups if g.gpu), key=lambda g: -(g.gpu.waste_cost if g.gpu else 0.0))
    if not gpu:
        return ""
    body = [[escape(g.name), f"{g.gpu.gpu_cost:,.2f}", pct(g.gpu.efficiency), f"<b>{g.gpu.waste_cost:,.2f}</b>",
             _ranked(g.top_gpu_workloads())] for g in gpu if g.gpu]
    return (f'<h3 style="margin:8px 0 0 0;font-size:16px">GPU waste</h3><div style="{MUTED}">Allocated GPU cost '
            "x (1 - utilisation) seen by dcgm-exporter: a view on the GPU cost above, not extra.</div>"
            + _table([(report.by, "left"), ("GPU cost", "right"), ("GPU efficiency", "right"), ("GPU waste", "right"),
                      ("top workloads by GPU waste", "left")], body))


def _budget_section(report: Report) -> str:
    budgets = [(g.name, b) for g in report.groups for b in g.budgets]
    if not budgets:
        return ""
    body = []
    for name, b in budgets:
        used = float(b.get("usage", 0.0))
        colour = "#ef4444" if used >= 1 else "#f59e0b" if used >= 0.8 else "#10b981"
        bar = (f'<table role="presentation" cellpadding="0" cellspacing="0" width="160" style="border-collapse:'
               f'collapse;background:#e2e8f0"><tr><td width="{max(1, min(160, round(160 * used)))}" height="8" '
               f'style="background:{colour};font-size:0;line-height:0">&nbsp;</td><td style="font-size:0">'
               "&nbsp;</td></tr></table>")
        body.append([escape(name), escape(str(b.get("budget", ""))), f"{100 * used:.0f}%", bar])
    return ('<h3 style="margin:8px 0 0 0;font-size:16px">Budgets</h3>'
            + _table([(report.by, "left"), ("budget", "left"), ("used", "right"), ("", "left")], body))


def _legend(report: Report) -> str:
    cols = colours(report)
    shown = [n for n in cols if any(d.groups.get(n) for d in report.days)]
    items = "".join(f'<span style="margin-right:14px;white-space:nowrap">{_swatch(cols[n])}{escape(n)}</span>'
                    for n in shown)
    partial = [d for d in report.days if d.partial]
    note = (" Hatched bars are partial days (hours with data: "
            + ", ".join(f"{_day(d.start)} {d.covered_seconds / 3600:.1f} h" for d in partial)
            + "): not a whole day's cost.") if partial else ""
    return f'<div style="{MUTED};margin:4px 0 16px 0">{items}<br>{escape(note)}</div>'


def _day(t: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%a %d %b")


def to_html(report: Report, chart: bytes | None = None, chart_cid: str | None = None) -> str:
    """HTML body; the chart inline as a data: URI, or as cid: for an email's related part."""
    cur = report.currency
    src = f"cid:{chart_cid}" if chart_cid else (
        f"data:image/png;base64,{base64.b64encode(chart).decode()}" if chart else "")
    img = (f'<img src="{src}" alt="Daily cost by {escape(report.by)}, stacked" width="680" '
           f'style="display:block;width:100%;max-width:680px;height:auto;border:0">' + _legend(report)) if src else ""
    notes = "".join(f'<div style="background:#fef3c7;border-left:4px solid #f59e0b;padding:8px 12px;margin:8px 0;'
                    f'font-size:13px">{escape(n)}</div>' for n in (previous_note(report), coverage_note(report)) if n)
    adds = (f"The {len(report.groups)} groups add up to {money(report.groups_total, cur)}"
            + (", the cluster total." if report.adds_up else f", NOT the cluster total {report.cluster_total:,.2f}."))
    groups = _table([(report.by, "left"), ("total", "right"), ("allocated", "right"), ("shared", "right"),
                     ("idle", "right"), ("change", "right"), ("CPU efficiency", "right"), ("unused requests", "right"),
                     ("top workloads", "left"), ("energy kWh", "right"), ("carbon kg CO2e", "right")],
                    _group_rows(report), [i % 2 == 1 for i in range(len(report.groups))])
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{escape(title(report))}</title></head>'
            f'<body style="margin:0;padding:0;background:#f1f5f9">'
            f'<table role="presentation" cellpadding="0" cellspacing="0" width="100%" style="background:#f1f5f9">'
            f'<tr><td align="center" style="padding:24px 8px">'
            f'<table role="presentation" cellpadding="0" cellspacing="0" width="900" style="max-width:900px;'
            f'background:#ffffff;border:1px solid #e2e8f0;{FONT}"><tr><td style="padding:24px 28px">'
            f'<h2 style="margin:0;font-size:22px">{escape(title(report))}</h2>'
            f'<div style="{MUTED};margin:4px 0 16px 0">Amounts in {escape(cur)}. Source: {escape(report.source)}. '
            f'{escape(adds)}</div>{notes}{_tiles(report)}'
            f'<h3 style="margin:20px 0 6px 0;font-size:16px">Daily cost</h3>{img}'
            f'<h3 style="margin:8px 0 0 0;font-size:16px">By {escape(report.by)}</h3>{groups}'
            f'{_gpu_section(report)}{_budget_section(report)}'
            f'<div style="{MUTED};border-top:1px solid #e2e8f0;padding-top:10px">Workloads are named by their '
            f'controller (deployment:api); __unallocated__ is what no pod carries (volumes, load balancers, network).'
            f'</div></td></tr></table></td></tr></table></body></html>')
