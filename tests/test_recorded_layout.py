"""The recorded names through the migration to the labelled record (docs/rules-and-alerts.md).

History recorded by the release before (the per-pair names, tests/allocation_rules_v1.yaml, the group as
that release rendered it for the default config) must still be read, alone or next to the labelled record
where the rules were upgraded within the window, and give the numbers the recorded path always gave: the
hand-worked amounts of the core hour, and the steady namespaces the raw path's (test_recorded).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from demo.localprom import PrometheusServer, backfill, backfill_rules
from exporter.config.schema import parse_config
from exporter.mixin.budgets import allocation_rules

from .scenarios import CORE_CONFIG, WINDOW_SECONDS, core_cluster
from .test_allocate_core import window_arg
from .test_recorded import allocate, assert_recorded_hour

V1_RULES = Path(__file__).parent / "allocation_rules_v1.yaml"


@pytest.fixture(scope="module")
def upgraded_prom(tmp_path_factory: pytest.TempPathFactory, core_t0: int) -> Iterator[PrometheusServer]:
    """The core scenario; the previous release's rules recorded from t0 - 10 min to t0 + 30 min, this
    release's from t0 + 30 min to the hour's end (the upgrade: both record the step at t0 + 30 min)."""
    root = tmp_path_factory.mktemp("layout")
    backfill(core_cluster(core_t0), root / "data", core_t0 - 1800, core_t0 + WINDOW_SECONDS + 600, 60)
    rules = root / "allocation.rules.yaml"
    rules.write_text(yaml.safe_dump(allocation_rules(parse_config(CORE_CONFIG))))
    with PrometheusServer(root / "data") as prom:
        backfill_rules(prom, V1_RULES, core_t0 - 600, core_t0 + 1800)
        backfill_rules(prom, rules, core_t0 + 1800, core_t0 + WINDOW_SECONDS)
        yield prom


def test_history_of_the_deprecated_names_is_still_read(upgraded_prom: PrometheusServer, core_t0: int,
                                                       tmp_path: Path) -> None:
    """10-minute chunks: the first three hold only the deprecated names (read alone), the one ending at
    t0 + 30 min both (the labelled record at its last step only: each step reads whichever it has), the
    last two only the labelled record. All six recorded; the amounts those of the recorded path."""
    data, stats = allocate(upgraded_prom, tmp_path, window_arg(core_t0), chunk="10m")
    assert stats["chunks"] == {"recorded": 6, "raw": 0}
    assert_recorded_hour(upgraded_prom, core_t0, tmp_path, data)


def test_one_chunk_across_the_upgrade(upgraded_prom: PrometheusServer, core_t0: int, tmp_path: Path) -> None:
    """The whole hour as one chunk: half its steps from each layout, the same amounts."""
    data, stats = allocate(upgraded_prom, tmp_path, window_arg(core_t0), chunk="1h")
    assert stats["chunks"] == {"recorded": 1, "raw": 0}
    assert_recorded_hour(upgraded_prom, core_t0, tmp_path, data)
