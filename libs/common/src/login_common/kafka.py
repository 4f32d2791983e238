"""Thin helpers over confluent-kafka shared by both services.

Topics this project creates (``ensure_topics``: the scripts' input, output and dead-letter topics, the
consumer's repartition topic and state changelogs) are replicated as the cluster allows: factor
``min(3, brokers)`` and ``min.insync.replicas`` one less (at least 1), so on three brokers 3 and 2: one
broker may be lost without losing an acknowledged write (acks=all) or refusing one. The broker count is
read once per cluster (``replication``); a setting (the consumer's TOPIC_REPLICATION_FACTOR) can name the
factor instead. Topic creation is retried through a leader or controller change until its deadline.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Message
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


MAX_REPLICATION_FACTOR = 3
# Creating a topic can fail for a moment while a broker or the controller changes: tried again until the
# deadline. INVALID_REPLICATION_FACTOR too: a broker that is down (restarting) leaves too few for a while.
CREATE_RETRIED = frozenset(
    {
        KafkaError.NOT_CONTROLLER,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.INVALID_REPLICATION_FACTOR,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    }
)
_replication: dict[str, tuple[int, int]] = {}


def cluster_size(client: AdminClient, timeout: float = 10.0) -> int:
    """The brokers of the cluster: those in its metadata, or more when a partition's replicas name more (a
    broker that is down still holds its replicas)."""
    md = client.list_topics(timeout=timeout)
    size = len(md.brokers)
    for topic in md.topics.values():
        for part in topic.partitions.values():
            size = max(size, len(part.replicas))
    return size


def replication(bootstrap: Brokers, factor: int | None = None, timeout: float = 10.0) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of the topics this project creates: ``factor`` when given
    (a setting), else ``min(3, brokers)`` read once per bootstrap address; min.insync.replicas is one less
    than the factor (at least 1)."""
    if factor is None or factor <= 0:
        key = bootstrap_of(bootstrap)
        if key not in _replication:
            size = cluster_size(admin(bootstrap), timeout)
            chosen = max(1, min(MAX_REPLICATION_FACTOR, size))
            _replication[key] = (chosen, max(1, chosen - 1))
        return _replication[key]
    return factor, max(1, factor - 1)


def _retried(exc: KafkaException) -> bool:
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and (err.retriable() or err.code() in CREATE_RETRIED)


def ensure_topics(
    bootstrap: Brokers,
    partitions: Mapping[str, int],
    *,
    replication_factor: int | None = None,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create the topics that do not exist yet; existing topics are left alone.

    ``replication_factor``: None (or 0) = as the cluster allows (``replication``), with its
    min.insync.replicas unless ``config`` names one; -1 = the broker's default.
    """
    client = admin(bootstrap)
    deadline = time.monotonic() + timeout
    settings = dict(config or {})
    factor = -1
    if replication_factor is None or replication_factor >= 0:
        factor, min_isr = _until(deadline, lambda: replication(bootstrap, replication_factor, timeout))
        settings.setdefault("min.insync.replicas", str(min_isr))
    pending = dict(partitions)
    while True:
        existing = set(_until(deadline, lambda: client.list_topics(timeout=timeout)).topics)
        wanted = [
            NewTopic(name, num_partitions=n, replication_factor=factor, config=settings)
            for name, n in pending.items()
            if name not in existing
        ]
        if not wanted:
            return
        left = max(1.0, deadline - time.monotonic())
        failed: dict[str, KafkaException] = {}
        for name, future in client.create_topics(wanted, operation_timeout=left).items():
            try:
                future.result(timeout=left)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" in str(exc):
                    continue
                if not _retried(exc):
                    raise KafkaUnavailableError(f"could not create topic {name}: {exc}") from exc
                failed[name] = exc
        if not failed:
            return
        if time.monotonic() >= deadline:
            name, last = next(iter(failed.items()))
            raise KafkaUnavailableError(f"could not create topic {name} within {timeout:.0f}s: {last}")
        pending = {name: partitions[name] for name in failed}
        time.sleep(0.5)


T = TypeVar("T")


def _until(deadline: float, call: Callable[[], T]) -> T:
    """``call()``, tried again on retriable Kafka errors (a broker or controller changing) until
    ``deadline``; then its KafkaException."""
    while True:
        try:
            return call()
        except KafkaException as exc:
            if not _retried(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.5)


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
