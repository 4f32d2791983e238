"""The producer's spans: one trace per event (login_common.tracing; docs/observability.md, "Tracing").

Each event starts a trace. The sampler (``OTEL_TRACES_SAMPLER``, e.g. ``parentbased_traceidratio`` with
``OTEL_TRACES_SAMPLER_ARG=0.01``) is asked first, on a trace id drawn here, so that an unsampled event
costs two random numbers and a header (``traceparent`` with the sampled flag off: the consumer then
records nothing for it either), not a span. A sampled event gets a ``send <topic>`` span (kind PRODUCER)
with that trace id, its ``traceparent`` in the record's headers, and attributes of the event (event id,
outcome, scenario, user); the span ends when the broker acknowledges the record, with the partition and
offset it got (or the delivery error, status ERROR).
"""

from __future__ import annotations

import random
from typing import Any

from confluent_kafka import KafkaError, Message

from login_common.tracing import TRACEPARENT, Header, Tracing, context_headers
from login_producer.simulate import SimEvent


class EventTracer:
    def __init__(self, tracing: Tracing, topic: str) -> None:
        from opentelemetry import trace

        self.tracing = tracing
        self.topic = topic
        self.name = f"send {topic}"
        self._kind = trace.SpanKind.PRODUCER
        self._status = trace.Status
        self._error = trace.StatusCode.ERROR
        self._should_sample = tracing.sampler.should_sample

    def start(self, sim: SimEvent, headers: list[Header]) -> Any | None:
        """Add the event's trace context to ``headers``; the open span of a sampled event, else None."""
        trace_id = random.getrandbits(128) or 1
        if not self._should_sample(None, trace_id, self.name).decision.is_sampled():
            headers.append((TRACEPARENT, b"00-%032x-%016x-00" % (trace_id, random.getrandbits(64) or 1)))
            return None
        self.tracing.ids.preset = trace_id
        event = sim.event
        span = self.tracing.tracer.start_span(
            self.name,
            kind=self._kind,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": self.topic,
                "messaging.kafka.message.key": sim.key,
                "login.event_id": str(event.get("event_id", "")),
                "login.outcome": str(event.get("outcome", "")),
                "login.scenario": sim.scenario,
                "login.truth": list(sim.truth),
            },
        )
        headers.extend(context_headers(span))
        return span

    def delivered(self, span: Any, err: KafkaError | None, msg: Message) -> None:
        """End a sampled event's span at its acknowledgement."""
        if err is None:
            span.set_attribute("messaging.destination.partition.id", str(msg.partition()))
            span.set_attribute("messaging.kafka.offset", msg.offset() or 0)
        else:
            span.set_status(self._status(self._error, err.str()))
            span.set_attribute("error.type", err.name())
        span.end()
