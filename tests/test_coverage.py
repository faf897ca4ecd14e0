"""Data coverage: short source gaps are bridged, long ones and time before the data are reported, not invented.

One real Prometheus holds 11 hours of a small cluster (from D0) with three outages, each under its own
window; every expected amount is worked out by hand below. Prices (OpenCost metrics):
n1 4 cores, 16 GiB at cpu 0.04/core-h, ram 0.005/GiB-h: 0.16 + 0.08 = 0.24/h;
n2 8 cores, 32 GiB at cpu 0.05, ram 0.01: 0.40 + 0.32 = 0.72/h. Nodes together: 0.96/h.
Policy max (allocation = max(request, usage)), usage constant:
  a/web   n1 req 1 core 4 GiB, uses 0.5 / 2 GiB  -> 1 x 0.04 + 4 x 0.005   = 0.06/h
  a/burst n1 req 0.5 core 1 GiB, uses 1.5 / 0.5  -> 1.5 x 0.04 + 1 x 0.005 = 0.065/h  (a: 0.125/h)
  b/api   n2 req 2 cores 8 GiB, uses 1 / 4 GiB   -> 2 x 0.05 + 8 x 0.01    = 0.18/h
  c/temp  n2 req 1 core 2 GiB, uses 0.5 / 1 GiB  -> 1 x 0.05 + 2 x 0.01    = 0.07/h, deleted in gap A
Prometheus 2.x's 5-minute lookback includes its left edge: after a source's last sample at G0, the
steps up to G0 + 300 still see it; the first step with a sample after the gap (at G1) is G1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from demo.localprom import PrometheusServer, backfill
from demo.synthetic import GIB, Cluster, Container, Gap, Node, Pod
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.core.coverage import COVERED, Coverage, Reason, SourceState, State, plan
from exporter.core.window import Window
from exporter.engine.pipeline import Pipeline
from exporter.serve.accrual import NamespaceKey
from exporter.serve.server import Exporter
from exporter.sources.prometheus import PrometheusClient

from .conftest import aligned_past
from .test_allocate_core import window_arg

H, M = 3600, 60
CENT = 0.005
NODES = 0.96
A, B, C = 0.125, 0.18, 0.07

# Window A (D0+1h, D0+3h]: KSM silent 25 minutes (samples at G0 = D0+1h50m and G1 = D0+2h15m).
A_G0, A_G1 = 110 * M, 2 * H + 15 * M
# Window B (D0+4h, D0+7h]: KSM silent 2 h (D0+4h30m .. D0+6h30m), more than maxGapBridge.
B_G0, B_G1 = 4 * H + 30 * M, 6 * H + 30 * M
# Window D (D0+8h, D0+9h]: cAdvisor silent 20 minutes (D0+8h20m .. D0+8h40m).
D_G0, D_G1 = 8 * H + 20 * M, 8 * H + 40 * M
# OpenCost silent 25 minutes (D0+9h30m .. D0+9h55m), for a 10-minute chunk inside it.
O_G0, O_G1 = 9 * H + 30 * M, 9 * H + 55 * M


def cluster(d0: int) -> Cluster:
    def pod(ns: str, name: str, node: str, cpu: float, gib: float, use: float, use_gib: float,
            deleted: int | None = None) -> Pod:
        return Pod(ns, name, node, (Container("app", cpu, gib * GIB, 0, use, use_gib * GIB),), deleted=deleted)

    nodes = (Node("n1", 4, 16 * GIB, opencost={"cpu": 0.04, "ram": 0.005}),
             Node("n2", 8, 32 * GIB, opencost={"cpu": 0.05, "ram": 0.01}))
    pods = (pod("a", "web", "n1", 1, 4, 0.5, 2), pod("a", "burst", "n1", 0.5, 1, 1.5, 0.5),
            pod("b", "api", "n2", 2, 8, 1, 4), pod("c", "temp", "n2", 1, 2, 0.5, 1, deleted=d0 + A_G0 + 60))
    gaps = (Gap("ksm", d0 + A_G0, d0 + A_G1), Gap("ksm", d0 + B_G0, d0 + B_G1),
            Gap("cadvisor", d0 + D_G0, d0 + D_G1), Gap("opencost", d0 + O_G0, d0 + O_G1))
    return Cluster(nodes, pods, {"a": {}, "b": {}, "c": {}}, gaps=gaps)


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    d0 = aligned_past(13)
    root = tmp_path_factory.mktemp("coverage")
    backfill(cluster(d0), root / "data", d0, d0 + 11 * H, 60)
    with PrometheusServer(root / "data") as p:
        yield p, d0


def config(tmp_path: Path, url: str, allocation: dict[str, str] | None = None, **prometheus: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": url, **prometheus}, "allocation": allocation or {}}))
    return path


def allocate(cfg: Path, start: int, hours: float) -> tuple[Result, dict[str, Any]]:
    res = CliRunner().invoke(main, ["allocate", "--config", str(cfg), "--window", window_arg(start, hours),
                                    "--format", "json"])
    assert res.exit_code == 0, res.output
    return res, json.loads(res.stdout)


def totals(body: dict[str, Any]) -> dict[str, float]:
    return {ns: row["totalCost"] for ns, row in body["data"][0].items()}


def assert_cents(got: dict[str, float], expected: dict[str, float], total: float) -> None:
    for ns, want in expected.items():
        assert got.get(ns, 0.0) == pytest.approx(want, abs=CENT), ns
    assert set(got) == set(expected)
    assert sum(got.values()) == pytest.approx(total, abs=1e-9 + total * 1e-9)  # conservation, exact


# ---- the plan, on plain data ----------------------------------------------------------------------

def test_plan_bridges_a_short_gap_and_reports_long_ones() -> None:
    steps = set(range(0, 7201, 60))
    short = steps - set(range(1200, 1800, 60))  # absent 1200..1740: 10 steps
    segs = plan(600, 2400, 60, {"ksm": short}, 3600, ("ksm",))
    assert [(s.start, s.end) for s in segs] == [(600, 1140), (1140, 1740), (1740, 2400)]
    assert segs[1].state("ksm") == SourceState(State.BRIDGED, 1140, 1800)
    assert segs[0].covered and segs[2].covered and segs[0].state("ksm") == COVERED
    long = steps - set(range(1200, 6000, 60))  # 80 steps > an hour
    segs = plan(600, 2400, 60, {"ksm": long}, 3600, ("ksm",))
    assert segs[1].state("ksm") == SourceState(State.UNCOVERED, 1140, 6000, Reason.TOO_LONG)
    # No data before the gap (start of the data), none after it (an open gap), none at all.
    late = set(range(1800, 7201, 60))
    assert plan(600, 2400, 60, {"ksm": late}, 3600, ("ksm",))[0].state("ksm").reason is Reason.BEFORE
    assert plan(600, 2400, 60, {"ksm": set(range(0, 1201, 60))}, 3600,
                ("ksm",))[1].state("ksm").reason is Reason.AFTER
    assert plan(600, 2400, 60, {}, 3600, ("ksm",))[0].state("ksm").reason is Reason.NO_DATA


def test_plan_splits_where_either_source_changes() -> None:
    steps = set(range(0, 7201, 60))
    segs = plan(0, 3600, 60, {"ksm": steps - {600, 660}, "cadvisor": steps - {630, 660, 720}}, 3600)
    # ksm absent at 600, 660; cadvisor absent at 660, 720 (630 is no step): 540 | 600 | 660 | 720 | ...
    assert [(s.start, s.end) for s in segs] == [(0, 540), (540, 600), (600, 660), (660, 720), (720, 3600)]
    assert set(segs[2].sources) == {"ksm", "cadvisor"}


def test_coverage_joins_chunks_and_says_it_in_one_line() -> None:
    """Two chunks before the data (the first far from it) and one reaching it: one interval, one line."""
    steps = set(range(7200, 14401, 60))
    cov = Coverage()
    for start in (0, 3600, 7200):
        result = Coverage()
        for seg in plan(start, start + 3600, 60, {"ksm": {t for t in steps if t <= start + 3600 + 3600}}, 3600,
                        ("ksm",), horizon=start + 7200):
            result.add_segment(seg)
        cov.merge(result)
    assert cov.seconds == 10800 and cov.covered_seconds == 3660  # steps 7200 .. 10800
    assert [(iv.start, iv.end, iv.source) for iv in cov.uncovered] == [(0, 7140, "ksm")]
    assert cov.warnings() == [f"{iso(0)}..{iso(7140)} uncovered (no kube-state-metrics data before {iso(7200)}); "
                              "costs cover 1.02h of 3h"]


# ---- against a real Prometheus --------------------------------------------------------------------

def test_a_25_minute_ksm_gap_is_bridged(prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """(a) and (e). On the code before the coverage model this window came out 20 of 120 minutes short."""
    p, d0 = prom
    res, body = allocate(config(tmp_path, p.url), d0 + H, 2)
    # temp is placed until the last step that still sees its KSM series (G0 + 300) and not in the
    # bridged gap, since it no longer exists after it: (G0 + 300 - (D0 + 1h)) = 3300 s.
    temp = C * (A_G0 + 300 - H) / H
    assert_cents(totals(body), {"a": 2 * A, "b": 2 * B, "c": temp, "__idle__": 2 * NODES - 2 * A - 2 * B - temp},
                 2 * NODES)
    cov = body["coverage"]
    assert cov["uncovered"] == [] and cov["coveredSeconds"] == cov["windowSeconds"] == 2 * H
    # Bridged from the step after G0 + 300 to the step before G1.
    assert cov["bridged"] == [{"start": window_arg(d0 + A_G0 + 300, 0).split(",")[0],
                               "end": window_arg(d0 + A_G1 - 60, 0).split(",")[0], "source": "ksm"}]
    assert "warning" not in res.stderr


def test_a_ksm_gap_longer_than_the_bridge_is_uncovered(prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """(b) Absent from G0 + 360 to G1 - 60: 6840 s > 1h. Covered: 10800 - 6840 = 3960 s = 1.1 h."""
    p, d0 = prom
    res, body = allocate(config(tmp_path, p.url), d0 + 4 * H, 3)
    f = 3960 / H
    assert_cents(totals(body), {"a": A * f, "b": B * f, "__idle__": (NODES - A - B) * f}, NODES * f)
    assert body["coverage"]["coveredSeconds"] == 3960
    start, end = (window_arg(d0 + t, 0).split(",")[0] for t in (B_G0 + 300, B_G1 - 60))
    assert body["coverage"]["uncovered"] == [{"start": start, "end": end, "source": "ksm",
                                              "reason": "kube-state-metrics missing longer than maxGapBridge"}]
    lines = res.stderr.strip().splitlines()
    assert lines == [f"chargeback: warning: {start}..{end} uncovered (kube-state-metrics missing longer than "
                     "maxGapBridge); costs cover 1.10h of 3h"]


def test_a_window_starting_a_day_before_the_data(prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """(c) (D0 - 1d, D0 + 1h]: the data starts at D0, so steps D0 .. D0 + 1h are covered: 61 minutes.
    At step D0 cAdvisor has one sample, no rate: burst is charged its 0.5-core request, not 1.5 cores."""
    p, d0 = prom
    res, body = allocate(config(tmp_path, p.url), d0 - 86400, 25)
    f = 61 / 60
    a = A * f - (1.5 - 0.5) * 0.04 / 60
    assert_cents(totals(body), {"a": a, "b": B * f, "c": C * f, "__idle__": NODES * f - a - B * f - C * f}, NODES * f)
    start, end = (window_arg(t, 0).split(",")[0] for t in (d0 - 86400, d0 - 60))
    assert body["coverage"]["uncovered"][0] == {"start": start, "end": end, "source": "ksm",
                                                "reason": f"no kube-state-metrics data before {iso(d0)}"}
    assert len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith(f"chargeback: warning: {start}..{end} uncovered (no kube-state-metrics data before")
    assert res.stderr.rstrip().endswith("costs cover 1.02h of 25h")


def test_a_cadvisor_gap_uses_the_counter_increase(prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """(d) burst uses 1.5 cores throughout; across the gap that comes from the counter's increase. Without
    the bridge the steps without a rate would charge burst its 0.5-core request (16 steps: 0.0107 less)."""
    p, d0 = prom
    _res, body = allocate(config(tmp_path, p.url), d0 + 8 * H, 1)
    assert_cents(totals(body), {"a": A, "b": B, "__idle__": NODES - A - B}, NODES)
    assert [iv["source"] for iv in body["coverage"]["bridged"]] == ["cadvisor"]


def test_an_opencost_gap_keeps_the_last_price(prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """A 10-minute chunk with no OpenCost sample in it: the nodes keep their last price (within maxGapBridge)
    instead of dropping to OpenCost's default rates. 0.96/h for 10 minutes = 0.16."""
    p, d0 = prom
    res, body = allocate(config(tmp_path, p.url, {"chunk": "10m"}), d0 + 9 * H + 35 * M, 10 / 60)
    assert_cents(totals(body), {"a": A / 6, "b": B / 6, "__idle__": (NODES - A - B) / 6}, NODES / 6)
    assert "default rates" not in res.stderr


def test_no_ksm_at_all_is_still_an_error(prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """(g) A selector that matches no kube-state-metrics series: the one-line cause, rc 2."""
    p, d0 = prom
    cfg = config(tmp_path, p.url, ksmSelector='job="no-such-job"')
    res = CliRunner().invoke(main, ["allocate", "--config", str(cfg), "--window", window_arg(d0 + H, 1)])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"chargeback: error: no node capacity in Prometheus for {iso(d0 + H)}..{iso(d0 + 2 * H)}: "
        "kube_node_status_capacity is missing (is kube-state-metrics scraped?)"]


def iso(t: int) -> str:
    return window_arg(t, 0).split(",")[0]


def serve_through(url: str, start: int, end: int, nows: list[int]) -> Exporter:
    """Drive serve's accrual cycle at fixed times (new series exposed for 0 s, so each tick applies all)."""
    raw = {"prometheus": {"url": url}, "serve": {"lag": "1m", "start": iso(start), "exposeNewSeriesFor": "0s"}}
    exporter = Exporter(parse_config(raw), until=iso(end))
    for now in nows:
        exporter.cycle(now)
        exporter.ledger.tick()
    return exporter


def namespace_totals(exporter: Exporter) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, v in exporter.ledger.counters.items():
        if isinstance(key, NamespaceKey):
            out[key.namespace] = out.get(key.namespace, 0.0) + v
    return out


def test_serve_waits_on_an_open_gap_then_bridges_it(prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """(f) serve at fixed times through gap A: while KSM is silent and could come back it accrues up to
    the gap and waits; once KSM is back it bridges the gap. Its counters equal allocate's, to the cent."""
    p, d0 = prom
    start, end = d0 + H, d0 + 3 * H
    inside = d0 + A_G0 + 20 * M  # KSM silent for 20 minutes, 5 of them still within the lookback
    exporter = serve_through(p.url, start, end, [inside])
    assert exporter.ledger.watermark == d0 + A_G0 + 300  # the last step that still sees KSM
    for now in (inside + 10 * M, end + H):  # still open, then KSM is back and the gap bridged
        exporter.cycle(now)
        exporter.ledger.tick()
    assert exporter.ledger.watermark == end
    _res, body = allocate(config(tmp_path, p.url), start, 2)
    assert_cents(namespace_totals(exporter), totals(body), 2 * NODES)
    assert exporter.registry.get_sample_value("chargeback_bridged_seconds_total", {"source": "ksm"}) == 1140
    assert exporter.registry.get_sample_value("chargeback_uncovered_seconds_total", {"source": "ksm"}) == 0
    exporter.close()


def test_serve_passes_a_gap_older_than_the_bridge_as_uncovered(prom: tuple[PrometheusServer, int],
                                                               tmp_path: Path) -> None:
    """(f) Gap B seen live: after an hour without KSM, serve stops waiting and reports the time uncovered;
    when KSM returns it goes on. Counters equal allocate over the same 3 h; 6840 s counted uncovered."""
    p, d0 = prom
    start, end = d0 + 4 * H, d0 + 7 * H
    nows = [d0 + B_G0 + 30 * M, d0 + B_G0 + 90 * M, d0 + B_G1 + 10 * M, end + H]
    exporter = serve_through(p.url, start, end, nows[:1])
    assert exporter.ledger.watermark == d0 + B_G0 + 300  # waiting: the gap may still be bridged
    exporter = serve_through(p.url, start, end, nows)
    assert exporter.ledger.watermark == end
    _res, body = allocate(config(tmp_path, p.url), start, 3)
    assert_cents(namespace_totals(exporter), totals(body), NODES * 3960 / H)
    assert exporter.registry.get_sample_value("chargeback_uncovered_seconds_total", {"source": "ksm"}) == 6840
    exporter.close()


def test_allocation_api_carries_coverage(prom: tuple[PrometheusServer, int]) -> None:
    """/allocation/compute keeps OpenCost's shape and adds `coverage` next to `data`."""
    p, d0 = prom
    exporter = Exporter(parse_config({"prometheus": {"url": p.url}}))
    body = exporter.allocation({"window": [window_arg(d0 - 86400, 25)], "includeIdle": ["true"]})
    assert body["code"] == 200 and set(body) == {"code", "data", "coverage"}
    assert body["coverage"]["coveredSeconds"] == 3660 and body["coverage"]["windowSeconds"] == 25 * H
    assert sum(r["totalCost"] for r in body["data"][0].values()) == pytest.approx(NODES * 61 / 60, rel=1e-9)
    exporter.close()


# ---- the probe: cAdvisor's root cgroups, the container series only where those are missing ----------------

def probed_plan(url: str, start: int, **prometheus: str) -> tuple[list[str], list[tuple[int, int, str]]]:
    """The probe queries a chunk's coverage plan sends, and its segments as (start, end, cAdvisor state)."""
    cfg = parse_config({"prometheus": {"url": url, **prometheus}})
    pipeline = Pipeline(cfg, PrometheusClient(cfg.prometheus))
    sent: list[str] = []
    ask = pipeline.client.query_range_raw

    def spy(expr: str, at: float) -> list[Any]:
        sent.append(expr)
        return ask(expr, at)

    pipeline.client.query_range_raw = spy  # type: ignore[method-assign]
    segments = pipeline.coverage_plan(Window(start, start + H, 60))
    return sent, [(s.start, s.end, s.state("cadvisor").state.value) for s in segments]


def probe_cases(d0: int) -> list[tuple[int, list[tuple[int, int, str]]]]:
    """Chunks and their plans. Window D, cAdvisor silent D0+8h20m..D0+8h40m: a rate needs two samples within
    5 minutes, the last pair before the gap ends at 8h20m and is seen through 8h24m, the next at 8h41m: steps
    8h25m..8h40m bridged. (D0+10h, D0+11h] reaches past the data's end, where both sources end (KSM a step
    later, by the lookback): covered."""
    return [(d0 + 8 * H, [(d0 + 8 * H, d0 + 8 * H + 24 * M, "covered"), (d0 + 8 * H + 24 * M, d0 + D_G1, "bridged"),
                          (d0 + D_G1, d0 + 9 * H, "covered")]),
            (d0 + 10 * H, [(d0 + 10 * H, d0 + 11 * H, "covered")])]


def test_the_probe_reads_root_cgroups_not_every_container(prom: tuple[PrometheusServer, int]) -> None:
    """One probe, of the nodes' root cgroups (id="/", a series per node), never the container series, and
    the plans the container series give (below)."""
    p, d0 = prom
    for start, segments in probe_cases(d0):
        sent, got = probed_plan(p.url, start)
        assert len(sent) == 1 and 'id="/"' in sent[0] and 'container!=""' not in sent[0]
        assert got == segments


def test_without_root_cgroups_the_probe_asks_the_containers(prom: tuple[PrometheusServer, int]) -> None:
    """A scrape that drops the root cgroups (here the selector id!="/"): no root cgroup at any step, so the
    container series are probed as they always were, and give the same plans."""
    p, d0 = prom
    for start, segments in probe_cases(d0):
        sent, got = probed_plan(p.url, start, cadvisorSelector='id!="/"')
        assert len(sent) == 2 and 'container!=""' in sent[1] and "ksm" not in sent[1]
        assert got == segments
