"""Retrying a step the broker refused or could not serve, with backoff, while the process stays alive.

``Retrier.until_done`` runs a start-up step (the input topic is there, the internal topics exist and match,
the transactional id is granted) until it succeeds or the process is told to stop: a refusal is reported by
the access policy (``operations/access.py``), any other broker error is warned about, and ``waiting`` names
what is awaited for ``/ready``; between attempts it waits a ``Backoff``, telling the liveness check that the
process is not stuck. An error without a broker answer (a ``ConsumerError`` whose ``error`` is None: a
setting that can never work, e.g. a changelog whose partitions do not match its topic's) is raised: the
entry point exits 2 with its message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from login_common.access import Backoff
from login_consumer.errors import ConsumerError
from login_consumer.operations.access import AccessFailures


def broker_answer(exc: Exception) -> KafkaError | None:
    """The broker's answer an exception carries, if any."""
    if isinstance(exc, ConsumerError):
        return exc.error
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


class Retrier:
    def __init__(
        self,
        access: AccessFailures,
        warn: Callable[..., None],
        alive: Callable[[], None],
        before: Callable[[], None] = lambda: None,
    ) -> None:
        """``before``: run before each attempt (e.g. reload a password the broker refused)."""
        self.access = access
        self._before = before
        self._warn = warn
        self._alive = alive
        self.waiting: str | None = None  # what start-up waits for (for /ready)

    def pause(self, stop: threading.Event, seconds: float, serve: Callable[[], Any] = lambda: None) -> None:
        """Wait ``seconds`` (or until stopped), telling the liveness check the process is not stuck."""
        end = time.monotonic() + seconds
        while not stop.is_set() and (left := end - time.monotonic()) > 0:
            serve()
            self._alive()
            stop.wait(min(1.0, left))

    def until_done(
        self, stop: threading.Event, what: str, step: Callable[[], None], *, within: float | None = None
    ) -> bool:
        """Run ``step`` until it succeeds (True) or ``stop`` is set (False); see the module doc. ``within``:
        give up (False) once that many seconds have passed, an attempt never cut short (the loop calls it
        so between two reads: ``delivery/producer.py``)."""
        backoff = Backoff()
        end = None if within is None else time.monotonic() + within
        while not stop.is_set():
            try:
                self._before()
                step()
            except (KafkaException, ConsumerError) as exc:
                err = broker_answer(exc)
                if err is None and isinstance(exc, ConsumerError):
                    raise  # a setting that can never work
                self.waiting = f"{what}: {str(exc)[:240]}"
                if not self.access.check(err, what, str(exc)[:160]):
                    self._warn(f"{what}.retrying", error=str(exc)[:300])
                if end is not None and time.monotonic() >= end:
                    return False
                pause = backoff.next()
                if end is not None and pause >= end - time.monotonic():
                    return False  # the next attempt would start after the time is up
                self.pause(stop, pause)
                continue
            if self.waiting is not None:
                self.access.clear()
            self.waiting = None
            return True
        return False
