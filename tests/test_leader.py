"""Leader election on a Lease against the fake API server: one holder, takeover after expiry, no double count."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.config.schema import parse_config
from exporter.serve.accrual import NamespaceKey
from exporter.serve.leader import LeaseElector
from exporter.serve.server import Exporter
from exporter.sources.kube import load_api_client

from .fake_kube import FakeKube
from .test_allocate_core import REL, window_arg
from .test_sharing import NODES


@pytest.fixture()
def kube(tmp_path: Path) -> Iterator[FakeKube]:
    fake = FakeKube().start()
    yield fake
    fake.stop()
    assert not fake.unexpected, fake.unexpected


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def elector(kube: FakeKube, tmp_path: Path, identity: str, clock: Clock, lost: list[str]) -> LeaseElector:
    api = load_api_client(str(kube.kubeconfig(tmp_path / "kubeconfig")))
    return LeaseElector(api, "monitoring", "chargeback", identity, lease_seconds=30, clock=clock,
                        on_lost=lambda: lost.append(identity))


def test_one_holder_and_takeover_after_expiry(kube: FakeKube, tmp_path: Path) -> None:
    clock, lost = Clock(), list[str]()
    a, b = elector(kube, tmp_path, "pod-a", clock, lost), elector(kube, tmp_path, "pod-b", clock, lost)
    a.step()
    b.step()
    assert a.leader.is_set() and not b.leader.is_set()
    lease = kube.leases[("monitoring", "chargeback")]
    assert lease["spec"]["holderIdentity"] == "pod-a" and lease["spec"]["leaseDurationSeconds"] == 30
    clock.t += 20  # a renews in time; b still cannot take it
    a.step()
    b.step()
    assert a.leader.is_set() and not b.leader.is_set()
    clock.t += 31  # a stops renewing (crashed); the lease expires and b takes over
    b.step()
    assert b.leader.is_set()
    lease = kube.leases[("monitoring", "chargeback")]
    assert lease["spec"]["holderIdentity"] == "pod-b" and lease["spec"]["leaseTransitions"] == 1
    a.step()  # a comes back: it sees b's fresh lease, steps down and drops its state
    assert not a.leader.is_set() and lost == ["pod-a"]


def test_leader_steps_down_when_it_cannot_renew(kube: FakeKube, tmp_path: Path) -> None:
    clock, lost = Clock(), list[str]()
    a = elector(kube, tmp_path, "pod-a", clock, lost)
    a.step()
    kube.server.shutdown()
    kube.server.server_close()  # the API server goes away
    clock.t += 5
    a.step()  # renewal fails; still within the renew deadline (20 s of a 30 s lease): keep leading
    assert a.leader.is_set()
    clock.t += 25
    a.step()  # past the deadline without a successful renew: step down before anyone can take over
    assert not a.leader.is_set() and lost == ["pod-a"]


def test_only_the_leader_accrues(kube: FakeKube, share_prom: Any, tmp_path: Path) -> None:
    prom, t0 = share_prom
    kubeconfig = str(kube.kubeconfig(tmp_path / "kubeconfig"))
    start, until = window_arg(t0).split(",")
    replicas = []
    for pod in ("pod-a", "pod-b"):
        raw = {"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"},
               "serve": {"start": start, "exposeNewSeriesFor": "0s",
                         "leaderElection": {"enabled": True, "kubeconfig": kubeconfig}}}
        ex = Exporter(parse_config(raw), until=until)
        assert ex.elector is not None
        ex.elector.identity = pod
        replicas.append(ex)
    a, b = replicas
    a.elector.step()  # type: ignore[union-attr]
    b.elector.step()  # type: ignore[union-attr]
    for ex in replicas:
        ex.run_once()
    assert a.registry.get_sample_value("chargeback_leader") == 1
    assert b.registry.get_sample_value("chargeback_leader") == 0 and b.registry.get_sample_value("chargeback_up") == 1
    total_a = sum(v for k, v in a.ledger.counters.items() if isinstance(k, NamespaceKey))
    assert total_a == pytest.approx(NODES, rel=REL)  # the leader accrued the hour
    assert not b.ledger.counters and b.ledger.watermark is None  # the standby accrued nothing
