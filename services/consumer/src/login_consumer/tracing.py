"""The consumer's spans: each stage continues the event's trace (``login_common.tracing`` for the set-up and
the Kafka headers; docs/observability.md, "Tracing").

Per stage, for each event whose trace is sampled, three spans in a chain, each the parent of the next:

* ``receive <topic>`` (kind CONSUMER), child of the upstream record's span (the producer's ``send``, or the
  user stage's ``send`` to the repartition topic): from the record's Kafka timestamp to the read that
  handed it to the stage, i.e. the time it waited in the topic; attributes ``messaging.*`` (system,
  destination, partition, offset, consumer group, key);
* ``process <topic>`` (INTERNAL): the batch's processing, with the stage's verdicts on this event
  (``login.risk.score``, ``login.risk.level``, ``login.reasons``, ``login.detections``; the network stage's
  ``login.network`` and its detector's verdict); a dead-lettered event's span has status ERROR with the
  dead letter's ``error.type`` and detail, and an ``exception`` event;
* ``send <topic>`` (PRODUCER): the hand-over to the producer; its context is what the produced record
  (output, repartition or dead letter) carries on, so the next hop, and ``replay-dlq``, continue from it.

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

Log lines of a sampled event (``event.flagged``, ``event.dead_lettered``) name its process span's
``trace_id`` and ``span_id`` directly, not through the current context: no per-event attach and detach.

Batching: one span chain per sampled event, not one span per batch with a link per event. Both were
measured (``python -m login_bench.tracing --spans``: the user stage on 5,000-event batches, each way
with its own stage and tracer provider, the export flushed inside its time, the minimum of 40 rounds;
bench/results/tracing-spans.md). On this shared 2-core machine (load 6-12) one SDK span costs 20-60 us,
so: at 100 % sampling the per-event chains made the user stage 6.7-8.0x as costly as without tracing,
per-batch spans with links 1.7-1.9x; at 1 % the two differ by less than the measurement's noise (0.97 to
1.07x against 1.03 to 1.20x, over three runs). Per event was chosen anyway, for what tracing is for: the
event's own trace shows its whole path producer -> user stage -> network stage with its own verdicts and
error, opened by the trace id its output record carries, where a batch span lives in a trace of its
own that a backend shows only by following links (Jaeger's API returns links as references into other
traces), and the next hop would continue the batch's trace, not the event's. At the rate meant for
production (1 %) the choice costs nothing measurable over the alternative; at 100 % (a local run, a
debugging session) it is the price of complete traces, and ``make bench-tracing`` states it.
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
        self._producer = trace.SpanKind.PRODUCER

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
        documents as serialized, ``BatchResult.traced_docs``) get their spans or their context; ``dead``
        entries of sampled events get their send span's context (``Invalid.trace``)."""
        ended_ns = time.time_ns()
        for at, doc in zip(traced, docs, strict=True):
            msg = outputs[at][0]
            record = records[at]
            ctx, came = incoming(msg.headers(), follows_parent=self.follows_parent)
            if ctx is None:  # not sampled: the context goes on as it came
                record[4].extend(came)
                continue
            receive, recording = self._receive(msg, ctx, started_ns)
            if not recording:  # the sampler said no: the input's context, or the new trace's, goes on
                record[4].extend(came or context_headers(receive))
                continue
            verdicts = _user_verdicts(doc)
            process = self._process(receive, msg, "user", started_ns, verdicts)
            self._send(process, record[0], record[4], record[1], ended_ns)
            if verdicts.get("login.risk.level") == "high" or verdicts.get("login.detections"):
                log.info(
                    "event.flagged",
                    stage="user",
                    **_where(msg),
                    reasons=verdicts["login.reasons"],
                    **_ids(process),
                )
            process.end(ended_ns)
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
        ``headers`` (the same list), so a send span's context is written there."""
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
            receive, recording = self._receive(msg, ctx, started_ns)
            if not recording:
                if not came:
                    replace_context(item.headers, context_headers(receive))
                continue
            det = found.get(i)
            process = self._process(
                receive,
                msg,
                "network",
                started_ns,
                {
                    "login.network": (msg.key() or b"").decode("utf-8", "replace"),
                    "login.network.detection": det.detector if det is not None else "none",
                    "login.network.risk": det.risk if det is not None else 0,
                    "login.network.accounts": det.count if det is not None else 0,
                    "login.risk.score.user_stage": item.score,
                },
            )
            self._send(process, output_topic, item.headers, -1, ended_ns)
            if det is not None:
                log.info(
                    "event.flagged", stage="network", **_where(msg), detector=det.detector, **_ids(process)
                )
            process.end(ended_ns)
        self._dead(dead, "network", started_ns, ended_ns)

    # ------------------------------------------------------------------ spans

    def _receive(self, msg: Message, ctx: Any, started_ns: int) -> tuple[Any, bool]:
        """The receive span (ended: from the record's creation to the read), and whether it records. Its
        attributes are the messaging conventions' only (``login.stage`` is on its child, the process span:
        each attribute costs the SDK ~7,000 instructions, a twentieth of a span)."""
        topic = msg.topic() or ""
        kind, created_ms = msg.timestamp()
        start = created_ms * 1_000_000 if kind and 0 < created_ms * 1_000_000 <= started_ns else started_ns
        receive = self.tracer.start_span(
            f"receive {topic}",
            context=ctx,
            kind=self._consumer,
            start_time=start,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "receive",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(msg.partition()),
                "messaging.kafka.offset": msg.offset() or 0,
                "messaging.consumer.group.name": self.group,
                "messaging.kafka.message.key": (msg.key() or b"").decode("utf-8", "replace"),
            },
        )
        recording: bool = receive.is_recording()  # (False once ended)
        receive.end(started_ns)
        return receive, recording

    def _process(
        self, receive: Any, msg: Message, stage: str, started_ns: int, attributes: dict[str, Any]
    ) -> Any:
        """The process span (open), child of ``receive``, its attributes given at its start (one pass of
        the SDK's attribute checks, not one per ``set_attribute``)."""
        return self.tracer.start_span(
            f"process {msg.topic() or ''}",
            context=self._trace.set_span_in_context(receive),
            start_time=started_ns,
            attributes={"messaging.operation.type": "process", "login.stage": stage, **attributes},
        )

    def _send(
        self, process: Any, destination: str, headers: list[Header] | None, partition: int, ended_ns: int
    ) -> Any:
        """The send span (ended), child of ``process``; its context replaces any in ``headers``."""
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": destination,
        }
        if partition >= 0:
            attributes["messaging.destination.partition.id"] = str(partition)
        send = self.tracer.start_span(
            f"send {destination}",
            context=self._trace.set_span_in_context(process),
            kind=self._producer,
            start_time=ended_ns,
            attributes=attributes,
        )
        if headers is not None:
            replace_context(headers, context_headers(send))
        send.end()
        return send

    def _dead(self, dead: list[tuple[Message, Invalid]], stage: str, started_ns: int, ended_ns: int) -> None:
        """Spans of sampled dead letters: the process span in error, and the send to the DLQ, whose context
        the dead letter carries (``Invalid.trace``, used by delivery/sender.dlq_headers). An unsampled
        letter keeps the input's headers, its context with them."""
        trace = self._trace
        for at, (msg, why) in enumerate(dead):
            headers = msg.headers()
            if self.follows_parent and forwardable(headers) is not None:
                continue
            ctx, _came = incoming(headers, follows_parent=self.follows_parent)
            if ctx is None:
                continue
            receive, recording = self._receive(msg, ctx, started_ns)
            if not recording:
                continue
            process = self._process(receive, msg, stage, started_ns, {"error.type": why.error_type})
            process.add_event(
                "exception", {"exception.type": why.error_type, "exception.message": why.detail[:500]}
            )
            process.set_status(trace.Status(trace.StatusCode.ERROR, f"{why.error_type}: {why.detail[:200]}"))
            send = self._send(process, self.dlq_topic, None, -1, ended_ns)
            dead[at] = (msg, replace(why, trace=tuple(context_headers(send))))
            log.info(
                "event.dead_lettered", stage=stage, **_where(msg), error_type=why.error_type, **_ids(process)
            )
            process.end(ended_ns)


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
