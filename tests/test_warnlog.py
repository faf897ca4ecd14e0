"""The bounded warning log (counted per kind, logged once per kind an hour) and the ledger's finiteness guard."""

from __future__ import annotations

import logging
import threading

import pytest

from exporter.engine.warnlog import WarningLog
from exporter.serve.accrual import Batch, ClusterKey, Ledger, NamespaceKey
from exporter.vocab.errors import ChargebackError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_kind_is_logged_once_an_hour_with_the_count_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    w = WarningLog(every=3600, clock=clock)
    with caplog.at_level(logging.WARNING):
        for i in range(5):  # a message unique per window, as serve's are
            w.warn("no_usage", f"no usage for window {i}")
            clock.now += 60
        w.warn("default_priced", "n1 priced at default rates")
        clock.now = 1000.0 + 3600  # an hour after the first no_usage line
        w.warn("no_usage", "no usage for window 60")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["no usage for window 0", "n1 priced at default rates",
                     "no usage for window 60 (4 more warning(s) of this kind since it was last logged)"]
    assert w.counts() == {"no_usage": 6, "default_priced": 1}
    assert w.messages() == ["no usage for window 60", "n1 priced at default rates"]


def test_memory_is_bounded_whatever_the_number_of_messages() -> None:
    w = WarningLog(every=3600, clock=Clock())
    for i in range(100_000):
        w.warn("non_finite", f"NaN at window {i}")
    assert w.counts() == {"non_finite": 100_000}
    assert len(w.kinds) == 1 and w.messages() == ["NaN at window 99999"]


def test_one_shot_mode_prints_each_distinct_message_once(caplog: pytest.LogCaptureFixture) -> None:
    w = WarningLog()  # allocate: short-lived, every distinct message matters
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            w.warn("unmatched_rule", "pricing.rules.0 matches no node")
            w.warn("unmatched_rule", "pricing.rules.1 matches no node")
    assert [r.getMessage() for r in caplog.records] == ["pricing.rules.0 matches no node",
                                                        "pricing.rules.1 matches no node"]
    assert w.counts() == {"unmatched_rule": 6}
    assert "pricing.rules.1 matches no node" in w


def test_counts_are_exact_under_threads() -> None:
    w = WarningLog(every=3600, clock=Clock())

    def hammer() -> None:
        for _ in range(10_000):
            w.warn("k", "m")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert w.counts() == {"k": 40_000}


def test_ledger_refuses_a_batch_with_a_non_finite_amount() -> None:
    ledger = Ledger(watermark=0)
    key = NamespaceKey("team-a", "node", "cpu", "")
    with pytest.raises(ChargebackError, match=r"refusing to accrue nan for namespace/team-a/node/cpu"):
        ledger.offer(Batch(0, 60, {key: float("nan"), ClusterKey("cpu"): 1.0}))
    with pytest.raises(ChargebackError, match="refusing to accrue inf"):
        ledger.offer(Batch(0, 60, {key: float("inf")}))
    assert not ledger.pending and ledger.counters == {} and ledger.frontier == 0  # nothing of it was kept
    ledger.offer(Batch(0, 60, {key: 0.5}))  # the interval is retried
    assert ledger.frontier == 60


def test_non_finite_period_sums_read_back_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    ledger = Ledger()
    good, bad = ("daily", "0", "team-a"), ("daily", "0", "team-b")
    with caplog.at_level(logging.WARNING):
        assert ledger.begin(0, 0, {"daily": 0}, {good: 1.25, bad: float("nan")})
    assert ledger.periods == {good: 1.25}
    assert "ignoring non-finite period-to-date cost nan read back for daily/0/team-b" in caplog.text
