"""The one-pass raw path (exporter/sources/allocsteps.py, read by exporter/sources/stepfetch.py): the client-side
overflow scale and integration as production runs them (`Pending`, `StepFetcher`), worked by hand, and the
per-container NaN check that now runs only when an answer held a non-finite value."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest

from demo.localprom import PrometheusServer, find_binary
from demo.synthetic import write_openmetrics
from exporter.config.schema import parse_config
from exporter.sources.allocsteps import SAMPLE_BUDGET, RowKey, Series, StepTotals, parse
from exporter.sources.prometheus import Labels
from exporter.sources.queries import Queries
from exporter.sources.stepfetch import Pending, StepFetcher, SubWindows

from .conftest import aligned_past
from .scenarios import WINDOW_SECONDS, core_cluster
from .test_allocate_core import EXPECTED, NODES_TOTAL, REL, window_arg
from .test_non_finite import allocate, write_config

Samples = list[tuple[float, float]]


def row(part: str, ns: str, res: str, samples: Samples, node: str = "n1") -> tuple[dict[str, str], Samples]:
    return {"part": part, "namespace": ns, "node": node, "resource": res}, samples


def integrated(answers: list[list[Series]], policy: str, weight: float = 0.7) -> StepTotals:
    """One sub-window of steps 1, 2, 3 (step 1) through `stepfetch.Pending`, its rows arriving in `answers` as
    namespace shards deliver them."""
    out = StepTotals()
    pending = Pending(first=1, step=1, steps=3)
    for series in answers:
        pending.add(parse(series), policy, weight, out)
    pending.finish(out)
    return out


OVERFLOW = [
    # n1 has 4 cores at steps 1-2 and no capacity sample at step 3.
    ({"part": "capacity", "node": "n1", "resource": "cpu"}, [(1.0, 4.0), (2.0, 4.0)]),
    row("allocated", "a", "cpu", [(1.0, 3.0), (2.0, 1.0), (3.0, 1.0)]),
    row("allocated", "b", "cpu", [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]),
    row("request", "a", "cpu", [(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)]),
    row("usage", "b", "cpu", [(1.0, 3.0), (2.0, 2.0)]),
]


@pytest.mark.parametrize("answers", [[OVERFLOW], [OVERFLOW[1:2], [OVERFLOW[0], *OVERFLOW[2:]]]],
                         ids=["one answer", "namespace a in a shard before the rest"])
def test_an_overflowing_node_is_scaled_per_step_from_the_same_rows(answers: list[list[Series]]) -> None:
    """In shards, the scale waits for the node's total over every shard: namespace a alone (3 cores at step 1)
    fits the 4 cores, and only with b's 3 does the node overflow."""
    out = integrated(answers, "max")
    # Step 1: 3 + 3 = 6 > 4 cores, each scaled by 4/6 to 2. Step 2: 1 + 2 = 3 <= 4, unscaled.
    # Step 3: no capacity, not counted.
    assert out.allocated == {RowKey("a", "n1", None, "cpu"): pytest.approx(2 + 1, rel=REL),
                             RowKey("b", "n1", None, "cpu"): pytest.approx(2 + 2, rel=REL)}
    assert out.requested == {RowKey("a", "n1", None, "cpu"): 3.0}  # every step of the row
    assert out.used == {RowKey("b", "n1", None, "cpu"): 5.0}
    assert out.scales == {("n1", "cpu"): {1.0: pytest.approx(4 / 6, rel=REL), 2.0: 1.0}}  # kept for pod rows


def test_linear_policies_derive_the_allocation_from_request_and_usage_rows() -> None:
    series = [
        ({"part": "capacity", "node": "n1", "resource": "cpu"}, [(1.0, 8.0), (2.0, 8.0)]),
        ({"part": "capacity", "node": "n1", "resource": "nvidia_com_gpu"}, [(1.0, 4.0), (2.0, 4.0)]),
        row("request", "a", "cpu", [(1.0, 1.0), (2.0, 1.0)]),
        row("usage", "a", "cpu", [(1.0, 0.5)]),  # no usage sample at step 2 (a BestEffort gap)
        row("request", "a", "nvidia_com_gpu", [(1.0, 1.0), (2.0, 1.0)]),
    ]
    for policy, cpu in (("request", 2.0), ("usage", 0.5), ("weighted", (0.7 * 1 + 0.3 * 0.5) + 0.7 * 1)):
        out = integrated([series], policy)
        assert out.allocated[RowKey("a", "n1", None, "cpu")] == pytest.approx(cpu, rel=REL), policy
        assert out.allocated[RowKey("a", "n1", None, "gpu")] == pytest.approx(2.0, rel=REL)  # GPUs: requests


class StepAnswers:
    """Prometheus for `StepFetcher`: the one-pass query of each part (told apart by the namespace matcher its
    selectors carry) answers its rows at every step of [at - span, at] (the start point too, as a subquery
    does), the CPU group only; no kube-prometheus records."""

    def __init__(self, rows: dict[str, list[Series]]) -> None:
        self.rows = rows
        self.asked: list[tuple[str, float, int]] = []

    def query(self, expr: str, at: float) -> list[tuple[Labels, float]]:
        """One step is asked as an instant query (`read_steps`): the rows' values at `at`."""
        return [(labels, v) for labels, samples in self._ask(expr, at, 60) for t, v in samples if t == at]

    def query_range_raw(self, expr: str, at: float) -> list[Series]:
        return self._ask(expr, at, int(re.findall(r"\[(\d+)s:", expr)[-1]))

    def _ask(self, expr: str, at: float, span: int) -> list[Series]:
        part = next(m for m in self.rows if m in expr) if 'resource=~"cpu"' in expr else ""
        self.asked.append((part, at, span))
        return [(labels, [(t, v) for t, v in samples if at - span <= t <= at])
                for labels, samples in self.rows.get(part, [])]


def test_the_fetcher_reads_shards_and_sub_windows_and_integrates_them_whole() -> None:
    """The rows of OVERFLOW at steps 660, 720, 780 (and one more at 600, before the chunk), read as production
    reads them: shards of one pod (a, then b, then the rest with node capacity), in two sub-windows (the first
    one step, as a big last answer sized it; then the rest of the chunk, as this small answer sizes it)."""
    def at(*values: float) -> list[tuple[float, float]]:
        return list(zip((600.0, 660.0, 720.0, 780.0), values, strict=False))

    answers = StepAnswers({
        'namespace=~"a"': [row("allocated", "a", "cpu", at(9, 3, 1, 1)), row("request", "a", "cpu", at(9, 1, 1, 1))],
        'namespace=~"b"': [row("allocated", "b", "cpu", at(9, 3, 2, 1)), row("usage", "b", "cpu", at(9, 3, 2))],
        'namespace!~"a|b"': [({"part": "capacity", "node": "n1", "resource": "cpu"}, at(4, 4, 4))],
    })
    cfg = parse_config({"prometheus": {"url": "http://127.0.0.1:9"}, "allocation": {"policy": "max"}})
    q = Queries(cfg.prometheus, cfg.allocation)
    assert q.step == 60
    fetcher = StepFetcher(answers, "max", 0.7, shard_pods=1)  # type: ignore[arg-type]
    fetcher.series_seen = SAMPLE_BUDGET  # the last chunk's answer: one step a query
    out = fetcher.totals(q, 600, 780, [], {"a": 1, "b": 1})
    cpu_asks = [a for a in answers.asked if a[0]]
    assert cpu_asks == [('namespace=~"a"', 660, 60), ('namespace=~"b"', 660, 60), ('namespace!~"a|b"', 660, 60),
                        ('namespace=~"a"', 780, 120), ('namespace=~"b"', 780, 120), ('namespace!~"a|b"', 780, 120)]
    # As OVERFLOW (steps 1, 2, 3 are 660, 720, 780): the point at 600 belongs to the previous chunk.
    assert out.allocated == {RowKey("a", "n1", None, "cpu"): pytest.approx(2 + 1, rel=REL),
                             RowKey("b", "n1", None, "cpu"): pytest.approx(2 + 2, rel=REL)}
    assert out.requested == {RowKey("a", "n1", None, "cpu"): 3.0}
    assert out.used == {RowKey("b", "n1", None, "cpu"): 5.0}
    assert out.scales == {("n1", "cpu"): {660.0: pytest.approx(4 / 6, rel=REL), 720.0: 1.0}}


def test_a_nan_request_sample_is_named_and_costs_only_its_pod(tmp_path: Path) -> None:
    """A real NaN request in the TSDB (team-b's batch CPU request at minute 10): its pod's row is left out
    of that step, a warning names the series, and every other namespace keeps its hand-worked amount."""
    t0 = aligned_past()
    history = io.StringIO()
    write_openmetrics(core_cluster(t0), t0 - 1800, t0 + WINDOW_SECONDS + 600, 60, history)
    text, n = re.subn(rf'^(kube_pod_container_resource_requests{{[^}}]*namespace="team-b",pod="batch"[^}}]*'
                      rf'resource="cpu"[^}}]*}}) [^ ]+ {t0 + 600}$', rf"\1 NaN {t0 + 600}", history.getvalue(),
                      flags=re.M)
    assert n == 1
    om, data_dir = tmp_path / "nan.om", tmp_path / "data"
    om.write_text(text)
    subprocess.run([find_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(om), str(data_dir)],
                   check=True, capture_output=True)
    with PrometheusServer(data_dir) as prom:
        data, stderr = allocate(write_config(tmp_path, prom.url), window_arg(t0))
    assert ('kube_pod_container_resource_requests{container="job", namespace="team-b", pod="batch", resource="cpu"}'
            " was NaN or Inf at 1 step(s)") in stderr, stderr
    for ns in ("team-a", "team-c", "team-d", "kube-system"):
        assert data[ns]["totalCost"] == pytest.approx(sum(EXPECTED[ns].values()), rel=REL), ns
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL, rel=REL)  # conservation


def test_a_query_caught_by_a_closing_prometheus_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prometheus shutting down answers an in-flight query HTTP 422 "block is closing" (seen in
    tests/faults/test_restart.py with the longer one-pass queries): a restart's fault, so retried."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from demo.localprom import free_port
    from exporter.config.schema import parse_config
    from exporter.sources import prometheus as promclient

    answers = [(422, {"status": "error", "errorType": "execution",
                      "error": "open querier for block 01M8: open index reader: block is closing"}),
               (200, {"status": "success", "data": {"resultType": "vector",
                                                    "result": [{"metric": {"node": "n1"}, "value": [1, "4"]}]}})]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            code, body = answers.pop(0)
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(promclient, "RETRY_BACKOFF_SECONDS", 0.01)
    try:
        cfg = parse_config({"prometheus": {"url": f"http://127.0.0.1:{port}", "retries": 1}})
        assert promclient.PrometheusClient(cfg.prometheus).query("up", 1.0) == [({"node": "n1"}, 4.0)]
        assert answers == []
    finally:
        server.shutdown()
        server.server_close()


def test_big_clusters_are_read_in_namespace_shards_and_nothing_falls_between() -> None:
    """Shards of at most 4 pods in name order (a: 3, then b: 2 would pass 4), the split namespace per pod,
    and a last part over every namespace no other part names, which alone carries node capacity."""
    from exporter.config.schema import parse_config
    from exporter.sources.allocsteps import BY_NAMESPACE, BY_POD
    from exporter.sources.queries import Queries
    from exporter.sources.stepfetch import chunk_parts

    cfg = parse_config({"prometheus": {"url": "http://127.0.0.1:9"}})
    q = Queries(cfg.prometheus, cfg.allocation)
    parts = chunk_parts(q, ["s"], {"a": 3, "b": 2, "s": 1}, 4)
    assert [(p.by, p.scope, p.pods, p.capacity) for p in parts] == [
        (BY_NAMESPACE, 'namespace=~"a"', 3, False), (BY_NAMESPACE, 'namespace=~"b"', 2, False),
        (BY_NAMESPACE, 'namespace!~"a|b|s"', 0, True), (BY_POD, 'namespace=~"s"', 1, False)]
    assert 'namespace=~"a"' in parts[0].q.k and parts[2].q.only == ('namespace!~"a|b|s"',)
    # cAdvisor's series match it by the label the workload's namespace is in, whichever the scrape shape.
    assert 'exported_namespace="",namespace!~"a|b|s"' in parts[2].q.usage("cpu")
    assert 'exported_namespace!="",exported_namespace!~"a|b|s"' in parts[2].q.usage("cpu")
    # a small cluster: one part (and the split one), as before sharding existed
    assert [(p.scope, p.capacity) for p in chunk_parts(q, [], {"a": 3, "b": 2}, 10)] == [("", True)]


def test_sub_windows_are_sized_from_the_last_answer() -> None:
    """Ten steps of 60 s: the first sub-window from the expected count (a quarter of the budget: 4 steps), the
    next from each answer (half the budget: 2 steps; an empty answer counts as 1 series: the rest at once)."""
    windows = SubWindows(0, 600, 60, SAMPLE_BUDGET // 4)
    sizes = []
    for at, span in windows:
        sizes.append((at, span))
        windows.saw(SAMPLE_BUDGET // 2 if len(sizes) == 1 else 0)
    assert sizes == [(240, 240), (360, 120), (600, 240)]
    assert list(SubWindows(0, 120, 60, 0)) == [(60, 60), (120, 60)]  # nothing expected: one step, and no answer
