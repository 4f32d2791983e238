"""The Quix Streams contender of `make bench`: a Quix Streams application doing login-consumer's work.

Every message goes through login-consumer's own ``Processor`` (validate -> enrich -> the stateful
detectors -> score -> serialize), called once per message as a Quix ``apply`` step: the same functions
and the same output bytes, in the framework's per-message model; outputs go to OUTPUT_TOPIC, rejects to
DLQ_TOPIC (original bytes, `dlq-error-type`/`dlq-error-detail` headers). Quix's own checkpointing commits
(at-least-once, its default 5 s commit interval). The detectors keep their state in memory without the
changelog topic (a lighter load than login-consumer's, in Quix's favour).

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
from login_consumer.detect import build_detectors
from login_consumer.process import Processor, tune_gc


@dataclass(frozen=True, slots=True)
class _Message:
    """What ``Processor.process`` reads of a confluent-kafka ``Message`` (whose constructor the
    confluent-kafka that Quix pins does not have)."""

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
    """Where the message in hand goes (Quix runs one message at a time through the steps)."""

    ok: bool = True
    key: bytes | None = None
    headers: list[tuple[str, Any]] = field(default_factory=list)


def build_app() -> Application:
    settings = load_settings(ConsumerSettings, metrics_port=0, state_changelog=False)
    processor = Processor.from_settings(settings, build_detectors(settings))
    routed = _Routed()
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

    def process(value: bytes, key: bytes | None, timestamp: int, headers: Any) -> bytes:
        ctx = message_context()
        msg = _Message(ctx.topic, ctx.partition, ctx.offset, key, value, headers, timestamp)
        result = processor.process([msg])  # type: ignore[list-item] # duck-typed Message
        if result.outputs:
            _, out_key, out_value, out_headers = result.outputs[0]
            routed.ok, routed.key, routed.headers = True, out_key, list(out_headers)
            return out_value
        why = result.dead[0][1]
        routed.ok, routed.key = False, key
        routed.headers = [
            *(headers or []),
            ("dlq-error-type", why.error_type),
            ("dlq-error-detail", why.detail),
        ]
        return value

    sdf = app.dataframe(source)
    sdf = sdf.apply(process, metadata=True)
    sdf = sdf.set_headers(lambda value, key, timestamp, headers: routed.headers)
    sdf.to_topic(
        lambda value, key, timestamp, headers: output if routed.ok else dlq, key=lambda _: routed.key
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
