"""login_common.access: which Kafka errors are refusals, of which kind; the producer's retry backoff."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from login_common.access import AUTHENTICATION, AUTHORIZATION, MISSING_TOPIC, Backoff, classify


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, "Broker: Topic authorization failed", AUTHORIZATION),
        (KafkaError.GROUP_AUTHORIZATION_FAILED, "Broker: Group authorization failed", AUTHORIZATION),
        (KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "", AUTHORIZATION),
        (KafkaError.CLUSTER_AUTHORIZATION_FAILED, "", AUTHORIZATION),
        (KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials", AUTHENTICATION),
        (KafkaError.SASL_AUTHENTICATION_FAILED, "", AUTHENTICATION),
        (KafkaError._SSL, "certificate verify failed", AUTHENTICATION),
        # what a mutual-TLS listener answers a client without an accepted certificate (TLS alert 42)
        (
            KafkaError._TRANSPORT,
            "Receive failed: ssl/tls alert bad certificate: SSL alert number 42",
            AUTHENTICATION,
        ),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, "Broker: Unknown topic or partition", MISSING_TOPIC),
        (KafkaError._UNKNOWN_TOPIC, "Local: Unknown topic", MISSING_TOPIC),
        # not refusals: the broker is down or slow, a record is too large
        (KafkaError._TRANSPORT, "Connect to ipv4#127.0.0.1:9092 failed: Connection refused", None),
        (KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down", None),
        (KafkaError._MSG_TIMED_OUT, "Local: Message timed out", None),
        (KafkaError.MSG_SIZE_TOO_LARGE, "", None),
    ],
)
def test_classify(code: int, text: str, kind: str | None) -> None:
    found = classify(KafkaError(code, text))
    assert (found.kind if found else None) == kind
    if found is not None:
        assert found.refused  # what the log line and /ready say was refused


def test_no_error_is_no_refusal() -> None:
    assert classify(None) is None


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    backoff = Backoff(first=0.5, most=30.0)
    assert backoff.ready(0.0)
    delays = []
    now = 0.0
    for _ in range(9):
        backoff.wait(now)
        delays.append(backoff.due - now)
        assert not backoff.ready(now)
        now = backoff.due
        assert backoff.ready(now)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    backoff.reset()
    assert backoff.ready(now)
    backoff.wait(now)
    assert backoff.due - now == 0.5


def test_an_attempt_that_failed_waits_and_one_that_succeeded_starts_over() -> None:
    backoff = Backoff(first=0.5, most=30.0)
    backoff.attempted(10.0, failed=True)
    backoff.attempted(10.5, failed=True)
    assert (backoff.due, backoff.delay) == (11.5, 2.0)
    assert not backoff.ready(11.4)
    backoff.attempted(11.5, failed=False)
    assert backoff.ready(11.5)
    assert backoff.next() == 0.5
