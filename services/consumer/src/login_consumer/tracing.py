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

An event whose trace is not sampled gets no span, and its context goes on as it came (the input's
``traceparent``/``tracestate`` copied to the output or repartition record), so a later hop sees the same
decision. An input without a trace context (a producer without tracing) starts a trace here: the
sampler (``OTEL_TRACES_SAMPLER``) decides as for a root span.

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

import orjson
import structlog
from confluent_kafka import Message

from login_common.tracing import (
    SAMPLED_DIGITS,
    TRACEPARENT,
    context_headers,
    is_sampled,
    parent_context,
    read_context,
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
        self._trace = trace

    # ------------------------------------------------------------------ the stages

    def user_stage(
        self,
        outputs: Sequence[Output],
        records: Sequence[Record],
        dead: list[tuple[Message, Invalid]],
        *,
        started_ns: int,
    ) -> None:
        """After the user stage: spans of its sampled events; every record carries its event's context.
        ``records`` are the outputs' records, one each, in order (to the output or the repartition
        topic); ``dead`` entries of sampled events get their send span's context (``Invalid.trace``)."""
        ended_ns = time.time_ns()
        sampled_digits = SAMPLED_DIGITS
        for (msg, _key, value, _headers), record in zip(outputs, records, strict=True):
            raw = msg.headers()
            if raw and isinstance(raw, list):  # the 99 % at 1 %, inline (unsampled_tail): forwarded as is
                last = raw[-1]
                if last[0] == TRACEPARENT and type(last[1]) is bytes and last[1][54:55] not in sampled_digits:
                    record[4].append(last)
                    continue
            parent, state = read_context(raw)
            if parent is not None and not is_sampled(parent):
                record[4].extend(_forward(parent, state))
                continue
            receive, process = self._receive_process(
                msg, parent, state, stage="user", started_ns=started_ns, ended_ns=ended_ns
            )
            if process is None:  # a new trace, not sampled: its context goes on, flagged so
                record[4].extend(context_headers(receive))
                continue
            verdicts = _user_verdicts(value)
            process.set_attributes(verdicts)
            self._send(process, record, ended_ns)
            if verdicts.get("login.risk.level") == "high" or verdicts.get("login.detections"):
                with self._trace.use_span(process, end_on_exit=False):
                    log.info("event.flagged", stage="user", **_where(msg), reasons=verdicts["login.reasons"])
            process.end(ended_ns)
        self._dead(dead, "user", started_ns, ended_ns)

    def network_stage(
        self,
        held: Sequence[Any],
        found: Mapping[int, Any],
        records: Sequence[Record],
        dead: list[tuple[Message, Invalid]],
        *,
        started_ns: int,
    ) -> None:
        """After the network stage's completion: ``held`` (stages/network.Held, in the order they were
        completed), the detector's verdicts by index, the output records of those not dead-lettered (in
        the same order) and the stage's dead letters."""
        ended_ns = time.time_ns()
        dead_ids = {id(msg) for msg, _ in dead}
        sampled_digits = SAMPLED_DIGITS
        out = iter(records)
        for i, item in enumerate(held):
            msg = item.msg
            if dead_ids and id(msg) in dead_ids:
                continue
            record = next(out)
            headers = item.headers
            if headers:  # the record's headers carry the user stage's context on, as they came
                last = headers[-1]
                if last[0] == TRACEPARENT and type(last[1]) is bytes and last[1][54:55] not in sampled_digits:
                    continue
            parent, state = read_context(headers)
            if parent is not None and not is_sampled(parent):
                continue  # the record's headers carry the user stage's context on, as they came
            process = self._receive_process(
                msg, parent, state, stage="network", started_ns=started_ns, ended_ns=ended_ns
            )[1]
            if process is None:
                continue
            det = found.get(i)
            process.set_attributes(
                {
                    "login.network": (msg.key() or b"").decode("utf-8", "replace"),
                    "login.network.detection": det.detector if det is not None else "none",
                    "login.network.risk": det.risk if det is not None else 0,
                    "login.network.accounts": det.count if det is not None else 0,
                    "login.risk.score.user_stage": item.score,
                }
            )
            self._send(process, record, ended_ns)
            if det is not None:
                with self._trace.use_span(process, end_on_exit=False):
                    log.info("event.flagged", stage="network", **_where(msg), detector=det.detector)
            process.end(ended_ns)
        self._dead(dead, "network", started_ns, ended_ns)

    # ------------------------------------------------------------------ spans

    def _receive_process(
        self,
        msg: Message,
        parent: bytes | None,
        state: bytes | None,
        *,
        stage: str,
        started_ns: int,
        ended_ns: int,
    ) -> tuple[Any, Any | None]:
        """The receive span (ended) and the process span (open, None when the trace is not sampled)."""
        trace = self._trace
        topic = msg.topic() or ""
        kind, created_ms = msg.timestamp()
        start = created_ms * 1_000_000 if kind and 0 < created_ms * 1_000_000 <= started_ns else started_ns
        receive = self.tracer.start_span(
            f"receive {topic}",
            context=parent_context(parent, state),
            kind=trace.SpanKind.CONSUMER,
            start_time=start,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "receive",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(msg.partition()),
                "messaging.kafka.offset": msg.offset() or 0,
                "messaging.consumer.group.name": self.group,
                "messaging.kafka.message.key": (msg.key() or b"").decode("utf-8", "replace"),
                "login.stage": stage,
            },
        )
        recording = receive.is_recording()  # (False once ended)
        receive.end(started_ns)
        if not recording:
            return receive, None
        return receive, self.tracer.start_span(
            f"process {topic}",
            context=trace.set_span_in_context(receive),
            start_time=started_ns,
            attributes={"messaging.operation.type": "process", "login.stage": stage},
        )

    def _send(self, process: Any, record: Record | None, ended_ns: int, topic: str | None = None) -> Any:
        trace = self._trace
        destination = topic if topic is not None else record[0] if record is not None else ""
        send = self.tracer.start_span(
            f"send {destination}",
            context=trace.set_span_in_context(process),
            kind=trace.SpanKind.PRODUCER,
            start_time=ended_ns,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": destination,
            },
        )
        if record is not None:
            if record[1] >= 0:
                send.set_attribute("messaging.destination.partition.id", str(record[1]))
            replace_context(record[4], context_headers(send))
        send.end()
        return send

    def _dead(self, dead: list[tuple[Message, Invalid]], stage: str, started_ns: int, ended_ns: int) -> None:
        """Spans of sampled dead letters: the process span in error, and the send to the DLQ, whose context
        the dead letter carries (``Invalid.trace``, used by delivery/sender.dlq_headers)."""
        for at, (msg, why) in enumerate(dead):
            parent, state = read_context(msg.headers())
            if parent is not None and not is_sampled(parent):
                continue  # the dead letter keeps the input's headers, its context with them
            process = self._receive_process(
                msg, parent, state, stage=stage, started_ns=started_ns, ended_ns=ended_ns
            )[1]
            if process is None:
                continue
            trace = self._trace
            process.set_attribute("error.type", why.error_type)
            process.add_event(
                "exception", {"exception.type": why.error_type, "exception.message": why.detail[:500]}
            )
            process.set_status(trace.Status(trace.StatusCode.ERROR, f"{why.error_type}: {why.detail[:200]}"))
            send = self._send(process, None, ended_ns, topic=self.dlq_topic)
            dead[at] = (msg, replace(why, trace=tuple(context_headers(send))))
            with trace.use_span(process, end_on_exit=False):
                log.info("event.dead_lettered", stage=stage, **_where(msg), error_type=why.error_type)
            process.end(ended_ns)


def trace_replay(tracer: Any, msg: Message, headers: list[Header], *, target: str, error_type: str) -> None:
    """``replay-dlq``: a ``send <target>`` span for a dead letter whose trace is sampled, child of the
    letter's context, which the replayed record then carries (``headers``, changed in place)."""
    from opentelemetry import trace

    parent, state = read_context(msg.headers())
    if parent is None or not is_sampled(parent):
        return
    span = tracer.start_span(
        f"send {target}",
        context=parent_context(parent, state),
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": target,
            "login.replay.from": f"{msg.topic()}:{msg.partition()}:{msg.offset()}",
            "login.replay.error_type": error_type,
        },
    )
    replace_context(headers, context_headers(span))
    with trace.use_span(span, end_on_exit=True):
        log.info("event.replayed", **_where(msg), target=target, error_type=error_type)


def _forward(parent: bytes, state: bytes | None) -> list[Header]:
    """An unsampled event's context, as it came."""
    return [("traceparent", parent)] if state is None else [("traceparent", parent), ("tracestate", state)]


def _where(msg: Message) -> dict[str, Any]:
    return {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}


def _user_verdicts(value: bytes) -> dict[str, Any]:
    """The user stage's verdicts on one event, from its output document (sampled events only)."""
    try:
        doc = orjson.loads(value)
        return {
            "login.event_id": str(doc.get("event_id", "")),
            "login.outcome": str(doc.get("outcome", "")),
            "login.risk.score": int(doc.get("risk_score", 0)),
            "login.risk.level": str(doc.get("risk_level", "")),
            "login.reasons": [str(r) for r in doc.get("reasons", [])],
            "login.detections": [str(d.get("detector", "")) for d in doc.get("detections", [])],
        }
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return {}
