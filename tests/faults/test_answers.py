"""Every way a Prometheus answer can go wrong, injected by a proxy in front of a real Prometheus.

Each case ends in one of two ways: the exact hand-worked hour of the core scenario (after retries),
or one line `chargeback: error: ...` naming the cause with rc 2. Never a traceback, never a zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from demo.localprom import PrometheusServer
from exporter.config.schema import Prometheus
from exporter.sources.prometheus import PrometheusClient
from exporter.vocab.errors import PrometheusError

from ..test_allocate_core import EXPECTED, NODES_TOTAL, REL, window_arg
from .helpers import allocate, assert_costs, costs, one_line_error, write_config
from .proxy import Fault, FaultProxy

# The core scenario's hour, per namespace, as worked out by hand in test_allocate_core.
HOUR = {ns: sum(exp.values()) for ns, exp in EXPECTED.items()}


@pytest.fixture()
def proxy(core_prom: PrometheusServer) -> Iterator[tuple[FaultProxy, str]]:
    p = FaultProxy(core_prom.url)
    with p.running() as url:
        yield p, url


@pytest.mark.parametrize(("fault", "needles"), [
    (Fault("http500"), ("HTTP 500",)),
    (Fault("http503"), ("HTTP 503",)),
    (Fault("html502"), ("HTTP 502 with a non-JSON body (text/html",)),
    (Fault("html200"), ("HTTP 200 with a non-JSON body (text/html",)),
    (Fault("truncated"), ("HTTP 200 with a non-JSON body", "the JSON stops mid-way, truncated")),
    (Fault("dropped"), ("dropped the connection mid-answer: IncompleteRead",)),
    (Fault("no_data"), ("answered 'success' with no 'data'",)),
    (Fault("list"), ("with a JSON array where an object was expected",)),
    (Fault("random", seed=3), ("non-JSON body",)),
    (Fault("gzip_garbage"), ("non-JSON body",)),
], ids=lambda v: v.mode if isinstance(v, Fault) else "")
def test_persistent_fault_is_one_line_error(proxy: tuple[FaultProxy, str], tmp_path: Path, core_t0: int,
                                            fault: Fault, needles: tuple[str, ...]) -> None:
    p, url = proxy
    p.add(fault)
    line = one_line_error(allocate(write_config(tmp_path, url, retries=1), window_arg(core_t0)), *needles)
    assert f"Prometheus at {url}" in line
    assert p.faulted() == 2  # tried, retried once (prometheus.retries), then given up on


@pytest.mark.parametrize("fault", [
    Fault("http500", times=1), Fault("http503", times=2), Fault("html502", times=1), Fault("truncated", times=1),
    Fault("dropped", times=1), Fault("no_data", times=1), Fault("list", times=1), Fault("random", times=1),
    # A fault on one chunk query in the middle of the run, not only on the first query.
    Fault("dropped", times=2, match="container_cpu_usage_seconds_total"),
], ids=lambda f: f"{f.mode}-x{f.times}" + ("-mid" if f.match else ""))
def test_transient_fault_gives_the_exact_hour(proxy: tuple[FaultProxy, str], tmp_path: Path, core_t0: int,
                                              fault: Fault) -> None:
    p, url = proxy
    times = fault.times
    p.add(fault)
    got = costs(allocate(write_config(tmp_path, url, retries=times), window_arg(core_t0)))
    assert p.faulted() == times  # the faults did happen, and were retried past
    assert_costs(got, HOUR, NODES_TOTAL, REL)


def test_slow_answer_is_a_timeout(proxy: tuple[FaultProxy, str], tmp_path: Path, core_t0: int) -> None:
    """Past the client's timeout (prometheus.timeout + 5 s of transport slack): an error that says so,
    counted as `timeout`, not `unreachable`; a timed-out query is not retried (it would time out again)."""
    p, url = proxy
    p.add(Fault("slow", delay=7))
    with ThreadPoolExecutor(1) as pool:  # the CLI and the client in this process wait out their timeouts together
        cli = pool.submit(allocate, write_config(tmp_path, url, timeout="1s", retries=2), window_arg(core_t0))
        client = PrometheusClient(Prometheus(url=url, timeout="1s", retries=2))
        with pytest.raises(PrometheusError, match="timed out after 6s"):
            client.query("up", float(core_t0))
        one_line_error(cli.result(), f"Prometheus at {url} timed out after 6s")
    assert client.stats.errors_by_reason == {"timeout": 1}
    assert p.faulted() == 2  # one query each: neither was sent again


def test_fuzzed_bodies_never_escape_as_anything_but_one_line(proxy: tuple[FaultProxy, str], core_t0: int) -> None:
    """Random bytes and every cut of a real answer: a PrometheusError of one line, counted `bad_response`."""
    p, url = proxy
    client = PrometheusClient(Prometheus(url=url, retries=0))
    for seed in range(40):
        p.clear()
        p.add(Fault("random", times=1, seed=seed))
        with pytest.raises(PrometheusError) as err:
            client.query("up", 0.0)
        assert "\n" not in str(err.value)
    for tenth in range(1, 10):  # a real answer (all pods' info) cut at 10%, 20%, ... 90% of its length
        p.clear()
        p.add(Fault("truncated", times=1, cut=tenth / 10))
        with pytest.raises(PrometheusError) as err:
            client.query("kube_pod_info", float(core_t0))
        assert "\n" not in str(err.value)
    assert client.stats.errors_by_reason == {"bad_response": 49}
