"""Thin helpers over confluent-kafka shared by both services."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from login_common.errors import KafkaUnavailableError

# A bootstrap address ("host:port,...") or a whole client configuration (``settings.kafka_common()``,
# which carries the security settings too).
Brokers = str | Mapping[str, Any]


def client_config(brokers: Brokers) -> dict[str, Any]:
    return {"bootstrap.servers": brokers} if isinstance(brokers, str) else dict(brokers)


def bootstrap_of(brokers: Brokers) -> str:
    return brokers if isinstance(brokers, str) else str(brokers.get("bootstrap.servers", "?"))


def admin(bootstrap: Brokers, **extra: Any) -> AdminClient:
    return AdminClient({**client_config(bootstrap), **extra})


def broker_reachable(bootstrap: Brokers, timeout: float = 3.0) -> bool:
    """True when a broker answers a metadata request within ``timeout`` seconds."""
    try:
        admin(bootstrap).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def wait_for_broker(bootstrap: Brokers, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker_reachable(bootstrap, timeout=min(5.0, max(0.5, deadline - time.monotonic()))):
            return
        time.sleep(0.5)
    where = bootstrap_of(bootstrap)
    raise KafkaUnavailableError(f"no Kafka broker answered at {where} within {timeout:.0f}s")


def ensure_topics(
    bootstrap: Brokers,
    partitions: Mapping[str, int],
    *,
    replication_factor: int = -1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create the topics that do not exist yet; existing topics are left alone."""
    client = admin(bootstrap)
    existing = set(client.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(name, num_partitions=n, replication_factor=replication_factor, config=dict(config or {}))
        for name, n in partitions.items()
        if name not in existing
    ]
    if not wanted:
        return
    for name, future in client.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise KafkaUnavailableError(f"could not create topic {name}: {exc}") from exc


def stop_event(*signals: int) -> threading.Event:
    """An Event set by SIGTERM/SIGINT (or the given signals); a second signal restores the default."""
    event = threading.Event()
    sigs = signals or (signal.SIGTERM, signal.SIGINT)

    def handler(signum: int, _frame: object) -> None:
        if event.is_set():
            signal.signal(signum, signal.SIG_DFL)
        event.set()

    for sig in sigs:
        signal.signal(sig, handler)
    return event


Header = tuple[str, str | bytes | None]


def message_headers(msg: Message) -> list[Header]:
    """A message's headers as a list of (name, value) pairs, whatever form the client returned."""
    raw = msg.headers()
    if not raw:
        return []
    if isinstance(raw, dict):
        return list(raw.items())
    return [(str(item[0]), item[1]) for item in raw]


def header_value(msg: Message, name: str) -> bytes | None:
    """The last value of header ``name`` as bytes, or None."""
    found: bytes | None = None
    for key, value in message_headers(msg):
        if key == name and value is not None:
            found = value.encode() if isinstance(value, str) else value
    return found
