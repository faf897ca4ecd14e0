"""What every `chargeback` command shares: the config with its flag overrides, the one-line error exit and
the progress bar. cli.py and cli_reports.py both import it, so neither imports the other."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

import click

from exporter.config.schema import Config, load_config, override
from exporter.core.window import Window, iso
from exporter.engine.pipeline import Pipeline
from exporter.vocab.errors import ChargebackError
from exporter.vocab.redact import redact

# "Now" for every command's windows; tests set it (a calendar window at 00:00:30).
clock: Callable[[], float] = time.time


def load(config: str | None, prometheus_url: str | None, cluster_selector: str | None = None) -> Config:
    cfg = load_config(config)
    return override(cfg, "prometheus", url=prometheus_url, clusterSelector=cluster_selector)


def fail(e: ChargebackError) -> NoReturn:
    click.echo(f"chargeback: error: {redact(str(e))}", err=True)
    sys.exit(2)


def with_progress(pipeline: Pipeline, window: Window) -> Any:
    """Run the pipeline, drawing a progress bar on a terminal when the window has several chunks."""
    chunks = len(pipeline.chunks(window))
    if chunks <= 1 or not sys.stderr.isatty():
        return pipeline.compute(window)
    with click.progressbar(length=chunks, label=f"{iso(window.start)} .. {iso(window.end)}",
                           file=sys.stderr, show_eta=True, show_pos=True) as bar:
        def advance(_piece: Window) -> None:
            bar.update(1)

        return pipeline.compute(window, advance)
