"""Report output: markdown, CSV, HTML (exporter/outputs/reporthtml.py), JSON, Slack Block Kit, and the chart PNG.

The chart uses matplotlib (Agg backend, no display): the most widely used, well-kept plotting
library, which renders a PNG headless with no browser or server.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from typing import Any

from exporter.core.window import iso
from exporter.outputs.escape import csv_rows, md_cell, slack_text
from exporter.outputs.report import Group, Report
from exporter.outputs.reporthtml import to_html
from exporter.outputs.reporttext import (
    colours,
    coverage_note,
    gpu_waste_total,
    group_change,
    listed,
    money,
    pct,
    previous_note,
    title,
    total_change,
)


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
            "top_namespaces": listed(g.top_namespaces(), "; "),
            "top_workloads": listed(g.top_workloads(), "; "),
            "gpu_cost": g.gpu.gpu_cost if g.gpu else 0.0,
            "gpu_efficiency": g.gpu.efficiency if g.gpu else None,
            "gpu_waste": g.gpu.waste_cost if g.gpu else 0.0,
            "top_gpu_waste_workloads": listed(g.top_gpu_workloads(), "; "),
            "energy_kwh": g.energy_kwh,
            "carbon_kg_co2e": g.carbon_kg,
        })
    return out


def _workloads_json(g: Group) -> list[dict[str, Any]]:
    return [{"name": w.key, "namespace": w.namespace, "workload": w.name, "totalCost": w.total,
             "gpuCost": w.gpu.gpu_cost, "gpuHours": w.gpu.gpu_hours, "gpuEfficiency": w.gpu.efficiency,
             "gpuWasteCost": w.gpu.waste_cost} for w in g.ranked_workloads()]


def to_json(report: Report) -> str:
    return json.dumps({
        "window": {"start": iso(report.window.start), "end": iso(report.window.end),
                   "seconds": report.window.seconds, "coveredSeconds": report.covered_seconds},
        "previous": {"start": iso(report.previous.start), "end": iso(report.previous.end),
                     "seconds": report.previous.seconds, "coveredSeconds": report.previous_covered_seconds,
                     "comparable": report.comparable},
        "by": report.by, "source": report.source, "currency": report.currency,
        "clusterTotal": report.cluster_total, "previousTotal": report.previous_total,
        "change": report.cluster_total - report.previous_total if report.comparable else None,
        "groupsTotal": report.groups_total, "addsUp": report.adds_up, "gpuWasteTotal": gpu_waste_total(report),
        "groups": [{**r, "namespaces": g.namespaces, "budgets": g.budgets, "workloads": _workloads_json(g)}
                   for r, g in zip(rows(report), report.groups, strict=True)],
        "days": [{"start": iso(d.start), "seconds": d.seconds, "coveredSeconds": d.covered_seconds,
                  "partial": d.partial, "groups": d.groups} for d in report.days],
    }, indent=2)


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    data = [{k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()} for r in rows(report)]
    writer = csv.DictWriter(buf, fieldnames=list(data[0]) if data else [report.by, "total"])
    writer.writeheader()
    writer.writerows(csv_rows(data))  # group, namespace and workload names come from Prometheus: no formulas
    return buf.getvalue()


def to_markdown(report: Report) -> str:
    cur = report.currency
    change = f" ({total_change(report)} against the previous period)" if report.comparable else ""
    lines = [f"# {title(report)}", "",
             f"Total **{money(report.cluster_total, cur)}**{change}. Source: {report.source}."]
    lines += [f"{n}" for n in (previous_note(report), coverage_note(report)) if n]
    lines += ["", f"| {md_cell(report.by)} | total | allocated | shared | idle | change | CPU efficiency | "
              "unused requests | top namespaces | top workloads |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for g in report.groups:
        lines.append(
            f"| {md_cell(g.name)} | {g.total:,.2f} | {g.by_component.get('allocated', 0):,.2f} | "
            f"{g.by_component.get('shared', 0):,.2f} | {g.by_component.get('idle', 0):,.2f} | "
            f"{group_change(g, cur)} | {pct(g.cpu_efficiency)} | {g.unused_request_cost:,.2f} | "
            f"{md_cell(listed(g.top_namespaces()))} | {md_cell(listed(g.top_workloads()))} |")
    lines += ["", f"The {len(report.groups)} groups add up to {money(report.groups_total, cur)}"
              + (", the cluster total." if report.adds_up else f", NOT the cluster total {report.cluster_total:,.2f}.")]
    budgets = [(g.name, b) for g in report.groups for b in g.budgets]
    if budgets:
        lines += ["", "Budgets: " + "; ".join(f"{b.get('budget')} {100 * b['usage']:.0f}% used" for _n, b in budgets)]
    partial = [d for d in report.days if d.partial]
    if partial:
        lines += ["", "Partial days (hours with data): " + ", ".join(
            f"{iso(d.start)[:10]} {d.covered_seconds / 3600:.1f} h" for d in partial)]
    return "\n".join(lines + _gpu_markdown(report) + _energy_markdown(report)) + "\n"


def _energy_markdown(report: Report) -> list[str]:
    """Energy and carbon by group (docs/energy-and-carbon.md): measured by Kepler or estimated; not money."""
    if not any(g.energy_kwh for g in report.groups):
        return []
    lines = ["", "## Energy and carbon", "",
             "Kepler's measurement where it runs, else the Cloud Carbon Footprint estimate; carbon by the grid "
             "intensity of each node's region.", "", f"| {md_cell(report.by)} | energy kWh | carbon kg CO2e |",
             "|---|---:|---:|"]
    for g in sorted(report.groups, key=lambda g: -g.energy_kwh):
        lines.append(f"| {md_cell(g.name)} | {g.energy_kwh:,.3f} | {g.carbon_kg:,.3f} |")
    return lines


def _gpu_markdown(report: Report) -> list[str]:
    """The GPU waste section: allocated GPU cost paid for idle GPU time (dcgm-exporter), by group."""
    gpu = sorted((g for g in report.groups if g.gpu), key=lambda g: -(g.gpu.waste_cost if g.gpu else 0.0))
    if not gpu:
        return []
    lines = ["", "## GPU waste", "",
             "Allocated GPU cost x (1 - utilisation) seen by dcgm-exporter: a view on the GPU cost above, not extra.",
             "", f"| {md_cell(report.by)} | GPU cost | GPU efficiency | GPU waste | top workloads by GPU waste |",
             "|---|---:|---:|---:|---|"]
    for g in gpu:
        assert g.gpu is not None
        lines.append(f"| {md_cell(g.name)} | {g.gpu.gpu_cost:,.2f} | {pct(g.gpu.efficiency)} | "
                     f"{g.gpu.waste_cost:,.2f} | {md_cell(listed(g.top_gpu_workloads()))} |")
    return lines


def chart_png(report: Report) -> bytes:
    """Daily cost, one bar per UTC day stacked by group. A partial day (cut by the window, or with hours
    without data) is drawn pale, hatched and labelled with its hours: it is not a day's cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    fig, ax = plt.subplots(figsize=(9, 3.4), dpi=110)
    cols = colours(report)
    labels = [datetime.fromtimestamp(d.start, tz=timezone.utc).strftime("%a %d %b") for d in report.days]
    xs = list(range(len(report.days)))
    bottoms = [0.0] * len(report.days)
    for name in cols:
        values = [max(d.groups.get(name, 0.0), 0.0) for d in report.days]
        if not any(values):
            continue
        ax.bar(xs, values, bottom=bottoms, label=name, width=0.6, edgecolor="white", linewidth=0.5,
               color=[to_rgba(cols[name], 0.45 if d.partial else 1.0) for d in report.days])
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    for x, d, top in zip(xs, report.days, bottoms, strict=True):
        if d.partial:
            ax.bar([x], [top], width=0.6, fill=False, hatch="//", edgecolor="#64748b", linewidth=0.6,
                   linestyle="--")
            ax.annotate(f"partial: {d.covered_seconds / 3600:.1f} of 24 h", (x, top), ha="center", va="bottom",
                        fontsize=7, color="#334155", xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_title(f"Daily cost by {report.by} (pale and hatched: a partial day, not a whole day's cost)", fontsize=8)
    ax.set_ylabel(report.currency, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if report.days:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def slack_blocks(report: Report, grafana_url: str | None) -> dict[str, Any]:
    """A Block Kit message: header, total, a compact table, and a link to the Grafana dashboard."""
    cur = report.currency
    # Slack reads &, < and > as control characters (<!channel> pings everyone): names are escaped, after the cut
    table = "\n".join(f"{slack_text(g.name[:18].ljust(18))} {g.total:>12,.2f}  {group_change(g, cur)}"
                      for g in report.groups[:15])
    note = previous_note(report)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(report)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Total:* {money(report.groups_total, cur)}"
                                     + (f"\n_{slack_text(note)}_" if note else "")}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{table}```"}},
    ]
    if grafana_url:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                       f"<{grafana_url.rstrip('/')}/d/chargeback-team|Open the cost dashboard>"}]})
    return {"text": slack_text(f"{title(report)}: {money(report.groups_total, cur)}"), "blocks": blocks}


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        return to_html(report, chart_png(report))
    return to_markdown(report)

