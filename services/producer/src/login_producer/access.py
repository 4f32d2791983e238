"""The producer's side of the access-failure policy (login_common.access): report, wait, retry, recover.

``Refusals`` holds what the broker refused last: each refusal is counted in
``login_producer_errors_total{type=authorization|authentication|missing_topic}``, logged as
``kafka.<kind>_failed`` (code, user, topic, what to do; at most once per LOG_EVERY_SECONDS per kind) and
makes ``/ready`` answer 503 with the reason. The sink (sink.py) keeps every event the broker refused and
sends it again with exponential backoff (``Backoff``); the first event acknowledged afterwards clears the
refusal, so a grant, a fixed password file or a created topic is picked up without a restart.

Design: refusals are *state* (the last one, and since when), not a stream of exceptions: nothing raises,
so no code path can turn a refusal into a traceback or an exit.
"""

from __future__ import annotations

import time
from typing import Any, Final

from confluent_kafka import KafkaError

from login_common.access import HINTS, MISSING_TOPIC, classify
from login_producer.metrics import ProducerMetrics

LOG_EVERY_SECONDS: Final = 10.0


class Refusals:
    """What the broker refused last (for /ready), counted and logged; cleared by a delivery."""

    def __init__(self, metrics: ProducerMetrics, log: Any, *, user: str, topic: str) -> None:
        self._metrics = metrics
        self._log = log
        self._user = user or "(no SASL user)"
        self._topic = topic
        self._logged: dict[str, float] = {}
        self.kind: str | None = None
        self.reason = ""
        self.since = 0.0

    def check(self, err: KafkaError | None, where: str) -> str | None:
        """Count and report ``err`` if it is an access failure; its kind, or None for any other error."""
        found = classify(err)
        if found is None or err is None:
            return None
        kind = found.kind
        self._metrics.errors.labels(kind).inc()
        now = time.monotonic()
        if self.kind is None:
            self.since = now
        self.kind = kind
        label = "topic missing" if kind == MISSING_TOPIC else f"{kind} failed"
        self.reason = (
            f"{label}: {err.name()} ({where}, topic {self._topic!r}, user {self._user}): {HINTS[kind]}"
        )
        if now - self._logged.get(kind, -1e9) >= LOG_EVERY_SECONDS:
            self._logged[kind] = now
            self._log.error(
                f"kafka.{kind}_failed",
                code=err.name(),
                error=err.str(),
                where=where,
                user=self._user,
                topic=self._topic,
                refused=found.refused,
                hint=HINTS[kind],
                action="holding the events and retrying with backoff",
            )
        return kind

    @property
    def blocked(self) -> bool:
        return self.kind is not None

    def cleared(self) -> None:
        """An event was acknowledged: access works (again)."""
        if self.kind is not None:
            self._log.info(
                "kafka.access_restored",
                refused_for_seconds=round(time.monotonic() - self.since, 1),
                topic=self._topic,
                user=self._user,
            )
        self.kind = None
        self.reason = ""
