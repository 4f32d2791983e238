"""Start-up steps the broker refuses are waited out (reported, retried with backoff); a setting that can
never work is raised at once (the entry point exits 2 with its message)."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import KafkaError
from prometheus_client import CollectorRegistry
from structlog.testing import CapturingLogger

from login_common.access import Backoff
from login_consumer.errors import InternalTopicError, StateRestoreError
from login_consumer.metrics import ConsumerMetrics
from login_consumer.operations.access import AccessFailures
from login_consumer.operations.retry import Retrier


def _retrier() -> tuple[Retrier, CollectorRegistry, list[str]]:
    registry = CollectorRegistry()
    access = AccessFailures(ConsumerMetrics.create(registry), CapturingLogger(), "consumer")
    warned: list[str] = []
    return Retrier(access, lambda event, **_: warned.append(event), lambda: None), registry, warned


def test_backoff_doubles_up_to_its_ceiling_and_resets() -> None:
    backoff = Backoff(first=0.5, most=4.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_a_missing_topic_is_waited_for_then_the_step_succeeds() -> None:
    retrier, registry, warned = _retrier()
    attempts: list[str] = []
    seen: list[str | None] = []

    def step() -> None:
        attempts.append("try")
        if len(attempts) < 3:
            seen.append(retrier.waiting)
            raise InternalTopicError(
                "INPUT_TOPIC 'x' not found", KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
            )

    assert retrier.until_done(threading.Event(), "start-up", step)
    assert len(attempts) == 3
    assert seen[1] is not None
    assert "INPUT_TOPIC 'x' not found" in seen[1]
    assert retrier.waiting is None
    assert registry.get_sample_value("login_consumer_errors_total", {"type": "missing_topic"}) == 2
    assert warned == []  # a refusal is the access policy's to report
    assert retrier.access.blocked() is None  # cleared by the success


def test_a_broker_that_does_not_answer_is_retried_and_warned() -> None:
    retrier, _, warned = _retrier()
    stop = threading.Event()

    def step() -> None:
        stop.set()  # one attempt, then stopped while waiting
        raise InternalTopicError("internal topic 't': timed out", KafkaError(KafkaError._TRANSPORT))

    assert not retrier.until_done(stop, "start-up", step)
    assert warned == ["start-up.retrying"]


def test_a_setting_that_can_never_work_is_raised() -> None:
    retrier, _, _ = _retrier()

    def step() -> None:
        raise StateRestoreError("STATE_TOPIC 's' has 5 partitions, the topic 'i' 3: they must match")

    with pytest.raises(StateRestoreError, match="must match"):
        retrier.until_done(threading.Event(), "start-up", step)


def test_a_step_retried_between_two_reads_gives_up_after_its_time() -> None:
    """``within``: the loop retries init_transactions for at most DELIVERY_TIMEOUT before it reads again
    (the group would drop a member that stops reading for longer: delivery/producer.py)."""
    import time

    retrier, _, warned = _retrier()
    attempts: list[float] = []

    def step() -> None:
        attempts.append(time.monotonic())
        raise InternalTopicError("coordinator away", KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE))

    started = time.monotonic()
    assert not retrier.until_done(threading.Event(), "init_transactions", step, within=1.2)
    took = time.monotonic() - started
    assert len(attempts) == 2  # at 0 s and after 0.5 s; the next would start after 1.5 s: not tried
    assert attempts[-1] - started < 1.2
    assert took < 1.2  # no pause after the last attempt
    assert warned == ["init_transactions.retrying"] * len(attempts)
