"""The ledger's rules, on plain data: consistent snapshots and zero-first exposure of new series."""

from __future__ import annotations

import pytest

from exporter.accrual import Batch, Ledger

A = ("namespace", "team-a", "allocated", "cpu")
B = ("namespace", "team-b", "allocated", "cpu")


def test_new_series_is_exposed_at_zero_before_its_first_cost() -> None:
    led = Ledger(watermark=0)
    led.offer(Batch(0, 60, {A: 1.5}))
    assert led.counters == {A: 0.0} and led.watermark == 0  # held: A has never been scraped
    snap = led.scraped()
    assert snap.counters == {A: 0.0} and snap.watermark == 0  # this scrape publishes 0 with the old watermark ...
    assert led.counters == {A: 1.5} and led.watermark == 60  # ... and releases the batch
    led.offer(Batch(60, 120, {A: 0.5}))  # known series apply at once
    assert led.counters == {A: 2.0} and led.watermark == 120
    assert led.hourly == {A: pytest.approx(0.5 * 60)}


def test_batches_apply_in_order_and_atomically() -> None:
    led = Ledger(watermark=0)
    led.offer(Batch(0, 60, {A: 1.0}))
    led.offer(Batch(60, 120, {A: 1.0, B: 2.0}))
    assert led.frontier == 120 and led.watermark == 0
    led.scraped()  # exposes A; batch 1 applies; batch 2 still waits for B
    assert led.counters == {A: 1.0, B: 0.0} and led.watermark == 60
    led.scraped()
    assert led.counters == {A: 2.0, B: 2.0} and led.watermark == 120


def test_gap_or_overlap_is_refused() -> None:
    led = Ledger(watermark=0)
    with pytest.raises(ValueError, match="expected 0"):
        led.offer(Batch(60, 120, {A: 1.0}))


def test_without_scrapes_the_queue_is_bounded() -> None:
    led = Ledger(watermark=0, max_pending=2)
    for i in range(4):
        led.offer(Batch(i * 60, (i + 1) * 60, {A: 1.0}))
    assert led.watermark == 60 * 2 and led.counters[A] == 2.0  # forced once more than 2 waited


def test_period_sums_reset_at_calendar_boundaries() -> None:
    from exporter.window import period_bounds

    day0, _ = period_bounds("daily", 1795651200)  # 2026-11-26T00:00:00Z, a Thursday
    key = ("namespace", "team-a", "allocated", "cpu", "", "payments")
    led = Ledger(watermark=day0 - 60, exposed={key})
    led.offer(Batch(day0 - 60, day0, {key: 1.0}))  # last minute of Wednesday
    led.scraped()  # the watermark rests at midnight until scraped
    led.offer(Batch(day0, day0 + 60, {key: 2.0}))  # first minute of Thursday
    assert led.periods[("daily", str(day0), "team-a", "payments")] == 2.0
    assert ("daily", str(day0 - 86400), "team-a", "payments") not in led.periods  # yesterday's day is gone
    week = period_bounds("weekly", day0)[0]
    assert led.periods[("weekly", str(week), "team-a", "payments")] == 3.0  # same ISO week (Mon 23rd)
    assert led.period_starts["monthly"] == period_bounds("monthly", day0)[0]


def test_midnight_watermark_waits_for_a_scrape() -> None:
    day = 1795651200  # 2026-11-26T00:00:00Z
    led = Ledger(watermark=day - 60, exposed={A})
    led.offer(Batch(day - 60, day, {A: 1.0}))
    led.offer(Batch(day, day + 60, {A: 1.0}))
    assert led.watermark == day and led.counters[A] == 1.0  # held at midnight until scraped
    led.scraped()
    assert led.watermark == day + 60 and led.counters[A] == 2.0


def test_a_scrape_sees_counters_and_watermark_from_the_same_moment() -> None:
    """Releasing held batches happens after the snapshot: a crash right after it loses nothing."""
    led = Ledger(watermark=0)
    for i in range(3):
        led.offer(Batch(i * 60, (i + 1) * 60, {A: 1.0}))
    snap = led.scraped()
    assert (snap.counters, snap.watermark) == ({A: 0.0}, 0)
    assert (led.counters, led.watermark) == ({A: 3.0}, 180)
    snap = led.scraped()
    assert (snap.counters, snap.watermark) == ({A: 3.0}, 180)
