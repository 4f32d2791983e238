"""The consumer's spans: each stage continues the event's trace (``login_common.tracing`` for the set-up and
the Kafka headers; docs/observability.md, "Tracing").

Per stage, for each event whose trace is sampled, one span:

* ``process <topic>`` (kind CONSUMER, as OpenTelemetry's messaging conventions have a process span), child
  of the upstream record's context (the producer's ``send`` span, or the user stage's span for a
  repartition record), from the read of the batch that brought the record to its hand-over to the producer.
  Attributes: the messaging conventions' (``messaging.system``, ``messaging.operation.type`` "process",
  ``messaging.destination.name``, ``messaging.destination.partition.id``, ``messaging.kafka.offset``,
  ``messaging.consumer.group.name``, ``messaging.kafka.message.key``), ``login.stage``, the topic the
  produced record goes to (``login.output.topic``: output, repartition or dead-letter topic), the time the
  record waited in its topic (``login.queued_ms``: the read's time less the record's Kafka timestamp), and
  the stage's verdicts on this event (``login.risk.score``, ``login.risk.level``, ``login.reasons``,
  ``login.detections``; the network stage's ``login.network`` and its detector's verdict). Its context is
  what the produced record (output, repartition or dead letter) carries on, so the next hop, and
  ``replay-dlq``, continue from it. A dead-lettered event's span has status ERROR with the dead letter's
  ``error.type`` and an ``exception`` event with the detail.

An event whose trace is not sampled gets no span and costs no OpenTelemetry call: the decision is read
from the ``traceparent``'s flags (``login_common.tracing``: parent-based sampling, the producer's flag
decides) while the user stage's processor reads the headers anyway (``Processor.trace_fast``, set with
the stage's tracer), and its context goes on as it came: the input's ``traceparent`` (and ``tracestate``)
copied to the output or repartition record, the dead letter keeping the input's headers, so a later hop and
``replay-dlq`` see the same trace id and the same decision. Only the events the fast path leaves (sampled,
or a context it does not read: ``incoming``) reach this module, by index (``traced``), and the user stage
marks them in the route's flags (``ROUTE_TRACED``), so that the network stage hands this module only those
too. An input without a trace context (a producer without tracing), or with an invalid one, starts a trace
here: the sampler (``OTEL_TRACES_SAMPLER``) decides as for a root span. A sampler that does not follow the
parent's flag (``always_on``, ``traceidratio``: ``follows_parent``) sends every event through the SDK.

Log lines of a sampled event (``event.flagged``, ``event.dead_lettered``) name its span's ``trace_id`` and
``span_id`` directly, not through the current context: no per-event attach and detach.

Batching: one span per sampled event and stage, not one span per batch with a link per event. Both were
measured (``python -m login_bench.tracing --spans``: the user stage on 5,000-event batches, each way
with its own stage and tracer provider, the export flushed inside its time; bench/results/tracing-spans.md).
On this shared 2-core machine (load 6-12) one SDK span costs 20-60 us: at 100 % sampling per-event spans
cost several times the stage, per-batch spans with links about 2x; at 1 % the two differ by less than the
measurement's noise. Per event was chosen anyway, for what tracing is for: the event's own trace shows its
whole path producer -> user stage -> network stage with its own verdicts and error, opened by the trace id
its output record carries, where a batch span lives in a trace of its own that a backend shows only by
following links (Jaeger's API returns links as references into other traces), and the next hop would
continue the batch's trace, not the event's. At 100 % (a local run, a debugging session) it is the price
of complete traces, and ``make bench-tracing`` states it.

One span per stage, not the chain of three (``receive``, ``process``, ``send``) the stages had before (the
project's decision, issue 22): the issue asks that each stage "add a span (consume -> process -> produce)
linked to the event's trace", and the chain's six spans per sampled event cost about 1.2 million
instructions (an SDK span ~122,000, each attribute ~7,000 more), five events' worth of the consumer, which
alone put 1 % sampling at 1.073x the consumer's instructions against the issue's 1.05x target. Given up:
the separate receive span (the time an event waited in its topic is now ``login.queued_ms`` on the process
span, not a span of its own in the trace's timeline) and the send span (the produced record carries the
process span's context; the hand-over to the producer is the process span's end, and the topic it went to
is ``login.output.topic``). Measured in instructions (docs/observability.md, "Cost";
bench/results/tracing-spans-instructions.md; both stages, 5,000-event batches): at 1 % the stages now cost
1.047x tracing off (a sampled event ~700,000 instructions over an unsampled one: two spans, 31
attributes), the chain measured beside it 1.068x (the bench's ``ThreeSpansPerStage``), unsampled only
1.016x: the 1.05x target is met in instructions, in process, with a no-op exporter, by 0.3 points; the
OTLP export of each span comes on top in the real consumer's exporter thread (two spans per sampled event
now, not six).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import structlog
from confluent_kafka import Message

from login_common.tracing import (
    context_headers,
    follows_parent,
    forwardable,
    incoming,
    replace_context,
)
from login_consumer.records import Header, Record
from login_consumer.validate import Invalid

log = structlog.get_logger("login_consumer")

Output = tuple[Message, bytes, bytes, list[Header]]  # process.Output: (source message, key, value, headers)


class StageTracer:
    """Spans of the user and network stages (see the module doc); built only when tracing is on."""

    def __init__(self, tracer: Any, *, group: str, dlq_topic: str) -> None:
        from opentelemetry import trace

        self.tracer = tracer
        self.group = group
        self.dlq_topic = dlq_topic
        # the SDK's Tracer keeps its sampler as ``sampler`` (opentelemetry-sdk 1.45.2, sdk/trace/__init__.py)
        self.follows_parent = follows_parent(getattr(tracer, "sampler", None))
        # the fast path (``forwardable``) decides an unsampled event only under such a sampler: the user
        # stage's processor inlines it (``Processor.trace_fast``)
        self._trace = trace
        self._consumer = trace.SpanKind.CONSUMER

    # ------------------------------------------------------------------ the stages

    def user_stage(
        self,
        outputs: Sequence[Output],
        records: Sequence[Record],
        dead: list[tuple[Message, Invalid]],
        traced: Sequence[int],
        docs: Sequence[Mapping[str, Any]],
        *,
        started_ns: int,
    ) -> None:
        """After the user stage: the events the fast path left (``traced``: indexes into ``outputs`` and
        ``records``, one record per output, to the output or the repartition topic; ``docs``: their
        documents as serialized, ``BatchResult.traced_docs``) get their span or their context; ``dead``
        entries of sampled events get their span's context (``Invalid.trace``)."""
        ended_ns = time.time_ns()
        for at, doc in zip(traced, docs, strict=True):
            msg = outputs[at][0]
            record = records[at]
            ctx, came = incoming(msg.headers(), follows_parent=self.follows_parent)
            if ctx is None:  # not sampled: the context goes on as it came
                record[4].extend(came)
                continue
            verdicts = _user_verdicts(doc)
            span = self._start(msg, ctx, "user", verdicts, started_ns=started_ns, to=record[0])
            if not span.is_recording():  # the sampler said no: the input's context, or the new trace's
                record[4].extend(came or context_headers(span))
                continue
            replace_context(record[4], self._carried(span, record[0], ended_ns))
            if verdicts.get("login.risk.level") == "high" or verdicts.get("login.detections"):
                log.info(
                    "event.flagged",
                    stage="user",
                    **_where(msg),
                    reasons=verdicts["login.reasons"],
                    **_ids(span),
                )
            span.end(ended_ns)
        self._dead(dead, "user", started_ns, ended_ns)

    def network_stage(
        self,
        held: Sequence[Any],
        found: Mapping[int, Any],
        traced: Sequence[int],
        dead: list[tuple[Message, Invalid]],
        *,
        output_topic: str,
        started_ns: int,
    ) -> None:
        """After the network stage's completion: ``held`` (stages/network.Held, in the order they were
        completed), the detector's verdicts by index, the indexes of those the user stage marked
        (``ROUTE_TRACED``) and the stage's dead letters. An output record's headers are its Held's
        ``headers`` (the same list), so the span's context is written there."""
        ended_ns = time.time_ns()
        dead_ids = {id(msg) for msg, _ in dead}
        for i in traced:
            item = held[i]
            msg = item.msg
            if dead_ids and id(msg) in dead_ids:
                continue
            ctx, came = incoming(item.headers, follows_parent=self.follows_parent)
            if ctx is None:  # not sampled: the record's headers carry the context on, as they came
                continue
            det = found.get(i)
            span = self._start(
                msg,
                ctx,
                "network",
                {
                    "login.network": (msg.key() or b"").decode("utf-8", "replace"),
                    "login.network.detection": det.detector if det is not None else "none",
                    "login.network.risk": det.risk if det is not None else 0,
                    "login.network.accounts": det.count if det is not None else 0,
                    "login.risk.score.user_stage": item.score,
                },
                started_ns=started_ns,
                to=output_topic,
            )
            if not span.is_recording():
                if not came:
                    replace_context(item.headers, context_headers(span))
                continue
            replace_context(item.headers, self._carried(span, output_topic, ended_ns))
            if det is not None:
                log.info("event.flagged", stage="network", **_where(msg), detector=det.detector, **_ids(span))
            span.end(ended_ns)
        self._dead(dead, "network", started_ns, ended_ns)

    # ------------------------------------------------------------------ the span

    def _start(
        self, msg: Message, ctx: Any, stage: str, attributes: dict[str, Any], *, started_ns: int, to: str
    ) -> Any:
        """The stage's span for one event (open; it may not record: the sampler decides): ``process
        <topic>``, kind CONSUMER (OpenTelemetry's messaging conventions: a process span is a consumer's),
        child of the upstream record's context ``ctx``, from the read of the batch (``started_ns``). Its
        attributes, given at its start (one pass of the SDK's checks, not one per ``set_attribute``; each
        costs ~7,000 instructions): the messaging conventions' for the record it processes, the stage, the
        topic its context goes on to (``to``, as ``login.output.topic``: output, repartition or dead-letter),
        the time the record waited in the topic before the read (``login.queued_ms``: the read's time less
        the record's Kafka timestamp; left out when the record has none), then the stage's ``attributes``."""
        topic = msg.topic() or ""
        span_attributes = record_attributes(msg, self.group, "process")
        span_attributes["login.stage"] = stage
        span_attributes["login.output.topic"] = to
        kind, created_ms = msg.timestamp()
        if kind and 0 < created_ms * 1_000_000 <= started_ns:
            span_attributes["login.queued_ms"] = started_ns // 1_000_000 - created_ms
        span_attributes.update(attributes)
        return self.tracer.start_span(
            f"process {topic}",
            context=ctx,
            kind=self._consumer,
            start_time=started_ns,
            attributes=span_attributes,
        )

    def _carried(self, span: Any, destination: str, ended_ns: int) -> list[Header]:
        """The context the record ``span``'s stage produces to ``destination`` carries on: the span's own
        (one span per stage; the bench's ``ThreeSpansPerStage`` puts a send span here instead)."""
        return context_headers(span)

    def _dead(self, dead: list[tuple[Message, Invalid]], stage: str, started_ns: int, ended_ns: int) -> None:
        """Spans of sampled dead letters: the stage's span in error, whose context the dead letter carries
        (``Invalid.trace``, used by delivery/sender.dlq_headers). An unsampled letter keeps the input's
        headers, its context with them."""
        trace = self._trace
        for at, (msg, why) in enumerate(dead):
            headers = msg.headers()
            if self.follows_parent and forwardable(headers) is not None:
                continue
            ctx, _came = incoming(headers, follows_parent=self.follows_parent)
            if ctx is None:
                continue
            error = {"error.type": why.error_type}
            span = self._start(msg, ctx, stage, error, started_ns=started_ns, to=self.dlq_topic)
            if not span.is_recording():
                continue
            span.add_event(
                "exception", {"exception.type": why.error_type, "exception.message": why.detail[:500]}
            )
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{why.error_type}: {why.detail[:200]}"))
            dead[at] = (msg, replace(why, trace=tuple(self._carried(span, self.dlq_topic, ended_ns))))
            log.info(
                "event.dead_lettered", stage=stage, **_where(msg), error_type=why.error_type, **_ids(span)
            )
            span.end(ended_ns)


def trace_replay(tracer: Any, msg: Message, headers: list[Header], *, target: str, error_type: str) -> None:
    """``replay-dlq``: a ``send <target>`` span for a dead letter whose trace is sampled, child of the
    letter's context, which the replayed record then carries (``headers``, changed in place). A letter
    whose context is not sampled, or that has none, is replayed with its headers as they are."""
    from opentelemetry import trace

    ctx, came = incoming(msg.headers(), follows_parent=follows_parent(getattr(tracer, "sampler", None)))
    if ctx is None or not came:
        return
    span = tracer.start_span(
        f"send {target}",
        context=ctx,
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": target,
            "login.replay.from": f"{msg.topic()}:{msg.partition()}:{msg.offset()}",
            "login.replay.error_type": error_type,
        },
    )
    if not span.is_recording():
        return
    replace_context(headers, context_headers(span))
    log.info("event.replayed", **_where(msg), target=target, error_type=error_type, **_ids(span))
    span.end()


def record_attributes(msg: Message, group: str, operation: str) -> dict[str, Any]:
    """OpenTelemetry's messaging attributes of a consumed record (``operation``: "process", "receive")."""
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.destination.name": msg.topic() or "",
        "messaging.destination.partition.id": str(msg.partition()),
        "messaging.kafka.offset": msg.offset() or 0,
        "messaging.consumer.group.name": group,
        "messaging.kafka.message.key": (msg.key() or b"").decode("utf-8", "replace"),
    }


def _ids(span: Any) -> dict[str, str]:
    """``trace_id`` and ``span_id`` of a span for its log line (hex, as Jaeger shows them; the same keys
    ``login_common.tracing.add_trace_ids`` writes)."""
    ctx = span.get_span_context()
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


def _where(msg: Message) -> dict[str, Any]:
    return {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}


def _user_verdicts(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The user stage's verdicts on one event, from its output document (sampled events only)."""
    try:
        return {
            "login.event_id": str(doc.get("event_id", "")),
            "login.outcome": str(doc.get("outcome", "")),
            "login.risk.score": int(doc.get("risk_score", 0)),
            "login.risk.level": str(doc.get("risk_level", "")),
            "login.reasons": [str(r) for r in doc.get("reasons", [])],
            "login.detections": [str(d.get("detector", "")) for d in doc.get("detections", [])],
        }
    except (AttributeError, TypeError, ValueError):
        return {}
