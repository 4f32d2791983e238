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
docs/security.md.
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
