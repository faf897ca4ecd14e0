"""The `chargeback` command line: `allocate` (one window, from history) and `serve` (the exporter)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from exporter import cli_common
from exporter.cli_common import fail, load, with_progress
from exporter.cli_reports import reconcile, report
from exporter.config.schema import override
from exporter.core.window import iso, parse_window
from exporter.engine.limits import check_window
from exporter.engine.pipeline import command_pipeline
from exporter.outputs.focus import PERIODS as FOCUS_PERIODS
from exporter.outputs.focus import export_for
from exporter.outputs.formatters import parse_aggregate, render
from exporter.sources.prometheus import PrometheusClient
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ChargebackError
from exporter.vocab.redact import install_log_redaction

# What "now" is for window expressions (`today`, `24h`); tests set their own, to be midnight at will.


def _render_to(write: Callable[[Path], list[Path]], out_dir: str) -> list[Path]:
    """Run a file-rendering step (dashboards, manifests); its error is the usual one line."""
    try:
        return write(Path(out_dir))
    except ChargebackError as e:
        fail(e)


@click.group()
@click.option("--log-level", default=None, help="Default: WARNING for one-shot commands, INFO for serve.",
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.pass_context
def main(ctx: click.Context, log_level: str | None) -> None:
    """Kubernetes cost attribution from the metrics Prometheus already has."""
    if log_level is None:
        log_level = "INFO" if ctx.invoked_subcommand == "serve" else "WARNING"
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    install_log_redaction()  # no URL credential or known secret in any log line, ours or a library's
    if log_level.upper() != "DEBUG":  # retries are ours to report, once, with the cause
        logging.getLogger("urllib3").setLevel(logging.ERROR)


@main.command()
@click.option("--prometheus-url", help="Prometheus base URL (overrides prometheus.url in the config).")
@click.option("--window", "window_text", default="24h", show_default=True,
              help="24h, 7d, today, yesterday, week, lastweek, month, lastmonth or RFC3339,RFC3339.")
@click.option("--aggregate", default="namespace", show_default=True,
              help="namespace, node, cluster, team, cost_center, namespace,team, label:<key>, ...")
@click.option("--config", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json", "csv", "focus"]), help="focus: FOCUS 1.0 rows (CSV).")
@click.option("--focus-period", default="day", show_default=True, type=click.Choice(FOCUS_PERIODS),
              help="With --format focus: the charge period of a row (UTC days, hours, or the whole window).")
@click.option("--cluster-name", help="With --format focus: SubAccountId (default: serve.clusterName).")
@click.option("--share-namespaces", help="Comma list of namespaces whose cost is shared (overrides the config).")
@click.option("--share-split", type=click.Choice(["weighted", "even"]), help="Default split of shared costs.")
@click.option("--share-idle/--no-share-idle", default=None, help="Share idle over tenants instead of __idle__.")
@click.option("--idle-by-node/--no-idle-by-node", default=None, help="Share idle per node, not cluster-wide.")
@click.option("--stats", is_flag=True, help="Print query statistics (count, wall and Prometheus time) to stderr.")
@click.option("--cluster-selector", help='Matchers added to every query, e.g. cluster="prod" (Thanos/Mimir).')
@click.option("--concurrency", type=int, help="Chunks queried at once (overrides allocation.concurrency).")
def allocate(prometheus_url: str | None, window_text: str, aggregate: str, config: str | None, fmt: str,
             focus_period: str, cluster_name: str | None, share_namespaces: str | None, share_split: str | None,
             share_idle: bool | None, idle_by_node: bool | None, stats: bool, cluster_selector: str | None,
             concurrency: int | None) -> None:
    """Compute cost for a window straight from Prometheus history."""
    try:
        cfg = load(config, prometheus_url, cluster_selector)
        cfg = override(cfg, "sharing", shareNamespaces=share_namespaces, shareSplit=share_split,
                       shareIdle=share_idle, idleByNode=idle_by_node)
        cfg = override(cfg, "allocation", concurrency=concurrency)
        parts, labels = parse_aggregate(aggregate, cfg.attribution.labels)
        cfg = override(cfg, "attribution", labels=labels)
        step = parse_duration(cfg.allocation.resolution)
        window = parse_window(window_text, cli_common.clock(), step, allow_empty=True)
        check_window(window, cfg.api.maxWindow)
        client = PrometheusClient(cfg.prometheus)
        pipeline = command_pipeline(cfg, client)
        pipeline.running_spans = fmt != "focus"  # /allocation's fields, spans included (api.md)
        result = None
        if fmt == "focus":  # one computation per charge period
            text = export_for(cfg, lambda w: with_progress(pipeline, w), window, focus_period, parts, cluster_name)
        else:
            result = with_progress(pipeline, window)
            text = render(result, parts, tuple(cfg.attribution.labels), fmt, cfg.pricing.currency)
    except ChargebackError as e:
        fail(e)
    click.echo(text, nl=fmt != "focus")
    # Exit 0: the covered part is right, and the rest is named.
    for line in result.coverage.warnings() if result is not None else ():
        click.echo(f"chargeback: warning: {line}", err=True)
    if not window.seconds:  # `today` at 00:00:30: a fair question, answered with an empty set
        click.echo(f"chargeback: note: window {window_text!r} ({iso(window.start)}) holds no whole "
                   f"{cfg.allocation.resolution} step yet: nothing to cost", err=True)
    if stats:
        s = client.stats
        click.echo(json.dumps({"queries": s.queries, "http_seconds": round(s.wall_seconds, 3),
                               "prometheus_seconds": round(s.server_seconds, 3),
                               "chunks": {"recorded": pipeline.fetcher.sources["recorded"],
                                          "raw": pipeline.fetcher.sources["raw"]}}), err=True)


@main.command()
@click.option("--prometheus-url", help="Prometheus base URL (overrides prometheus.url in the config).")
@click.option("--config", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--listen", help="host:port for /metrics, /healthz and /allocation/compute.")
@click.option("--start", help="Accrual start when Prometheus holds no watermark (default: now): RFC3339 "
              "(UTC when no zone is given) or unix seconds.")
@click.option("--until", help="Time to stop accruing at (replays, tests), as --start; the server keeps serving.")
@click.option("--cluster-name", help="Add cluster=<name> to every series (when Prometheus has no external label).")
@click.option("--cluster-selector", help='Matchers added to every query, e.g. cluster="prod" (Thanos/Mimir).')
@click.option("--web.config.file", "web_config_file", type=click.Path(dir_okay=False),
              help="Prometheus exporter-toolkit web config: TLS and basic auth (overrides api.webConfigFile).")
def serve(prometheus_url: str | None, config: str | None, listen: str | None, start: str | None,
          until: str | None, cluster_name: str | None, cluster_selector: str | None,
          web_config_file: str | None) -> None:
    """Run the long-lived exporter: accrue cost interval by interval and publish it as metrics."""
    from exporter.serve.httpapi import run_server

    try:
        cfg = load(config, prometheus_url, cluster_selector)
        cfg = override(cfg, "serve", listen=listen, start=start, clusterName=cluster_name)
        cfg = override(cfg, "api", webConfigFile=web_config_file)
        run_server(cfg, until)
    except ChargebackError as e:
        fail(e)


@main.command()
@click.option("--prometheus-url", help="Prometheus base URL (overrides prometheus.url in the config).")
@click.option("--config", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--cluster-selector", help='Matchers added to every query, e.g. cluster="prod" (Thanos/Mimir).')
def mcp(prometheus_url: str | None, config: str | None, cluster_selector: str | None) -> None:
    """MCP server over stdio for AI agents: read-only cost tools (serve also answers it at /mcp)."""
    from exporter.serve.mcpserver import run_stdio
    from exporter.serve.server import Exporter

    try:
        exporter = Exporter(load(config, prometheus_url, cluster_selector))
    except ChargebackError as e:
        fail(e)
    try:
        run_stdio(exporter)
    finally:
        exporter.close()


@main.command("audit-labels")
@click.option("--prometheus-url", help="Prometheus base URL (overrides prometheus.url in the config).")
@click.option("--config", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--window", "window_text", default="7d", show_default=True, help="Window for the cost at stake.")
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "json"]))
def audit_labels(prometheus_url: str | None, config: str | None, window_text: str, fmt: str) -> None:
    """Coverage of each attribution label: who is missing it, and the cost at stake."""
    from exporter.outputs.audit import label_audit, to_json, to_text

    try:
        cfg = load(config, prometheus_url)
        window = parse_window(window_text, cli_common.clock(), parse_duration(cfg.allocation.resolution),
                              allow_empty=True)
        client = PrometheusClient(cfg.prometheus)
        pipeline = command_pipeline(cfg, client)
        result = with_progress(pipeline, window)
        meta, audits = label_audit(pipeline, client, window, result)
    except ChargebackError as e:
        fail(e)
    if fmt == "json":
        click.echo(json.dumps(to_json(audits), indent=2))
    else:
        click.echo(f"attribution labels read from {meta.source}")
        click.echo(to_text(audits, cfg.pricing.currency, window_text))


@main.command()
@click.option("--prometheus-url", help="Prometheus base URL (overrides prometheus.url in the config).")
@click.option("--config", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--window", "window_text", default="1h", show_default=True, help="Window to read node facts over.")
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "json"]))
def prices(prometheus_url: str | None, config: str | None, window_text: str, fmt: str) -> None:
    """Every node with its instance type, capacity type, hourly price, CPU/RAM/GPU split and price source."""
    from tabulate import tabulate

    from exporter.core.pricing import GIB, capacity_type, price_nodes, unmatched_rules

    try:
        cfg = load(config, prometheus_url)
        window = parse_window(window_text, cli_common.clock(), parse_duration(cfg.allocation.resolution))
        pipeline = command_pipeline(cfg)
        _capacity, nodes = pipeline.fetcher.node_facts(window, pipeline.metadata(window))
        rates = price_nodes(nodes, cfg.pricing, pipeline.shipped)
    except ChargebackError as e:
        fail(e)
    rows: list[dict[str, Any]] = []
    for name, r in rates.items():
        f = nodes[name]
        hourly = r.hourly(f)
        rows.append({"node": name, "instanceType": f.instance_type, "capacityType": capacity_type(f),
                     "cores": f.cores, "ramGiB": f.ram_bytes / GIB, "gpus": f.gpus, "hourly": hourly,
                     "cpuPerCoreHour": r.cpu, "ramPerGiBHour": r.ram, "gpuPerHour": r.gpu,
                     "cpuShare": f.cores * r.cpu / hourly if hourly else 0.0,
                     "ramShare": f.ram_bytes / GIB * r.ram / hourly if hourly else 0.0,
                     "gpuShare": f.gpus * r.gpu / hourly if hourly else 0.0, "source": r.source,
                     "gpuModel": f.gpu_model, "gpuMode": f.gpu.mode if f.gpu else ""})
    for row in rows:
        if row["source"].startswith("default"):
            click.echo(f"warning: node {row['node']} has no price source; priced at {row['source']} rates", err=True)
    for i in unmatched_rules(nodes, cfg.pricing):
        click.echo(f"warning: pricing.rules.{i} matches no node (match {cfg.pricing.rules[i].match})", err=True)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = [[r["node"], r["instanceType"], r["capacityType"], r["hourly"], r["cpuPerCoreHour"], r["ramPerGiBHour"],
              r["gpuPerHour"] if r["gpus"] else None,
              f"{100 * r['cpuShare']:.0f}/{100 * r['ramShare']:.0f}/{100 * r['gpuShare']:.0f}", r["source"]]
             for r in rows]
    cur = cfg.pricing.currency
    click.echo(tabulate(table, headers=["node", "instance type", "capacity", f"{cur}/h", "per core-h", "per GiB-h",
                                        "per GPU-h", "cpu/ram/gpu %", "source"], floatfmt=".6f", missingval=""))
    if pipeline.shipped:
        click.echo(f"shipped on-demand prices compiled {pipeline.shipped.compiled}; precedence: price-book rule > "
                   "OpenCost metrics > shipped prices > default rates")


@main.command()
@click.option("--budgets", "budgets_file", type=click.Path(dir_okay=False), help="Budgets YAML (optional).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--namespace", default="monitoring", show_default=True, help="Namespace of the PrometheusRule.")
@click.option("--config", type=click.Path(dir_okay=False),
              help="The exporter's config: its allocation policy and selectors shape the recorded allocation rules.")
def rules(budgets_file: str | None, out_dir: str, namespace: str, config: str | None) -> None:
    """Render recording rules and (budget) alerts from the Jsonnet mixin: a rule file and a PrometheusRule."""
    from exporter.mixin.budgets import BudgetsFile, allocation_config, carbon_config, load_budgets_file, write_rules

    try:
        file = load_budgets_file(budgets_file) if budgets_file else BudgetsFile()
        mixin = {**(allocation_config(load(config, None)) if config else {}), **carbon_config(file.carbon)}
        written = write_rules(list(file.budgets), Path(out_dir), namespace, mixin or None)
    except ChargebackError as e:
        fail(e)
    carbon = f", {len(file.carbon)} carbon budget(s)" if file.carbon else ""
    click.echo(f"{len(file.budgets)} budget(s){carbon} -> " + ", ".join(str(p) for p in written))


@main.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the JSON.")
def dashboards(out_dir: str) -> None:
    """Render the Grafana dashboards from dashboards/ as JSON (the ConfigMaps come with `manifests`)."""
    from exporter.mixin.dashboards import write_dashboards

    written = _render_to(write_dashboards, out_dir)
    click.echo(f"{len(written)} dashboard(s) written to {out_dir}")


@main.command()
@click.option("--out", "out_dir", default="deploy", show_default=True, type=click.Path(file_okay=False))
def manifests(out_dir: str) -> None:
    """Render deploy/ from deploy/jsonnet/main.jsonnet: one file per object and a kustomization."""
    from exporter.mixin.dashboards import write_manifests

    written = _render_to(write_manifests, out_dir)
    click.echo(f"{len(written)} file(s) written under {out_dir}")


# `report` and `reconcile` live in cli_reports.py (they only wire computed results to their outputs).
main.add_command(report)
main.add_command(reconcile)
