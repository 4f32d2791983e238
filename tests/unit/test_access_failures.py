"""Access failures (authentication, ACLs): a clear error line per kind and 10 s, a metric, /ready says why."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError
from prometheus_client import CollectorRegistry
from structlog.testing import CapturingLogger

from login_consumer.metrics import ConsumerMetrics
from login_consumer.operations.access import AccessFailures


@pytest.fixture
def parts() -> tuple[AccessFailures, CollectorRegistry, CapturingLogger]:
    registry = CollectorRegistry()
    logger = CapturingLogger()
    return AccessFailures(ConsumerMetrics.create(registry), logger, "consumer"), registry, logger


def _count(registry: CollectorRegistry, kind: str) -> float:
    return registry.get_sample_value("login_consumer_errors_total", {"type": kind}) or 0.0


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, "authorization"),
        (KafkaError.GROUP_AUTHORIZATION_FAILED, "authorization"),
        (KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "authorization"),
        (KafkaError.CLUSTER_AUTHORIZATION_FAILED, "authorization"),
        (KafkaError._AUTHENTICATION, "authentication"),
        (KafkaError.SASL_AUTHENTICATION_FAILED, "authentication"),
    ],
)
def test_an_access_failure_is_counted_logged_and_shown(
    parts: tuple[AccessFailures, CollectorRegistry, CapturingLogger], code: int, kind: str
) -> None:
    access, registry, logger = parts
    assert access.blocked() is None
    assert access.check(KafkaError(code), "consume")
    assert access.check(KafkaError(code), "consume")  # repeated: counted again, logged once
    assert _count(registry, kind) == 2
    (call,) = logger.calls
    assert call.method_name == "error"
    assert call.args == (f"kafka.{kind}_failed",)
    assert call.kwargs["user"] == "consumer"
    assert call.kwargs["code"] == KafkaError(code).name()
    assert "docs/security.md" in call.kwargs["hint"]
    detail = access.blocked()
    assert detail is not None
    assert detail.startswith(f"{kind} failed: {KafkaError(code).name()}")


def test_other_errors_are_left_to_the_caller(
    parts: tuple[AccessFailures, CollectorRegistry, CapturingLogger],
) -> None:
    access, registry, logger = parts
    assert not access.check(KafkaError(KafkaError._TRANSPORT), "client")
    assert not access.check(None, "produce")
    assert _count(registry, "authorization") == 0
    assert not logger.calls
    assert access.blocked() is None
