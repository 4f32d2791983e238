"""Access failures reported by the broker: authentication refused, or an ACL missing for a topic, the group,
the transactional id or the cluster.

Such a failure does not heal by retrying harder, and a consumer that crashes on it restarts into the same
wall. ``AccessFailures`` turns each one into a clear error log (what was refused, for which user, what to
grant; at most once per 10 s per kind), the metric ``login_consumer_errors_total{type="authorization"}``
(or ``type="authentication"``) and a not-ready ``/ready`` answer, while the consumer keeps running: topic
and group ACLs granted later are picked up without a restart.
"""

from __future__ import annotations

import time
from typing import Any, Final

from confluent_kafka import KafkaError

from login_consumer.metrics import ConsumerMetrics

# Kafka error code -> (metric type, what the broker refused)
_ACCESS: Final[dict[int, tuple[str, str]]] = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: ("authorization", "a topic (READ/WRITE/DESCRIBE ACL)"),
    KafkaError.GROUP_AUTHORIZATION_FAILED: ("authorization", "the consumer group (READ ACL on GROUP_ID)"),
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: (
        "authorization",
        "the transactional id (WRITE/DESCRIBE ACL on TRANSACTIONAL_ID)",
    ),
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: ("authorization", "a cluster operation (IDEMPOTENT_WRITE ACL)"),
    KafkaError.SASL_AUTHENTICATION_FAILED: ("authentication", "the SASL credentials"),
    KafkaError._AUTHENTICATION: ("authentication", "the credentials or the TLS handshake"),
}
WINDOW_SECONDS: Final = 30.0  # /ready stays failed this long after the last access failure
LOG_EVERY_SECONDS: Final = 10.0


class AccessFailures:
    def __init__(self, metrics: ConsumerMetrics, log: Any, username: str) -> None:
        self._metrics = metrics
        self._log = log
        self._user = username or "(no SASL user)"
        self._last: dict[str, float] = {}
        self._detail = ""
        self._at = -1e9

    def check(self, err: KafkaError | None, where: str) -> bool:
        """Count and report ``err`` if it is an access failure; False for any other error."""
        if err is None:
            return False
        found = _ACCESS.get(err.code())
        if found is None:
            return False
        kind, refused = found
        self._metrics.errors.labels(kind).inc()
        now = time.monotonic()
        self._at = now
        self._detail = f"{kind} failed: {err.name()} ({where})"
        if now - self._last.get(kind, -1e9) >= LOG_EVERY_SECONDS:
            self._last[kind] = now
            self._log.error(
                f"kafka.{kind}_failed",
                code=err.name(),
                error=err.str(),
                where=where,
                user=self._user,
                refused=refused,
                hint="grant the ACLs of docs/security.md to this user (or fix its credentials)",
            )
        return True

    def blocked(self) -> str | None:
        """What was refused recently (for /ready), or None."""
        if time.monotonic() - self._at <= WINDOW_SECONDS:
            return self._detail
        return None
