"""W3C trace context in Kafka headers (login_common.tracing), the stages' spans (login_consumer.tracing) and
the producer's (login_producer.tracing),
with the real OpenTelemetry SDK and its in-memory exporter; no broker (tests/integration/test_tracing.py
reads whole traces back from a real Jaeger)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest
from confluent_kafka import Message
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

from login_common.settings import load_settings
from login_common.tracing import (
    TRACEPARENT,
    TRACESTATE,
    PresetIds,
    Tracing,
    TracingError,
    context_headers,
    exporters_from_env,
    is_sampled,
    parent_context,
    read_context,
    replace_context,
)
from login_consumer.config import ConsumerSettings
from login_consumer.delivery.sender import dlq_headers
from login_consumer.process import Processor
from login_consumer.stages.user import ROUTE_HEADER, UserStage
from login_consumer.tracing import StageTracer, trace_replay
from login_producer.simulate import SimEvent
from login_producer.tracing import EventTracer

SAMPLED = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = b"00-0af7651916cd43dd8448eb211c80319d-b7ad6b7169203332-00"


@pytest.fixture
def spans() -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


# --- the switch -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_tracing_is_off_unless_an_exporter_is_named(env: dict[str, str], expected: list[str]) -> None:
    assert exporters_from_env(env) == expected


def test_an_unknown_exporter_is_a_clear_error() -> None:
    with pytest.raises(TracingError, match=r"unknown exporter.*zipkin"):
        exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


# --- headers ----------------------------------------------------------------------------------------


def test_read_context_takes_the_last_value_of_each_header_from_any_header_form() -> None:
    assert read_context(None) == (None, None)
    assert read_context([("a", b"x")]) == (None, None)
    listed = [(TRACEPARENT, UNSAMPLED), ("x", b"1"), (TRACEPARENT, SAMPLED), (TRACESTATE, "k=v")]
    assert read_context(listed) == (SAMPLED, b"k=v")
    assert read_context({TRACEPARENT: SAMPLED}) == (SAMPLED, None)


def test_the_sampled_flag_is_read_from_the_traceparent() -> None:
    assert is_sampled(SAMPLED)
    assert not is_sampled(UNSAMPLED)
    assert not is_sampled(None)
    assert not is_sampled(b"garbage")
    assert not is_sampled(SAMPLED[:-2] + b"zz")


def test_context_survives_a_round_trip_through_kafka_headers(spans: tuple[Any, InMemorySpanExporter]) -> None:
    tracer, _ = spans
    parent = tracer.start_span("send user-login", context=parent_context(SAMPLED, b"vendor=abc"))
    headers = context_headers(parent)
    assert dict(headers)[TRACESTATE] == b"vendor=abc"  # tracestate travels on unchanged
    child = tracer.start_span("receive", context=parent_context(*read_context(headers)))
    assert child.get_span_context().trace_id == int(SAMPLED[3:35], 16)
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id
    assert is_sampled(dict(headers)[TRACEPARENT])  # type: ignore[arg-type]


def test_an_invalid_traceparent_starts_a_new_trace(spans: tuple[Any, InMemorySpanExporter]) -> None:
    tracer, _ = spans
    span = tracer.start_span("x", context=parent_context(b"00-zz-bad-01"))
    assert span.parent is None
    assert span.get_span_context().trace_id != 0


def test_replace_context_swaps_any_trace_headers_in_place() -> None:
    headers: list[tuple[str, Any]] = [
        ("a", b"1"),
        (TRACEPARENT, UNSAMPLED),
        (TRACESTATE, b"s=1"),
        ("b", b"2"),
    ]
    same = headers
    replace_context(headers, [(TRACEPARENT, SAMPLED)])
    assert same == [("a", b"1"), ("b", b"2"), (TRACEPARENT, SAMPLED)]


# --- the user stage ---------------------------------------------------------------------------------


def _event(user: str, **extra: Any) -> bytes:
    event = {"user_id": user, "ip": "81.2.69.142", "timestamp": int(time.time()), "outcome": "success"}
    return orjson.dumps({**event, **extra})


def _msg(offset: int, value: bytes, headers: list[tuple[str, Any]]) -> Message:
    now_ms = int(time.time() * 1000) - 50
    return Message(
        topic="user-login",
        partition=2,
        offset=offset,
        key=b"k",
        value=value,
        headers=headers,
        timestamp=(1, now_ms),
    )


def _stage(tracer: Any, repartition: str | None = None) -> UserStage:
    settings = load_settings(ConsumerSettings, metrics_port=0)
    stage = UserStage(Processor.from_settings(settings), output_topic="out", repartition_topic=repartition)
    stage.tracer = StageTracer(tracer, group="g", dlq_topic="dlq")
    return stage


def test_the_user_stage_continues_sampled_traces_and_forwards_the_others(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    stage = _stage(tracer)
    batch = [
        _msg(10, _event("u1"), [(TRACEPARENT, SAMPLED)]),
        _msg(11, _event("u2"), [(TRACEPARENT, UNSAMPLED), (TRACESTATE, b"s=1")]),
    ]
    result = stage.process(batch)
    sampled, unsampled = (dict(record[4]) for record in result.records)
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert set(finished) == {"receive user-login", "process user-login", "send out"}
    receive, process, send = (
        finished["receive user-login"],
        finished["process user-login"],
        finished["send out"],
    )
    assert (
        receive.context.trace_id
        == process.context.trace_id
        == send.context.trace_id
        == int(SAMPLED[3:35], 16)
    )
    assert receive.parent.span_id == int(SAMPLED[36:52], 16)
    assert process.parent.span_id == receive.context.span_id
    assert send.parent.span_id == process.context.span_id
    assert receive.kind == trace.SpanKind.CONSUMER
    assert send.kind == trace.SpanKind.PRODUCER
    assert receive.attributes["messaging.destination.name"] == "user-login"
    assert receive.attributes["messaging.destination.partition.id"] == "2"
    assert receive.attributes["messaging.kafka.offset"] == 10
    assert receive.attributes["messaging.consumer.group.name"] == "g"
    assert process.attributes["login.risk.level"] in ("low", "medium", "high")
    assert "login.risk.score" in process.attributes
    assert receive.start_time <= receive.end_time <= process.start_time <= process.end_time
    # the output carries the send span's context; the unsampled event's context goes on as it came
    assert sampled[TRACEPARENT] == b"00-%032x-%016x-01" % (send.context.trace_id, send.context.span_id)
    assert unsampled[TRACEPARENT] == UNSAMPLED
    assert unsampled[TRACESTATE] == b"s=1"


def test_the_repartition_record_carries_the_context_beside_its_route(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    stage = _stage(tracer, repartition="g-network-repartition")
    result = stage.process([_msg(5, _event("u1"), [(TRACEPARENT, SAMPLED)])])
    (record,) = result.records
    names = [h[0] for h in record[4]]
    assert record[0] == "g-network-repartition"
    assert ROUTE_HEADER in names
    assert names.count(TRACEPARENT) == 1
    send = next(s for s in exporter.get_finished_spans() if s.name.startswith("send"))
    assert send.name == "send g-network-repartition"
    assert dict(record[4])[TRACEPARENT].endswith(b"%016x-01" % send.context.span_id)


def test_a_dead_letter_shows_the_error_and_carries_its_own_context(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    stage = _stage(tracer)
    bad = _msg(7, b'{"user_id": 5}', [(TRACEPARENT, SAMPLED)])
    result = stage.process([bad])
    ((msg, why),) = result.batch.dead
    process = next(s for s in exporter.get_finished_spans() if s.name == "process user-login")
    assert process.status.status_code == trace.StatusCode.ERROR
    assert process.attributes["error.type"] == why.error_type
    assert [e.name for e in process.events] == ["exception"]
    send = next(s for s in exporter.get_finished_spans() if s.name == "send dlq")
    headers = dict(dlq_headers(msg, why, 0))
    assert headers[TRACEPARENT] == b"00-%032x-%016x-01" % (send.context.trace_id, send.context.span_id)


def test_an_event_without_context_starts_a_trace_the_sampler_decides(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    _, exporter = spans
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stage = _stage(provider.get_tracer("off"))
    result = stage.process([_msg(1, _event("u1"), [])])
    assert exporter.get_finished_spans() == ()
    parent = dict(result.records[0][4])[TRACEPARENT]
    assert not is_sampled(parent)  # type: ignore[arg-type] # the next hop sees the same decision


def test_replay_continues_a_sampled_dead_letter_and_leaves_the_others(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    letter = Message(topic="dlq", partition=0, offset=3, value=b"{}", headers=[(TRACEPARENT, SAMPLED)])
    headers: list[tuple[str, Any]] = [(TRACEPARENT, SAMPLED)]
    trace_replay(tracer, letter, headers, target="user-login", error_type="schema_invalid")
    (span,) = exporter.get_finished_spans()
    assert span.parent.span_id == int(SAMPLED[36:52], 16)
    assert span.attributes["login.replay.from"] == "dlq:0:3"
    assert headers == [(TRACEPARENT, b"00-%032x-%016x-01" % (span.context.trace_id, span.context.span_id))]
    unsampled: list[tuple[str, Any]] = [(TRACEPARENT, UNSAMPLED)]
    other = Message(topic="dlq", partition=0, offset=4, value=b"{}", headers=list(unsampled))
    trace_replay(tracer, other, unsampled, target="user-login", error_type="schema_invalid")
    assert unsampled == [(TRACEPARENT, UNSAMPLED)]


# --- the producer -----------------------------------------------------------------------------------


def _producer_tracing(ratio: float, exporter: InMemorySpanExporter) -> Tracing:
    ids = PresetIds()
    sampler = ParentBased(TraceIdRatioBased(ratio))
    provider = TracerProvider(sampler=sampler, id_generator=ids)  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider.get_tracer("p"), provider, "login-producer", sampler, ids)


def test_the_producer_starts_a_trace_per_event_and_ends_its_span_at_the_ack() -> None:
    exporter = InMemorySpanExporter()
    tracer = EventTracer(_producer_tracing(1.0, exporter), "user-login")
    sim = SimEvent(
        "u1", {"event_id": "e1", "outcome": "failure"}, scenario="brute_force", truth=("brute_force",)
    )
    headers: list[tuple[str, Any]] = [("x", b"1")]
    span = tracer.start(sim, headers)
    assert span is not None
    assert exporter.get_finished_spans() == ()  # open until the broker acknowledges
    acked = Message(topic="user-login", partition=3, offset=41, value=b"{}")
    tracer.delivered(span, None, acked)
    (done,) = exporter.get_finished_spans()
    assert done.parent is None
    assert done.kind == trace.SpanKind.PRODUCER
    assert done.attributes["messaging.destination.partition.id"] == "3"
    assert done.attributes["messaging.kafka.offset"] == 41
    assert done.attributes["login.scenario"] == "brute_force"
    context = done.context
    assert dict(headers)[TRACEPARENT] == b"00-%032x-%016x-%02x" % (
        context.trace_id,
        context.span_id,
        int(context.trace_flags),  # sampled, and (W3C level 2) a random trace id: 03
    )
    assert is_sampled(dict(headers)[TRACEPARENT])


def test_an_unsampled_event_gets_a_context_that_says_so_and_no_span() -> None:
    exporter = InMemorySpanExporter()
    tracer = EventTracer(_producer_tracing(0.0, exporter), "user-login")
    headers: list[tuple[str, Any]] = []
    assert tracer.start(SimEvent("u1", {"event_id": "e1"}), headers) is None
    ((name, value),) = headers
    assert name == TRACEPARENT
    assert re.fullmatch(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-00", value)
    assert exporter.get_finished_spans() == ()


def test_tracing_off_imports_no_sdk() -> None:
    """Off: setup_tracing returns None before any OpenTelemetry module is imported."""
    code = (
        "import sys; from login_common.tracing import setup_tracing; "
        "import login_consumer.cli, login_producer.cli; "
        "assert setup_tracing('x', '0') is None; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
