"""Leader election on a coordination.k8s.io/v1 Lease, so two replicas never both accrue.

The holder renews every `retry` seconds; it steps down (and drops its ledger) once it has
failed to renew for `renew_deadline`, which is shorter than the lease, so a new leader can
only take over after the old one has stopped publishing. Every acquisition starts a new
term (`term`, monotonic): the ledger is emptied, work computed under an older term is
dropped, and the new leader reads the watermark back from Prometheus like any restart.
Nothing is counted twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from enum import Enum

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


class Held(Enum):
    """How one attempt ended when we hold the lease afterwards."""

    ACQUIRED = "acquired"  # created, or taken over from another (or expired) holder: a new term
    RENEWED = "renewed"


class LeaseElector:
    def __init__(self, api: k8s.ApiClient, namespace: str, name: str, identity: str, lease_seconds: int = 30,
                 on_lost: Callable[[], None] | None = None, clock: Callable[[], float] = time.time,
                 on_acquired: Callable[[int], None] | None = None) -> None:
        self.api = k8s.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = lease_seconds * 2 / 3
        self.retry = max(lease_seconds / 6, 0.2)
        self.on_lost = on_lost
        self.on_acquired = on_acquired
        self.term = 0  # incremented on every acquisition
        self.clock = clock
        self.leader = threading.Event()
        self.stop = threading.Event()
        self.last_renew = 0.0

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=timezone.utc)

    def holds(self, term: int) -> bool:
        """True while `term` is current and renewed within the deadline (checked before publishing work)."""
        return self.leader.is_set() and self.term == term and self.clock() - self.last_renew < self.renew_deadline

    def try_acquire_or_renew(self) -> Held | None:
        """One attempt; None if another replica holds the lease."""
        now = self._now()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            body = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name=self.name, namespace=self.namespace),
                               spec=k8s.V1LeaseSpec(holder_identity=self.identity, acquire_time=now, renew_time=now,
                                                    lease_duration_seconds=self.lease_seconds, lease_transitions=0))
            self.api.create_namespaced_lease(self.namespace, body)
            return Held.ACQUIRED
        spec = lease.spec or k8s.V1LeaseSpec()
        holder, renewed = spec.holder_identity, spec.renew_time
        duration = spec.lease_duration_seconds or self.lease_seconds
        expired = renewed is None or renewed.timestamp() + duration < now.timestamp()
        if holder not in (None, "", self.identity) and not expired:
            return None
        taken = holder != self.identity
        if taken:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity, spec.renew_time, spec.lease_duration_seconds = self.identity, now, self.lease_seconds
        lease.spec = spec
        # resourceVersion in metadata makes this a compare-and-swap: a concurrent winner gets us a 409.
        self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        return Held.ACQUIRED if taken else Held.RENEWED

    def step(self) -> None:
        fresh = False
        try:
            outcome = self.try_acquire_or_renew()
        except Exception as e:  # API down or a 409 from a race: keep the lease only until the deadline
            log.warning("leader election: %s", str(e).splitlines()[0][:200])
            held = self.leader.is_set() and self.clock() - self.last_renew < self.renew_deadline
        else:
            held = outcome is not None
            # Taken over while we thought we held it: someone else led in between (we were frozen).
            fresh = outcome is Held.ACQUIRED
            if held:
                self.last_renew = self.clock()
        if held and (fresh or not self.leader.is_set()):
            self.term += 1
            log.info("leader election: %s now holds lease %s/%s (term %d)", self.identity, self.namespace,
                     self.name, self.term)
            if self.on_acquired:
                self.on_acquired(self.term)  # before leading: the ledger is empty and reads back
            self.leader.set()
        elif not held and self.leader.is_set():
            log.warning("leader election: %s lost lease %s/%s; standing by", self.identity, self.namespace, self.name)
            self.leader.clear()
            if self.on_lost:
                self.on_lost()

    def run(self) -> None:
        while not self.stop.is_set():
            self.step()
            self.stop.wait(self.retry)

    def start(self) -> LeaseElector:
        threading.Thread(target=self.run, name="leader-election", daemon=True).start()
        return self
