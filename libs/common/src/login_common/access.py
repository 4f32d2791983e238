"""Which Kafka errors mean "access refused" (or "the topic is not there"), for every service.

The broker refuses a client in two ways that no amount of retrying in a tight loop fixes, and that an
operator fixes without touching the service: *authentication* (wrong password, unknown user, a TLS
handshake that fails) and *authorization* (an ACL missing for a topic, a group, a transactional id or the
cluster). A topic that does not exist (and that the user may not create) is the third such case: an admin
creates it. ``classify`` names the kind of such an error and what was refused; each service turns it into
a log line, a counter (``<service>_errors_total{type=<kind>}``) and a not-ready ``/ready`` answer, and keeps
running, retrying with backoff, so that the grant (or the fixed password, or the created topic) is picked
up without a restart. Any other error is not an access failure (``None``).

Design: one table for both services, keyed by the librdkafka error code, so that the consumer and the
producer call the same failure by the same name; the hint says what to grant, in the words of
docs/security.md. ``Backoff`` is the retry pace both services wait between attempts while a refusal lasts.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from confluent_kafka import KafkaError

AUTHORIZATION: Final = "authorization"
AUTHENTICATION: Final = "authentication"
MISSING_TOPIC: Final = "missing_topic"
KINDS: Final = (AUTHORIZATION, AUTHENTICATION, MISSING_TOPIC)


class Refusal(NamedTuple):
    kind: str  # one of KINDS
    refused: str  # what the broker refused, for the log line and /ready


_TABLE: Final[dict[int, Refusal]] = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: Refusal(
        # a broker that auto-creates topics answers the same for a topic the user may not create
        AUTHORIZATION,
        "a topic (WRITE/READ/DESCRIBE ACL), or a missing topic the user may not create",
    ),
    KafkaError.GROUP_AUTHORIZATION_FAILED: Refusal(AUTHORIZATION, "the consumer group (READ ACL)"),
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: Refusal(
        AUTHORIZATION, "the transactional id (WRITE/DESCRIBE ACL)"
    ),
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: Refusal(
        AUTHORIZATION, "a cluster operation (IDEMPOTENT_WRITE ACL)"
    ),
    KafkaError.SASL_AUTHENTICATION_FAILED: Refusal(AUTHENTICATION, "the SASL credentials"),
    KafkaError._AUTHENTICATION: Refusal(AUTHENTICATION, "the credentials or the TLS handshake"),
    KafkaError._SSL: Refusal(AUTHENTICATION, "the TLS handshake (CA, client certificate)"),
    KafkaError.UNKNOWN_TOPIC_OR_PART: Refusal(MISSING_TOPIC, "the topic: it does not exist"),
    KafkaError._UNKNOWN_TOPIC: Refusal(MISSING_TOPIC, "the topic: it does not exist"),
}

HINTS: Final = {
    AUTHORIZATION: "grant this user the ACLs of docs/security.md",
    AUTHENTICATION: "fix the credentials (SASL_PASSWORD_FILE, SSL_* files) or the user on the broker",
    MISSING_TOPIC: "create the topic as an admin (docs/security.md); this user may not",
}


def classify(err: KafkaError | None) -> Refusal | None:
    """The kind of access failure ``err`` is, or None for any other error (or none)."""
    if err is None:
        return None
    found = _TABLE.get(err.code())
    if found is None and err.code() == KafkaError._TRANSPORT and "bad certificate" in err.str():
        # a mutual-TLS listener that refused the client's certificate (or its absence): TLS alert 42
        return Refusal(AUTHENTICATION, "the client certificate (SSL_CERTIFICATE_LOCATION, SSL_KEY_LOCATION)")
    return found


BACKOFF_FIRST_SECONDS: Final = 0.5
BACKOFF_MAX_SECONDS: Final = 30.0


class Backoff:
    """Exponential delays between retries: 0.5 s, 1 s, 2 s, ... up to 30 s; ``reset`` after a success.

    Two ways to use it: ``next()`` for a caller that sleeps the delay itself; ``ready(now)``/``wait(now)``
    for a loop that must not block (the retry is due once ``ready``; ``wait`` records an attempt)."""

    def __init__(self, first: float = BACKOFF_FIRST_SECONDS, most: float = BACKOFF_MAX_SECONDS) -> None:
        self.first = first
        self.most = most
        self.delay = first
        self.due = 0.0

    def next(self) -> float:
        """The delay before the next retry (then doubled, up to ``most``)."""
        delay = self.delay
        self.delay = min(self.most, self.delay * 2)
        return delay

    def ready(self, now: float) -> bool:
        return now >= self.due

    def wait(self, now: float) -> None:
        """A retry happened at ``now``: the next one is due after the current delay, which then doubles."""
        self.due = now + self.next()

    def attempted(self, now: float, *, failed: bool) -> None:
        """An attempt at ``now``: failed, the next is due after a backoff; succeeded, start over."""
        if failed:
            self.wait(now)
        else:
            self.reset()

    def reset(self) -> None:
        self.delay = self.first
        self.due = 0.0
