"""The consumer's side of the access-failure policy (``login_common.access``): report, hold, retry, recover.

The broker refuses a client for its credentials (authentication), for a missing ACL (authorization: a topic,
the group, the transactional id, the cluster) or because a topic it must read does not exist (and the
consumer may not create it). None of these heals by retrying harder, and a consumer that crashes on one
restarts into the same wall (a crash loop on Kubernetes). So, on every client call (admin, consume,
produce, transactions, internal topics, changelog restore):

* ``AccessFailures.check`` turns a refusal into the metric ``login_consumer_errors_total{type=authorization|
  authentication|missing_topic}``, a clear error log (what was refused, for which user, what to do; at most
  once per ``LOG_EVERY_SECONDS`` per kind) and a not-ready ``/ready`` with the reason;
* the caller holds what it was doing and retries after a ``Backoff`` (0.5 s doubling to 30 s): nothing is
  committed past what was delivered, so a refusal costs time, never an event (exactly-once: the refused
  transaction is aborted; at-least-once: its events are processed again);
* a grant, a fixed password file or a created topic is picked up without a restart: the next attempt
  succeeds, the next checkpoint clears the refusal (``clear``), and ``/ready`` answers 200 again (or, with
  no traffic to commit, once no refusal was seen for ``WINDOW_SECONDS``). A refused *read* is the
  exception: the network stage's partitions may go on committing while the input stays refused, so it
  holds ``/ready`` until every refused partition delivers again (``intake/group.py``, ``Refusals``).

Only settings that can never work exit (code 2, one line: ``cli.py``).
"""

from __future__ import annotations

import time
from typing import Any, Final

from confluent_kafka import KafkaError

from login_common.access import HINTS, MISSING_TOPIC, classify
from login_consumer.metrics import ConsumerMetrics

WINDOW_SECONDS: Final = 30.0  # /ready stays failed this long after the last refusal (unless cleared)
LOG_EVERY_SECONDS: Final = 10.0


class AccessFailures:
    def __init__(self, metrics: ConsumerMetrics, log: Any, username: str) -> None:
        self._metrics = metrics
        self._log = log
        self._user = username or "(no SASL user)"
        self._logged: dict[str, float] = {}
        self._detail = ""
        self._at = -1e9
        self._reading = ""  # a refused read: holds until the partitions deliver again (``reading_resumed``)

    def check(self, err: KafkaError | None, where: str, resource: str = "") -> bool:
        """Count and report ``err`` if it is a refusal (access or a missing topic); False for any other
        error. ``where``: the operation (consume, produce, metadata, ...); ``resource``: what it was on."""
        found = classify(err)
        if found is None or err is None:
            return False
        kind = found.kind
        self._metrics.errors.labels(kind).inc()
        now = time.monotonic()
        self._at = now
        label = "topic missing" if kind == MISSING_TOPIC else f"{kind} failed"
        on = f" on {resource}" if resource else ""
        self._detail = f"{label}: {err.name()} ({where}{on}, user {self._user})"
        if where == "consume":
            self._reading = self._detail
        if now - self._logged.get(kind, -1e9) >= LOG_EVERY_SECONDS:
            self._logged[kind] = now
            self._log.error(
                f"kafka.{kind}_failed",
                code=err.name(),
                error=err.str(),
                where=where,
                resource=resource or None,
                user=self._user,
                refused=found.refused,
                hint=f"{HINTS[kind]} (docs/security.md)",
                action="holding the work and retrying with backoff; nothing is committed past it",
            )
        return True

    def blocked(self, *, reading: bool | None = None) -> str | None:
        """What was refused recently, or a read still refused, for /ready; or None. ``reading``: whether
        partitions whose read was refused have delivered nothing since (None: not known here)."""
        if self._reading and reading is False:  # every refused partition delivered again
            self._log.info("kafka.access_restored", was=self._reading, user=self._user)
            self._reading = ""
        if time.monotonic() - self._at <= WINDOW_SECONDS:
            return self._detail
        return self._reading or None

    def clear(self) -> None:
        """Progress was made (a checkpoint committed, a start-up step done): access works (again)."""
        if self._detail and self.blocked() is not None:
            self._log.info("kafka.access_restored", was=self._detail, user=self._user)
        self._at = -1e9
        self._detail = ""
