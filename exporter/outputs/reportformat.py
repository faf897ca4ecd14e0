"""Report output: markdown, CSV, HTML (chart embedded), JSON, Slack Block Kit, and the trend chart PNG.

The chart uses matplotlib (Agg backend, no display): the most widely used, well-kept plotting
library, which renders a PNG headless with no browser or server.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from datetime import datetime, timezone
from typing import Any

from exporter.core.gpuwaste import GpuWaste
from exporter.core.window import iso
from exporter.outputs.report import Report


def _money(v: float, cur: str) -> str:
    return f"{v:,.2f} {cur}"


def _change(g_change: float, pct: float | None, cur: str) -> str:
    sign = "+" if g_change >= 0 else "-"
    p = f"{sign}{abs(pct):.1f}%" if pct is not None else "new"
    return f"{p} ({sign}{abs(g_change):,.2f} {cur})"


def rows(report: Report) -> list[dict[str, Any]]:
    out = []
    for g in report.groups:
        out.append({
            report.by: g.name, "total": g.total, "allocated": g.by_component.get("allocated", 0.0),
            "shared": g.by_component.get("shared", 0.0), "idle": g.by_component.get("idle", 0.0),
            "previous": g.previous, "change": g.change,
            "change_pct": g.change_pct,
            "cpu_efficiency": g.cpu_efficiency,
            "unused_request_cost": g.unused_request_cost,
            "top_namespaces": "; ".join(f"{n} {c:.2f}" for n, c in g.top_namespaces()),
            "top_workloads": "; ".join(f"{n} {c:.2f}" for n, c in g.top_workloads()),
            "gpu_cost": g.gpu.gpu_cost if g.gpu else 0.0,
            "gpu_efficiency": g.gpu.efficiency if g.gpu else None,
            "gpu_waste": g.gpu.waste_cost if g.gpu else 0.0,
            "top_gpu_waste_workloads": "; ".join(f"{n} {c:.2f}" for n, c in g.top_gpu_workloads()),
        })
    return out


def to_json(report: Report) -> str:
    return json.dumps({
        "window": {"start": iso(report.window.start), "end": iso(report.window.end)},
        "previous": {"start": iso(report.previous.start), "end": iso(report.previous.end)},
        "by": report.by, "source": report.source, "currency": report.currency,
        "clusterTotal": report.cluster_total, "previousTotal": report.previous_total,
        "groupsTotal": report.groups_total, "addsUp": report.adds_up,
        "groups": [{**r, "budgets": g.budgets} for r, g in zip(rows(report), report.groups, strict=True)],
    }, indent=2)


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    data = rows(report)
    writer = csv.DictWriter(buf, fieldnames=list(data[0]) if data else [report.by, "total"])
    writer.writeheader()
    writer.writerows(data)
    return buf.getvalue()


def _title(report: Report) -> str:
    return f"Cost report {iso(report.window.start)[:10]} to {iso(report.window.end)[:10]}, by {report.by}"


def to_markdown(report: Report) -> str:
    cur = report.currency
    delta = report.cluster_total - report.previous_total
    pct = 100 * delta / report.previous_total if report.previous_total else None
    lines = [f"# {_title(report)}", "",
             f"Total **{_money(report.cluster_total, cur)}** ({_change(delta, pct, cur)} against the previous "
             f"period). Source: {report.source}.", "",
             f"| {report.by} | total | allocated | shared | idle | change | CPU efficiency | unused requests | "
             "top namespaces | top workloads (compute) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for g in report.groups:
        eff = f"{100 * g.cpu_efficiency:.0f}%" if g.cpu_efficiency is not None else "-"
        lines.append(
            f"| {g.name} | {g.total:,.2f} | {g.by_component.get('allocated', 0):,.2f} | "
            f"{g.by_component.get('shared', 0):,.2f} | {g.by_component.get('idle', 0):,.2f} | "
            f"{_change(g.change, g.change_pct, cur)} | {eff} | {g.unused_request_cost:,.2f} | "
            f"{', '.join(f'{n} {c:,.2f}' for n, c in g.top_namespaces())} | "
            f"{', '.join(f'{n} {c:,.2f}' for n, c in g.top_workloads())} |")
    lines += ["", f"The {len(report.groups)} groups add up to {_money(report.groups_total, cur)}"
              + (", the cluster total." if report.adds_up else f", NOT the cluster total {report.cluster_total:.2f}.")]
    budgets = [(g.name, b) for g in report.groups for b in g.budgets]
    if budgets:
        lines += ["", "Budgets: " + "; ".join(f"{b.get('budget')} {100 * b['usage']:.0f}% used" for _n, b in budgets)]
    return "\n".join(lines + _gpu_markdown(report)) + "\n"


def _pct(v: float | None) -> str:
    return f"{100 * v:.0f}%" if v is not None else "-"


def _gpu_markdown(report: Report) -> list[str]:
    """The GPU waste section: allocated GPU cost paid for idle GPU time (dcgm-exporter), by group."""
    gpu = sorted((g for g in report.groups if g.gpu), key=lambda g: -(g.gpu.waste_cost if g.gpu else 0.0))
    if not gpu:
        return []
    lines = ["", "## GPU waste", "",
             "Allocated GPU cost x (1 - utilisation) seen by dcgm-exporter: a view on the GPU cost above, not extra.",
             "", f"| {report.by} | GPU cost | GPU efficiency | GPU waste | top workloads by GPU waste |",
             "|---|---:|---:|---:|---|"]
    for g in gpu:
        assert g.gpu is not None
        lines.append(f"| {g.name} | {g.gpu.gpu_cost:,.2f} | {_pct(g.gpu.efficiency)} | {g.gpu.waste_cost:,.2f} | "
                     f"{', '.join(f'{n} {c:,.2f}' for n, c in g.top_gpu_workloads())} |")
    return lines


def chart_png(report: Report) -> bytes:
    """Daily cost per group, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    for name, points in sorted(report.daily.items()):
        if points:
            xs = [datetime.fromtimestamp(t, tz=timezone.utc) for t, _ in points]
            ax.plot(xs, [v for _, v in points], marker="o", label=name)  # type: ignore[arg-type]
    ax.set_title(f"Daily cost by {report.by}")
    ax.set_ylabel(report.currency)
    ax.grid(alpha=0.3)
    if report.daily:
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def to_html(report: Report, chart: bytes | None = None, chart_cid: str | None = None) -> str:
    """HTML body; the chart inline as data: URI, or as cid: for an email's related part."""
    cur = report.currency
    head = "".join(f"<th>{html.escape(h)}</th>" for h in
                   (report.by, "total", "allocated", "shared", "idle", "change", "CPU efficiency", "unused requests"))
    body = []
    for g in report.groups:
        eff = f"{100 * g.cpu_efficiency:.0f}%" if g.cpu_efficiency is not None else "-"
        cells = (g.name, f"{g.total:,.2f}", f"{g.by_component.get('allocated', 0):,.2f}",
                 f"{g.by_component.get('shared', 0):,.2f}", f"{g.by_component.get('idle', 0):,.2f}",
                 _change(g.change, g.change_pct, cur), eff, f"{g.unused_request_cost:,.2f}")
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    gpu = "".join(_gpu_html_row(g.name, g.gpu, g.top_gpu_workloads()) for g in report.groups if g.gpu)
    if gpu:
        heads = "".join(f"<th>{html.escape(h)}</th>" for h in
                        (report.by, "GPU cost", "GPU efficiency", "GPU waste", "top workloads by GPU waste"))
        gpu = f"<h3>GPU waste</h3><table border=1 cellpadding=4><tr>{heads}</tr>{gpu}</table>"
    img = ""
    if chart_cid:
        img = f'<p><img src="cid:{chart_cid}" alt="Daily cost trend"></p>'
    elif chart:
        img = f'<p><img src="data:image/png;base64,{base64.b64encode(chart).decode()}" alt="Daily cost trend"></p>'
    return (f"<html><body><h2>{html.escape(_title(report))}</h2>"
            f"<p>Total <b>{html.escape(_money(report.cluster_total, cur))}</b>; source: {report.source}; "
            f"the groups add up to {html.escape(_money(report.groups_total, cur))}.</p>"
            f"<table border=1 cellpadding=4><tr>{head}</tr>{''.join(body)}</table>{gpu}{img}</body></html>")


def _gpu_html_row(name: str, gpu: GpuWaste, top: list[tuple[str, float]]) -> str:
    cells = (name, f"{gpu.gpu_cost:,.2f}", _pct(gpu.efficiency), f"{gpu.waste_cost:,.2f}",
             ", ".join(f"{n} {c:,.2f}" for n, c in top))
    return "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


def slack_blocks(report: Report, grafana_url: str | None) -> dict[str, Any]:
    """A Block Kit message: header, total, a compact table, and a link to the Grafana dashboard."""
    cur = report.currency
    table = "\n".join(f"{g.name[:18]:<18} {g.total:>12,.2f}  {_change(g.change, g.change_pct, cur)}"
                      for g in report.groups[:15])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _title(report)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Total:* {_money(report.groups_total, cur)}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{table}```"}},
    ]
    if grafana_url:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                       f"<{grafana_url.rstrip('/')}/d/chargeback-team|Open the cost dashboard>"}]})
    return {"text": f"{_title(report)}: {_money(report.groups_total, cur)}", "blocks": blocks}


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        return to_html(report, chart_png(report))
    return to_markdown(report)
