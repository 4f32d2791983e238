"""Where simulated events go: Kafka (idempotent, acks=all, batched, keyed by user) or JSON lines.

Refused access (ACL missing, wrong password, topic missing) is waited out, never raised: see access.py.
A setting the Kafka client rejects outright raises ``SinkSettingsError`` (exit 2: it can never work).

``DURABILITY`` is applied after every other setting (``kafka_config``): an event the broker acknowledged is
on every in-sync replica (at least min.insync.replicas of them), and a retry after a leader change never
writes it twice. While too few replicas are in sync the broker refuses the write (NOT_ENOUGH_REPLICAS):
librdkafka retries it until message.timeout.ms, the local queue fills and ``send`` blocks; an event that
still fails is counted in ``login_producer_send_errors_total`` (never silently dropped).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Final, Protocol

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import Counter

from login_common.access import Backoff
from login_common.contract import (
    HEADER_ATTACK_ID,
    HEADER_CONTENT_TYPE,
    HEADER_CORRELATION_ID,
    HEADER_COUNTRY,
    HEADER_SCENARIO,
    HEADER_SCHEMA_VERSION,
    HEADER_TRUTH,
    SCHEMA_VERSION,
)
from login_common.logs import Warnings
from login_common.security import read_secret_file
from login_producer.access import Refusals
from login_producer.errors import SinkSettingsError
from login_producer.metrics import ProducerMetrics
from login_producer.simulate import SimEvent
from login_producer.tracing import EventTracer

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_SCHEMA = str(SCHEMA_VERSION).encode()
_JSON = b"application/json"


class Sink(Protocol):
    def send(self, sim: SimEvent) -> None: ...
    def wait_while_refused(self) -> bool:
        """Block while the destination refuses events; False when stopped meanwhile."""
        ...

    def close(self, timeout: float = 30.0) -> int:
        """Flush; return the number of events not delivered."""
        ...


class _SentCounters:
    """Per-scenario children of the ``sent`` counter, looked up once each."""

    def __init__(self, metrics: ProducerMetrics) -> None:
        self._metric = metrics.sent
        self._children: dict[str, Counter] = {}

    def inc(self, scenario: str, amount: int = 1) -> None:
        child = self._children.get(scenario)
        if child is None:
            child = self._children[scenario] = self._metric.labels(scenario)
        child.inc(amount)


# What no configuration may weaken (tests/unit/test_durability.py pins it).
DURABILITY: Final = {"enable.idempotence": True, "acks": "all"}


def kafka_config(config: dict[str, Any]) -> dict[str, Any]:
    """The producer's librdkafka settings: batching defaults, then ``config``, then ``DURABILITY``."""
    return {
        "compression.type": "lz4",
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 500000,
        **config,
        **DURABILITY,
    }


class KafkaLogs:
    """librdkafka's own log lines through structlog (JSON in containers) instead of raw stderr."""

    _METHODS: Final = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}

    def __init__(self, logger: Any, every: float = 10.0) -> None:
        self._logger = logger
        self._every = every
        self._last: dict[str, float] = {}

    def log(self, level: int, fmt: str, *args: object) -> None:  # the client passes logging's levels
        message = fmt % args if args else fmt
        facility = message.split(" ", 1)[0]  # FAIL, GETPID, ...: a refused client repeats them each second
        now = time.monotonic()
        if now - self._last.get(facility, -1e9) < self._every:
            return
        self._last[facility] = now
        method = self._METHODS.get(level - level % 10, "warning")
        getattr(self._logger, method)("librdkafka", message=message)


class PasswordFile:
    """The SASL password, re-read from ``path`` (a Secret updated in place) when authentication fails: at
    most once a second, and only a changed one is handed to the client."""

    def __init__(self, user: str, password: str, path: str, warn: Callable[..., None]) -> None:
        self.user = user
        self.password = password
        self.path = path
        self._warn = warn
        self._read_at = 0.0

    def changed(self) -> str | None:
        """The rotated password, or None (no file, read less than a second ago, unreadable, unchanged)."""
        now = time.monotonic()
        if not self.path or now - self._read_at < 1.0:
            return None
        self._read_at = now
        try:
            password = read_secret_file(self.path, "SASL_PASSWORD_FILE")
        except ValueError as exc:
            self._warn("kafka.password_file_unreadable", error=str(exc))
            return None
        if password == self.password:
            return None
        self.password = password
        return password


# (value, key, headers) of an event the broker refused: sent again once access works
Held = tuple[bytes | None, bytes | None, Any]


def kafka_record(sim: SimEvent, *, fetch_format: bool) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
    """The value and headers of ``sim``: the event (or the common generator's seven fields), its schema
    version and content type, and, full format only, its labels (correlation id, scenario, truth, country,
    attack id)."""
    headers: list[tuple[str, str | bytes | None]] = [
        (HEADER_SCHEMA_VERSION, _SCHEMA),
        (HEADER_CONTENT_TYPE, _JSON),
    ]
    if fetch_format:
        return _dumps(sim.fetch_view()).encode(), headers
    headers.append((HEADER_CORRELATION_ID, str(sim.event.get("event_id", "")).encode()))
    headers.append((HEADER_SCENARIO, sim.scenario.encode()))
    headers.append((HEADER_TRUTH, ",".join(sim.truth).encode()))
    headers.append((HEADER_COUNTRY, sim.country.encode()))
    if sim.attack_id:
        headers.append((HEADER_ATTACK_ID, sim.attack_id.encode()))
    return _dumps(sim.event).encode(), headers


def client_config(
    config: dict[str, Any], on_error: Callable[[KafkaError], None], logs: KafkaLogs
) -> dict[str, Any]:
    """The producer client's settings: the service's, then DURABILITY (kafka_config: no setting weakens
    acks=all + idempotence), then the callbacks."""
    return {
        **kafka_config(
            {
                # a topic the broker says does not exist fails its events after this long (default 30 s):
                # they are held and sent again anyway, and the refusal shows sooner
                "topic.metadata.propagation.max.ms": 10000,
                **config,
            }
        ),
        "error_cb": on_error,
        "logger": logs,
    }


class KafkaSink:
    """Idempotent (acks=all) producer, batched by linger.ms, keyed by user_id; labels in headers.

    Refused access (access.py) never raises: the refused events are held and sent again with backoff,
    ``wait_while_refused`` keeps the simulation from running ahead meanwhile, and ``close`` goes on
    retrying them until they are acknowledged or ``stop`` is set. An authentication failure re-reads
    ``password_file`` (a rotated Secret) and hands a changed password to the client.
    """

    def __init__(
        self,
        topic: str,
        config: dict[str, Any],
        metrics: ProducerMetrics,
        *,
        fetch_format: bool = False,
        stop: threading.Event | None = None,
        log: Any = None,
        password_file: str = "",
        tracer: EventTracer | None = None,
    ) -> None:
        """``tracer``: a trace per event (tracing.py), None when tracing is off."""
        self.topic = topic
        self.tracer = tracer
        self.metrics = metrics
        self.fetch_format = fetch_format
        self.failed = 0
        self.stop = stop or threading.Event()
        self._log = log or structlog.get_logger("login_producer")
        self._warn = Warnings(self._log)
        self._sent = _SentCounters(metrics)
        self._delivered_count = metrics.delivered
        self._latency = metrics.delivery_latency
        self._pending = 0
        user = str(config.get("sasl.username", ""))
        self._password = PasswordFile(user, str(config.get("sasl.password", "")), password_file, self._warn)
        self.refusals = Refusals(metrics, self._log, user=user, topic=topic)
        self._held: list[Held] = []
        self._backoff = Backoff()
        self._fatal: KafkaError | None = None
        self._config = client_config(config, self._on_error, KafkaLogs(self._log))
        self._producer = self._new_producer()

    def _new_producer(self) -> Producer:
        try:
            return Producer(self._config)
        except (KafkaException, ValueError, TypeError) as exc:  # a setting the client cannot use at all
            err = exc.args[0] if exc.args else exc
            text = err.str() if isinstance(err, KafkaError) else str(err)
            raise SinkSettingsError(f"the Kafka client rejected its settings: {text}") from None

    # ------------------------------------------------------------------ sending

    def send(self, sim: SimEvent) -> None:
        value, headers = kafka_record(sim, fetch_format=self.fetch_format)
        if self.tracer is not None and (span := self.tracer.start(sim, headers)) is not None:
            self._produce(value, sim.key.encode(), headers, self._traced(span))
        else:
            self._produce(value, sim.key.encode(), headers)
        self._sent.inc(sim.scenario)
        self._pending += 1
        if self._pending >= 256:  # serve delivery callbacks in batches
            self._pending = 0
            self._producer.poll(0)

    def _traced(self, span: Any) -> Any:
        """The delivery callback of a sampled event: ends its span, then counts as usual."""
        tracer = self.tracer
        assert tracer is not None  # noqa: S101 - only called with a tracer

        def delivered(err: KafkaError | None, msg: Message) -> None:
            tracer.delivered(span, err, msg)
            self._delivered(err, msg)

        return delivered

    def _produce(self, value: bytes | None, key: bytes | None, headers: Any, on_delivery: Any = None) -> None:
        produce = self._producer.produce
        callback = on_delivery or self._delivered
        while True:
            try:
                produce(self.topic, value=value, key=key, headers=headers, on_delivery=callback)
                return
            except BufferError:
                self._producer.poll(0.05)  # local queue full: serve callbacks and retry
                if self.stop.is_set() and self.refusals.blocked:
                    self._held.append((value, key, headers))  # stopped while refused: counted as not sent
                    return
            except KafkaException as exc:
                # the client knows the topic is refused or missing (held, sent again), or it is in a
                # fatal state (a new client sends it)
                err: KafkaError = exc.args[0]
                if self.refusals.check(err, "produce") is None:
                    if err.fatal() or err.code() == KafkaError._FATAL:
                        self._fatal = self._fatal or err
                    else:  # this event can never be sent (too large, say): counted as not delivered
                        self.failed += 1
                        self.metrics.send_errors.labels(err.name()).inc()
                        self._warn("kafka.produce_error", error=err.str(), code=err.name())
                        return
                self._held.append((value, key, headers))
                return

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self._delivered_count.inc()
            latency = msg.latency()
            if latency is not None:
                self._latency.observe(latency)
            if self.refusals.blocked and not self._held:
                self.refusals.cleared()
                self._backoff.reset()
            return
        code = err.code()
        refused = self.refusals.check(err, "produce")
        if (
            refused is not None
            or code == KafkaError._FATAL
            or (code == KafkaError._MSG_TIMED_OUT and self.refusals.blocked)  # never reached the broker
        ):
            self._held.append((msg.value(), msg.key(), msg.headers()))
            return
        self.failed += 1
        self.metrics.send_errors.labels(err.name()).inc()

    def _on_error(self, err: KafkaError) -> None:
        """Client-level errors (error_cb): refusals are reported, a fatal error replaces the client."""
        kind = self.refusals.check(err, "connect")
        if kind == "authentication":
            self._reload_password()
        if kind is not None:
            return
        if err.fatal():
            self._fatal = err
        self.metrics.errors.labels("kafka").inc()
        self._warn("kafka.error", error=err.str(), code=err.name(), fatal=err.fatal())

    def _reload_password(self) -> None:
        """A rotated password file (a Secret updated in place) is used for the next connection."""
        password = self._password.changed()
        if password is not None:
            self._config["sasl.password"] = password
            self._producer.set_sasl_credentials(self._password.user, password)
            self._log.info("kafka.password_reloaded", user=self._password.user, file=self._password.path)

    # ------------------------------------------------------------------ waiting out a refusal

    def service(self) -> None:
        """Serve callbacks; replace a fatally failed client; send held events again when backoff allows."""
        self._producer.poll(0)
        if self._fatal is not None:
            self._replace_client()
        if self._held and self._backoff.ready(time.monotonic()):
            held, self._held = self._held, []
            self._backoff.wait(time.monotonic())
            for value, key, headers in held:
                self._produce(value, key, headers)
            self._producer.poll(0)

    def _replace_client(self) -> None:
        err, self._fatal = self._fatal, None
        self._log.error("kafka.fatal_error", code=err.name() if err else "?", action="new Kafka client")
        old = self._producer
        old.flush(0)  # queued events fail with _FATAL: held, sent again by the new client
        old.purge()
        old.poll(0)
        self._producer = self._new_producer()

    def wait_while_refused(self) -> bool:
        """Hold the simulation while the broker refuses events (retrying them); False once stopped."""
        if not (self.refusals.blocked or self._held):
            return True  # the common case: two attribute reads per event
        self.service()
        while self.refusals.blocked or self._held:
            if self.stop.wait(0.1):
                return False
            self.service()
        return True

    def ready(self) -> tuple[bool, str] | None:
        """(False, reason) while refused; None when nothing is refused (the caller checks the broker)."""
        return (False, self.refusals.reason) if self.refusals.blocked else None

    def close(self, timeout: float = 30.0) -> int:
        """Flush; while the broker refuses, keep retrying until acknowledged or ``stop``. Returns the
        number of events not delivered."""
        deadline = time.monotonic() + timeout
        while True:
            self.service()  # held events go back to the client first, then the flush waits for them
            remaining = self._producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
            if remaining == 0 and not self._held:
                break
            refused = self.refusals.blocked or bool(self._held)
            if self.stop.is_set() or (not refused and time.monotonic() >= deadline):
                remaining = self._producer.flush(0)
                break
            if refused:
                self.stop.wait(0.1)
        return remaining + len(self._held) + self.failed


class FileSink:
    """JSON lines. Full events carry their labels in a separate ``_label`` object; fetch format none."""

    def __init__(
        self, stream: IO[str], metrics: ProducerMetrics, *, fetch_format: bool = False, batch: int = 512
    ) -> None:
        self.stream = stream
        self.batch = max(1, batch)
        self.metrics = metrics
        self.fetch_format = fetch_format
        self._sent = _SentCounters(metrics)
        self._scenarios: dict[str, int] = {}  # counted here, added to the metric with each write
        self._buffer: list[str] = []
        self._write = stream.write
        self._label_json: dict[tuple[str, str | None, tuple[str, ...], str], str] = {}

    def _label_suffix(self, sim: SimEvent) -> str:
        """``,"_label":{...}}``: the label closes the event object (cached for attack-free labels)."""
        key = (sim.scenario, sim.attack_id, sim.truth, sim.country)
        suffix = self._label_json.get(key)
        if suffix is None:
            suffix = ',"_label":' + _dumps(sim.label()) + "}"
            if sim.attack_id is None:  # attack ids are unique: caching them would only grow
                self._label_json[key] = suffix
        return suffix

    def send(self, sim: SimEvent) -> None:
        if self.fetch_format:
            line = _dumps(sim.fetch_view())
        else:
            line = _dumps(sim.event)[:-1] + self._label_suffix(sim)
        buf = self._buffer
        buf.append(line)
        counts = self._scenarios
        counts[sim.scenario] = counts.get(sim.scenario, 0) + 1
        if len(buf) >= self.batch:
            self._flush_buffer()

    def _flush_buffer(self) -> None:
        if self._buffer:
            self._write("\n".join(self._buffer) + "\n")
            for scenario, n in self._scenarios.items():
                self._sent.inc(scenario, n)
            self.metrics.delivered.inc(len(self._buffer))
            self._buffer.clear()
            self._scenarios.clear()

    def wait_while_refused(self) -> bool:
        return True  # a file never refuses

    def close(self, timeout: float = 30.0) -> int:
        self._flush_buffer()
        self.stream.flush()
        return 0
