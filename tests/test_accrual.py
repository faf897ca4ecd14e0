"""The ledger's rules, on plain data with an injected clock: consistent snapshots, new series exposed at 0
for a fixed time (not until a scrape), the midnight hold, leadership terms and reset."""

from __future__ import annotations

import pytest

from exporter.serve.accrual import Batch, Ledger, NamespaceKey

A = NamespaceKey("team-a", "allocated", "cpu", "")
B = NamespaceKey("team-b", "allocated", "cpu", "")
DAY = 1795651200  # 2026-11-26T00:00:00Z


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def ledger(**kw: object) -> tuple[Ledger, Clock]:
    clock = Clock()
    led = Ledger(watermark=kw.pop("watermark", 0), expose_for=120, clock=clock, **kw)  # type: ignore[arg-type]
    return led, clock


def test_new_series_is_exposed_at_zero_for_the_exposure_time() -> None:
    led, clock = ledger()
    assert led.offer(Batch(0, 60, {A: 1.5}))
    assert led.counters == {A: 0.0} and led.watermark == 0  # held: A shows 0 for 120 s
    for _ in range(5):
        snap = led.snapshot()  # scrapes change nothing, however many scrapers there are
        assert snap.counters == {A: 0.0} and snap.watermark == 0
    clock.t += 119
    assert led.tick() == pytest.approx(1.0) and led.watermark == 0  # one second left
    clock.t += 1
    assert led.tick() is None
    assert led.counters == {A: 1.5} and led.watermark == 60
    assert led.offer(Batch(60, 120, {A: 0.5}))  # a known series applies at once
    assert led.counters == {A: 2.0} and led.watermark == 120
    assert led.hourly == {A: pytest.approx(0.5 * 60)}


def test_batches_apply_in_order_and_exposure_times_overlap() -> None:
    led, clock = ledger()
    led.offer(Batch(0, 60, {A: 1.0}))
    clock.t += 60
    led.offer(Batch(60, 120, {A: 1.0, B: 2.0}))  # B is shown at 0 from now, while batch 1 still waits
    assert led.frontier == 120 and led.watermark == 0 and led.counters == {A: 0.0, B: 0.0}
    clock.t += 60
    led.tick()  # A has shown 0 for 120 s: batch 1 applies; batch 2 waits 60 s more for B
    assert led.counters == {A: 1.0, B: 0.0} and led.watermark == 60
    clock.t += 60
    led.tick()
    assert led.counters == {A: 2.0, B: 2.0} and led.watermark == 120


def test_gap_or_overlap_is_refused() -> None:
    led, _ = ledger()
    with pytest.raises(ValueError, match="expected 0"):
        led.offer(Batch(60, 120, {A: 1.0}))


def test_without_a_frontier_nothing_is_accepted() -> None:
    """Only the read-back (`begin`) sets the frontier: an offer on an empty ledger is an error, not a start."""
    led, _ = ledger(watermark=None)
    with pytest.raises(ValueError, match="expected None"):
        led.offer(Batch(0, 60, {A: 1.0}))
    assert led.begin(0, 0) and led.frontier == 0
    assert not led.begin(60, 0)  # a running term is never moved


def test_the_queue_reports_full_for_backpressure() -> None:
    led, _ = ledger(max_pending=2)
    led.offer(Batch(0, 60, {A: 1.0}))
    assert not led.full
    led.offer(Batch(60, 120, {A: 1.0}))
    assert led.full and led.watermark == 0 and led.counters == {A: 0.0}  # nothing forced out


def test_period_sums_reset_at_calendar_boundaries() -> None:
    from exporter.core.window import period_bounds

    day0, _ = period_bounds("daily", DAY)  # a Thursday
    key = NamespaceKey("team-a", "allocated", "cpu", "", ("payments",))
    led, clock = ledger(watermark=day0 - 60, exposed={key: 0.0})
    led.offer(Batch(day0 - 60, day0, {key: 1.0}))  # last minute of Wednesday
    clock.t += 120  # the watermark rests at midnight for the exposure time
    led.offer(Batch(day0, day0 + 60, {key: 2.0}))  # first minute of Thursday
    assert led.periods[("daily", str(day0), "team-a", "payments")] == 2.0
    assert ("daily", str(day0 - 86400), "team-a", "payments") not in led.periods  # yesterday's day is gone
    week = period_bounds("weekly", day0)[0]
    assert led.periods[("weekly", str(week), "team-a", "payments")] == 3.0  # same ISO week (Mon 23rd)
    assert led.period_starts["monthly"] == period_bounds("monthly", day0)[0]


def test_the_watermark_rests_at_midnight_for_the_exposure_time() -> None:
    led, clock = ledger(watermark=DAY - 60, exposed={A: 0.0})
    led.offer(Batch(DAY - 60, DAY, {A: 1.0}))
    led.offer(Batch(DAY, DAY + 60, {A: 1.0}))
    assert led.watermark == DAY and led.counters[A] == 1.0  # the day's last batch applied; the next is held
    led.snapshot()
    led.snapshot()
    assert led.tick() == pytest.approx(120) and led.watermark == DAY  # scrapes do not release it
    clock.t += 120
    led.tick()
    assert led.watermark == DAY + 60 and led.counters[A] == 2.0


def test_a_piece_of_an_ended_term_is_dropped() -> None:
    led, clock = ledger(term=1)
    led.offer(Batch(0, 60, {A: 1.0}, term=1))
    led.reset()  # lost the lease: everything goes, and no term is current
    assert led.term is None and led.frontier is None and not led.counters
    assert not led.offer(Batch(60, 120, {A: 1.0}, term=1))  # still in flight from term 1: dropped
    assert not led.begin(60, 1)  # nor may term 1 set a frontier
    led.reset(2)  # leader again: term 2 starts empty and must read the watermark back
    assert not led.offer(Batch(60, 120, {A: 1.0}, term=1))
    assert led.frontier is None and not led.counters and not led.pending
    assert led.begin(60, 2, {"daily": 0}, {("daily", "0", "team-a"): 5.0})  # the read-back
    assert led.periods == {("daily", "0", "team-a"): 5.0}
    assert led.offer(Batch(60, 120, {A: 1.0}, term=2))
    clock.t += 120
    led.tick()
    assert led.counters == {A: 1.0} and led.watermark == 120  # only term 2's piece counts


def test_reset_forgets_holds_and_exposure() -> None:
    led, clock = ledger(watermark=DAY - 60, exposed={A: 0.0})
    led.offer(Batch(DAY - 60, DAY, {A: 1.0}))
    led.reset(0)
    assert led.hold_until == 0 and not led.exposed and led.tick() is None
    led.begin(DAY, 0)
    led.offer(Batch(DAY, DAY + 60, {A: 1.0}))  # A is new again after a reset: shown at 0 first
    assert led.counters == {A: 0.0}
    clock.t += 120
    led.tick()
    assert led.counters == {A: 1.0}


def test_a_scrape_sees_counters_and_watermark_from_the_same_moment() -> None:
    """Held batches are released by the clock, between snapshots: each snapshot is one consistent state."""
    led, clock = ledger()
    for i in range(3):
        led.offer(Batch(i * 60, (i + 1) * 60, {A: 1.0}))
    snap = led.snapshot()
    assert (snap.counters, snap.watermark) == ({A: 0.0}, 0)
    clock.t += 120
    led.tick()
    snap = led.snapshot()
    assert (snap.counters, snap.watermark) == ({A: 3.0}, 180)
