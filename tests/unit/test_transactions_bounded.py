"""``delivery/transactions.bounded``: a librdkafka call that blocks past its own timeout is given up on.

librdkafka 2.16's ``send_offsets_to_transaction`` can block for good when the group coordinator it cached
is gone (confluentinc/librdkafka#5456, #5511); the failover tier's two-brokers-down test hung there. The
conductor must get a fatal error instead, so that it replaces the producer; what the call returns or raises
in time is passed on unchanged.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from login_consumer.delivery.transactions import bounded


def test_a_call_that_does_not_return_is_a_fatal_timeout_of_the_producer() -> None:
    release = threading.Event()
    beats: list[float] = []
    started = time.monotonic()
    with pytest.raises(KafkaException) as caught:
        bounded(release.wait, 1.5, "send_offsets_to_transaction", lambda: beats.append(time.monotonic()))
    waited = time.monotonic() - started
    release.set()
    err: KafkaError = caught.value.args[0]
    assert err.code() == KafkaError._TIMED_OUT
    assert err.fatal()
    assert "send_offsets_to_transaction did not return within 1.5s" in err.str()
    assert 1.5 <= waited < 30
    assert len(beats) >= 2  # the liveness heartbeat goes on while it waits


def test_what_the_call_raises_in_time_is_raised_unchanged() -> None:
    refused = KafkaException(KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE, "moving", retriable=True))

    def call() -> None:
        raise refused

    with pytest.raises(KafkaException) as caught:
        bounded(call, 10, "send_offsets_to_transaction", lambda: None)
    assert caught.value is refused


def test_a_call_that_returns_in_time_returns() -> None:
    done: list[int] = []
    bounded(lambda: done.append(1), 10, "send_offsets_to_transaction", lambda: None)
    assert done == [1]
