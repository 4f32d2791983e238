"""Real-broker fixtures shared by every test package (a pytest plugin: tests/conftest.py lists it).

``kafka`` yields a bootstrap address: KAFKA_BOOTSTRAP if set; else a testcontainers Kafka when a Docker
daemon answers; else the local broker of login_devtools/local_kafka.py, started if needed. Tests never mock
the Kafka client.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from login_common.kafka import ensure_topics, wait_for_broker

ROOT = Path(__file__).resolve().parents[2]


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # noqa: BLE001 - any failure means "no usable daemon"
        return False
    return True


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    named = os.environ.get("KAFKA_BOOTSTRAP")
    if named:
        wait_for_broker(named, timeout=60)
        yield named
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    out = subprocess.run(
        [sys.executable, "-m", "login_devtools.local_kafka", "up"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        pytest.fail(f"no Kafka broker for the tests: {out.stderr.strip() or out.stdout.strip()}")
    port = os.environ.get("KAFKA_PORT", "9092")
    yield f"127.0.0.1:{port}"


@pytest.fixture
def unique() -> Callable[[str], str]:
    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture
def topic_factory(kafka: str, unique: Callable[[str], str]) -> Callable[..., str]:
    """Create a topic with a unique name: ``topic_factory("user-login", partitions=3)``."""

    def make(prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = unique(prefix)
        ensure_topics(kafka, {name: partitions}, config=config)
        return name

    return make


@pytest.fixture
def group_factory(unique: Callable[[str], str]) -> Callable[[str], str]:
    def make(prefix: str = "g") -> str:
        return unique(prefix)

    return make
