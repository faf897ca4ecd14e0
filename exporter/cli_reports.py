"""`chargeback report` and `chargeback reconcile`: commands that wire computed results to their outputs
(showback reports and their delivery, FOCUS rows, the bill comparison), registered on cli.main.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from exporter import cli_common
from exporter.cli_common import fail, load, with_progress
from exporter.config.schema import override
from exporter.core.window import parse_window
from exporter.engine.pipeline import command_pipeline
from exporter.outputs.focus import PERIODS as FOCUS_PERIODS
from exporter.outputs.focus import export_for
from exporter.outputs.formatters import parse_aggregate, render
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import join_matchers
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ChargebackError, ConfigError


@click.command()
@click.option("--prometheus-url", help="Prometheus base URL (overrides prometheus.url in the config).")
@click.option("--config", type=click.Path(dir_okay=False), help="YAML config file (reports: destinations).")
@click.option("--window", "window_text", default="lastweek", show_default=True,
              help="lastweek, lastmonth, or any allocate window.")
@click.option("--by", default="team", show_default=True,
              help="team, namespace, cost_center (or any attribution label).")
@click.option("--format", "fmt", default="markdown", show_default=True,
              type=click.Choice(["markdown", "csv", "html", "json", "focus"]),
              help="focus: FOCUS 1.0 rows (CSV), computed per UTC day (see allocate --format focus).")
@click.option("--focus-period", default="day", show_default=True, type=click.Choice(FOCUS_PERIODS))
@click.option("--cluster-name", help="With --format focus: SubAccountId (default: serve.clusterName).")
@click.option("--source", default="auto", show_default=True, type=click.Choice(["auto", "exporter", "computed"]),
              help="exporter series (exact, cheap) when they cover the window, else computed from raw metrics.")
@click.option("--send", is_flag=True, help="Deliver to the configured destinations instead of printing.")
@click.option("--dry-run", is_flag=True, help="With --send: print what would be sent, send nothing.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the report here instead of stdout.")
def report(prometheus_url: str | None, config: str | None, window_text: str, by: str, fmt: str,
           focus_period: str, cluster_name: str | None, source: str, send: bool, dry_run: bool,
           out: str | None) -> None:
    """Showback report per team (or namespace, cost centre) against the previous period."""
    from exporter.outputs.delivery import deliver
    from exporter.outputs.report import describe, make_report
    from exporter.outputs.reportformat import render as render_report


    try:
        cfg = load(config, prometheus_url)
        if by != "namespace" and by not in cfg.attribution.labels:
            labels = ", ".join(cfg.attribution.labels)
            raise ConfigError(f"--by {by!r}: use namespace or an attribution label ({labels})")
        now = cli_common.clock()
        window = parse_window(window_text, now, parse_duration(cfg.allocation.resolution), allow_empty=True)
        if fmt == "focus":  # the computed split per charge period, grouped --by
            if send:
                raise ConfigError("--format focus is written, not sent: use --out")
            pipeline = command_pipeline(cfg)
            text = export_for(cfg, pipeline.compute, window, focus_period, [by], cluster_name)
            if out:
                Path(out).write_text(text)
            else:
                click.echo(text, nl=False)
            return
        rep = make_report(cfg, window, by, now, source)
    except ChargebackError as e:
        fail(e)
    click.echo(f"report {describe(rep)}", err=True)
    if not send:
        text = render_report(rep, fmt)
        if out:
            Path(out).write_text(text)
        else:
            click.echo(text, nl=False)
        return
    outcomes = deliver(rep, cfg.reports, dry_run=dry_run)
    for o in outcomes:
        click.echo(f"{'ok  ' if o.ok else 'FAIL'} {o.destination}: {o.detail}", err=not o.ok)
    if not outcomes:
        click.echo("no destinations configured under reports:", err=True)
    if any(not o.ok for o in outcomes):
        sys.exit(1)


@click.command()
@click.option("--bill", "bills", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="FOCUS, AWS CUR 2.0 or GCP billing export (CSV, .gz); repeat for several files.")
@click.option("--prometheus-url", help="Prometheus base URL (overrides prometheus.url in the config).")
@click.option("--config", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--window", "window_text", default="lastmonth", show_default=True)
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "json", "csv"]))
@click.option("--reconciled", is_flag=True,
              help="Recompute the allocation on the bill's effective prices and print it (OpenCost JSON with "
                   "--format json); unmatched bill lines are shared by the sharing policy.")
@click.option("--aggregate", default="namespace", show_default=True, help="With --reconciled.")
def reconcile(bills: tuple[str, ...], prometheus_url: str | None, config: str | None, window_text: str,
              fmt: str, reconciled: bool, aggregate: str) -> None:
    """Compare the cloud bill with chargeback's computed cost, by category and by node."""
    from exporter.outputs.reconcile import bill_prices, inventory, reconciled_summary, render_reconciliation
    from exporter.outputs.reconcile import reconcile as compare
    from exporter.sources.billing import read_bill


    try:
        cfg = load(config, prometheus_url)
        import glob

        files = sorted({f for b in bills for f in (glob.glob(b) or [b])})  # globs, for the CronJob's volume
        bill = read_bill(list(files))
        window = parse_window(window_text, time.time(), parse_duration(cfg.allocation.resolution))
        client = PrometheusClient(cfg.prometheus)
        result = with_progress(command_pipeline(cfg, client), window)
        inv = inventory(client, window, join_matchers(cfg.prometheus.ksmSelector, cfg.prometheus.clusterSelector))
    except ChargebackError as e:
        fail(e)
    rec = compare(bill, inv, result, window, cfg.reconciliation.clusterTags)
    if bill.currency and bill.currency != cfg.pricing.currency:
        click.echo(f"chargeback: error: the bill is in {bill.currency}, prices are in {cfg.pricing.currency}",
                   err=True)
        sys.exit(2)
    if not reconciled:
        click.echo(render_reconciliation(rec, fmt), nl=fmt != "csv")
        return
    try:
        parts, labels = parse_aggregate(aggregate, cfg.attribution.labels)
        cfg = override(cfg, "attribution", labels=labels)
        again = with_progress(command_pipeline(cfg, client, bill_prices(rec, result)), window)
    except ChargebackError as e:
        fail(e)
    click.echo(reconciled_summary(rec, again), err=True)
    click.echo(render(again, parts, tuple(cfg.attribution.labels), "json" if fmt == "json" else fmt,
                      cfg.pricing.currency))
