"""What ``/healthz`` and ``/ready`` answer (docs/consumer.md): one owner for liveness and readiness.

Liveness (``alive``): the loop turns. Every turn, and every wait on Kafka (a flush, a transaction retried,
a start-up step's backoff), calls ``beat``; the process is reported stuck only when nothing has beaten for
``LIVENESS_SECONDS`` while it runs: a consumer waiting on a slow or refusing cluster is alive, not stuck.

Readiness (``ready``), the first reason that applies, in this order:

1. access refused (``operations/access.py``) or a start-up step still awaited (``operations/retry.py``);
2. the Kafka cluster refuses writes (``delivery/cluster.py``: a partition offline or below
   min.insync.replicas, refusals just seen);
3. the state of assigned partitions not restored yet (``stores/manager.py``);
4. not in the group yet.

Ready, it says how many partitions it holds and, when the cluster is degraded but writable (a broker down,
partitions under-replicated), what is degraded: ``/ready`` stays 200 and names it.

The probes read their sources through callables, so that this module depends on none of the parts it
reports on (the intake, the delivery side and the stores are wired in by the conductor, ``app.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

from login_consumer.operations.access import AccessFailures
from login_consumer.operations.retry import Retrier

LIVENESS_SECONDS: Final = 60.0  # /healthz fails when the loop has not turned for this long


class Probes:
    def __init__(
        self,
        access: AccessFailures,
        *,
        cluster: Callable[[], tuple[bool, str]],
        unrestored: Callable[[], int],
        partitions: Callable[[], int],
        reading: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``cluster``: (writes possible, what is wrong) of the Kafka cluster; ``unrestored``: assigned
        partitions whose state is not restored yet; ``partitions``: the partitions held in the group;
        ``reading``: partitions whose read was refused have read nothing since (``intake/refusals.py``).
        ``retrier`` is set by the conductor once built (it beats while it waits)."""
        self._access = access
        self._cluster = cluster
        self._unrestored = unrestored
        self._partitions = partitions
        self._reading = reading
        self._clock = clock
        self.retrier: Retrier | None = None
        self.running = False
        self.assigned = threading.Event()
        self.alive_at = clock()

    def beat(self) -> None:
        """The loop turned, or waits on Kafka: not stuck."""
        self.alive_at = self._clock()

    def alive(self) -> tuple[bool, str]:
        """False when the loop has not turned for LIVENESS_SECONDS (stuck), else True."""
        idle = self._clock() - self.alive_at
        if self.running and idle > LIVENESS_SECONDS:
            return False, f"processing loop stalled for {idle:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        refused = self._access.blocked(reading=self._reading()) or (
            self.retrier.waiting if self.retrier is not None else None
        )
        if refused:
            return False, refused
        writable, kafka = self._cluster()
        if not writable:
            return False, kafka
        unrestored = self._unrestored()
        if unrestored:
            return False, f"state of {unrestored} partition(s) not restored yet"
        if self.running and self.assigned.is_set():
            in_group = f"in group, {self._partitions()} partition(s)"
            return True, in_group + (f"; {kafka}" if kafka else "")
        return False, "not in the group yet"
