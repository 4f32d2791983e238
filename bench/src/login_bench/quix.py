"""The Quix Streams contender of `make bench`: a Quix Streams application doing login-consumer's work.

Every message goes through login-consumer's own stage functions, called once per message as Quix
``apply`` steps, so the work and the output bytes are the consumer's:

* the user stage (``stages.user.UserStage``: ``Processor`` = validate -> enrich -> per-user detectors ->
  score -> serialize), then Quix's own repartition (``group_by`` the event's network, as login-consumer
  re-keys onto ``<GROUP_ID>-network-repartition``), then the network stage (``stages.network``:
  credential_stuffing) completes the event;
* with a login-consumer that has no network stage (before the topology), ``Processor`` with all the
  detectors, in one step.

Outputs go to OUTPUT_TOPIC, rejects to DLQ_TOPIC (original bytes, `dlq-error-type`/`dlq-error-detail`
headers). Quix's checkpointing commits (at-least-once, its default 5 s interval). The detectors keep
their state in memory without login-consumer's changelog topics (a lighter load, in Quix's favour).

It runs in its own environment (.venv-quix, requirements/bench-quix.txt): quixstreams 3.x requires
confluent-kafka < 2.13, pydantic < 2.14 and pydantic-settings < 2.16, older than the project's pins.
Environment: BOOTSTRAP_SERVERS, INPUT_TOPIC, OUTPUT_TOPIC, DLQ_TOPIC, GROUP_ID (as login-consumer).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from quixstreams import Application, message_context

from login_common.settings import load_settings
from login_consumer.config import ConsumerSettings
from login_consumer.process import Processor, tune_gc

try:  # the topology (user stage -> network stage)
    from login_consumer.stages.network import NetworkStage
    from login_consumer.stages.user import UserStage
    from login_consumer.wiring import build_detectors, build_network_detector
except ImportError:  # one stage: Processor with every detector
    from login_consumer.wiring import build_detectors

    build_network_detector = None  # type: ignore[assignment]
    NetworkStage = UserStage = None  # type: ignore[assignment,misc]

KIND = "x-bench-kind"  # internal header between the two steps: out | dlq | net


@dataclass(frozen=True, slots=True)
class _Message:
    """What the stages read of a confluent-kafka ``Message`` (whose constructor the confluent-kafka that
    Quix pins does not have)."""

    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _headers: Any
    _timestamp: int

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Any:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)


@dataclass(slots=True)
class _Routed:
    """Where the message in hand goes (Quix runs one message at a time through a chain of steps)."""

    kind: bytes = b"out"
    key: bytes | None = None
    headers: list[tuple[str, Any]] = field(default_factory=list)


def _message(value: bytes, key: bytes | None, timestamp: int, headers: Any) -> _Message:
    ctx = message_context()
    return _Message(ctx.topic, ctx.partition, ctx.offset, key, value, headers, timestamp)


def _dead(routed: _Routed, msg: _Message, why: Any) -> bytes:
    routed.kind, routed.key = b"dlq", msg.key()
    routed.headers = [
        *(msg.headers() or []),
        ("dlq-error-type", why.error_type),
        ("dlq-error-detail", why.detail),
    ]
    return msg.value() or b""


def build_app() -> Application:
    settings = load_settings(ConsumerSettings, metrics_port=0, state_changelog=False)
    processor = Processor.from_settings(settings, build_detectors(settings))
    network = build_network_detector(settings) if build_network_detector is not None else None
    app = Application(
        broker_address=settings.bootstrap_servers,
        consumer_group=settings.group_id,
        auto_offset_reset="earliest",
        loglevel="WARNING",
        state_dir=tempfile.mkdtemp(prefix="bench-quix-"),
        use_changelog_topics=False,
    )
    source = app.topic(settings.input_topic, key_deserializer="bytes", value_deserializer="bytes")
    output = app.topic(settings.output_topic, key_serializer="bytes", value_serializer="bytes")
    dlq = app.topic(settings.dlq_topic, key_serializer="bytes", value_serializer="bytes")
    routed = _Routed()
    sdf = app.dataframe(source)

    if network is None or UserStage is None or NetworkStage is None:

        def process(value: bytes, key: bytes | None, timestamp: int, headers: Any) -> bytes:
            msg = _message(value, key, timestamp, headers)
            result = processor.process([msg])  # type: ignore[list-item] # a duck-typed Message
            if not result.outputs:
                return _dead(routed, msg, result.dead[0][1])
            _, out_key, out_value, out_headers = result.outputs[0]
            routed.kind, routed.key, routed.headers = b"out", out_key, list(out_headers)
            return out_value

        sdf = sdf.apply(process, metadata=True)
    else:
        user_stage = UserStage(
            processor,
            output_topic=settings.output_topic,
            repartition_topic="quix-group-by",
            partitions=1,
            stuffing_prefix=settings.stuffing_prefix,
        )
        # one writer per network partition here (Quix's own group_by): no source merge to wait for
        network_stage = NetworkStage(network, processor.risk, output_topic=settings.output_topic, merge=False)

        def user_step(value: bytes, key: bytes | None, timestamp: int, headers: Any) -> bytes:
            msg = _message(value, key, timestamp, headers)
            result = user_stage.process([msg])  # type: ignore[list-item]
            if not result.records:
                return _dead(routed, msg, result.batch.dead[0][1])
            topic, _, out_key, out_value, out_headers = result.records[0]
            routed.kind = b"out" if topic == settings.output_topic else b"net"
            routed.key, routed.headers = out_key, [*out_headers, (KIND, routed.kind)]
            return out_value

        def network_step(value: bytes, key: bytes | None, timestamp: int, headers: Any) -> bytes:
            kind = b"out"
            rest = []
            for name, header in headers or ():
                if name == KIND:
                    kind = header
                else:
                    rest.append((name, header))
            if kind != b"net":  # completed by the user stage, or a dead letter: as it is
                routed.kind, routed.key, routed.headers = kind, key, rest
                return value
            msg = _message(value, key, timestamp, rest)
            result = network_stage.process([msg])  # type: ignore[list-item]
            if not result.records:
                return _dead(routed, msg, result.dead[0][1])
            _, _, out_key, out_value, out_headers = result.records[0]
            routed.kind, routed.key, routed.headers = b"out", out_key, list(out_headers)
            return out_value

        sdf = sdf.apply(user_step, metadata=True)
        sdf = sdf.set_headers(lambda value, key, timestamp, headers: routed.headers)
        # Quix's repartition: the network-bound events re-keyed by their network (the others by their key)
        sdf = sdf.group_by(
            lambda value: routed.key or b"",
            name="network",
            key_serializer="bytes",
            key_deserializer="bytes",
            value_serializer="bytes",
            value_deserializer="bytes",
        )
        sdf = sdf.apply(network_step, metadata=True)

    sdf = sdf.set_headers(lambda value, key, timestamp, headers: routed.headers)
    sdf.to_topic(
        lambda value, key, timestamp, headers: dlq if routed.kind == b"dlq" else output,
        key=lambda _: routed.key,
    )
    return app


def main() -> int:
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    app = build_app()
    tune_gc()  # as login-consumer does at start-up
    app.run()  # until SIGTERM/SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
