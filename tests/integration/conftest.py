"""Fixtures of the integration tests on the secured broker (tests/integration/secured.py)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from login_common.acls import consumer_acls, producer_acls
from login_common.kafka import ensure_topics
from tests.integration.secured import (
    SCRIPT,
    Names,
    SecuredKafka,
    kafka_security,
    secured_broker,
    wait_until_described,
)


@pytest.fixture(scope="session")
def secured_kafka() -> Iterator[SecuredKafka]:
    try:
        with secured_broker() as secured:
            status = subprocess.run(
                [sys.executable, str(SCRIPT), "status"],
                env=secured.env,
                capture_output=True,
                text=True,
                check=False,
            )
            broker = secured.broker
            for out in (secured.up_output, status.stdout):  # `make kafka-status`: the settings, no password
                assert "SECURITY_PROTOCOL=SASL_SSL SASL_USERNAME=consumer SASL_PASSWORD_FILE=" in out
                assert f"SSL_CA_LOCATION={broker.ca_cert}" in out
                assert not [u for u in kafka_security.USERS if broker.password(u) in out]
            yield secured
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def granted(secured_kafka: SecuredKafka) -> Names:
    """Fresh topics and group, with the producer's and consumer's ACLs for them (as the defaults have)."""
    tag = uuid.uuid4().hex[:8]
    names = Names(f"user-login-{tag}", f"processed-logins-{tag}", f"dlq-{tag}", f"login-consumer-{tag}")
    ensure_topics(secured_kafka.config("admin"), {names.input: 3, names.output: 3, names.dlq: 1})
    secured_kafka.broker.grant(
        {
            "producer": producer_acls(names.input),
            "consumer": consumer_acls(names.input, names.output, names.dlq, names.group),
        }
    )
    wait_until_described(secured_kafka.config("producer"), [names.input])
    wait_until_described(secured_kafka.config("consumer"), [names.input, names.output, names.dlq])
    return names
