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
import structlog
import structlog.testing
from confluent_kafka import Message
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    TraceIdRatioBased,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from login_common.settings import load_settings
from login_common.tracing import (
    TRACEPARENT,
    TRACESTATE,
    PresetIds,
    Tracing,
    TracingError,
    context_headers,
    exporters_from_env,
    follows_parent,
    forwardable,
    incoming,
    is_sampled,
    parent_context,
    read_context,
    replace_context,
    setup_tracing,
)
from login_consumer.config import ConsumerSettings
from login_consumer.delivery.sender import dlq_headers
from login_consumer.process import ROUTE_TRACED, Processor
from login_consumer.stages.network import read_route
from login_consumer.stages.user import ROUTE_HEADER, UserStage
from login_consumer.tracing import StageTracer, trace_replay
from login_consumer.wiring import build_detectors, build_network_detector, build_stages
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


# --- what the stages read without the SDK, pinned against the SDK (opentelemetry-api/-sdk 1.45.2) -----------

RANDOM_UNSAMPLED = UNSAMPLED[:-2] + b"02"  # W3C level 2's random-trace-id flag, not sampled
TRACEPARENTS = [
    SAMPLED,
    UNSAMPLED,
    RANDOM_UNSAMPLED,
    SAMPLED[:-2] + b"03",
    SAMPLED[:-2] + b"ff",
    UNSAMPLED[:-2] + b"fe",
    b"00-00000000000000000000000000000000-b7ad6b7169203331-00",  # trace id all zeros
    b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # parent id all zeros
    b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-00",  # uppercase
    UNSAMPLED[:-2] + b"0A",
    b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",  # version ff
    b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-later",  # a later version, longer
    b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    UNSAMPLED + b"-more",  # version 00 is exactly 55 characters
    b" " + SAMPLED,  # leading whitespace: the SDK accepts it
    UNSAMPLED + b"\t",
    UNSAMPLED[:-1],
    b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
    b"garbage",
]


@pytest.mark.parametrize("value", TRACEPARENTS)
def test_a_traceparent_is_read_as_the_sdk_propagator_reads_it(value: bytes) -> None:
    """What the stages decide from the header's bytes (``forwardable``, ``incoming``, ``is_sampled``) is what
    opentelemetry-api 1.45.2's TraceContextTextMapPropagator.extract (opentelemetry/trace/propagation/
    tracecontext.py: the W3C grammar, version ff and all-zero ids invalid, version 00 exactly 55
    characters) reads: the same span context, and "no span, forward as it came" exactly for a valid one
    without the sampled flag; the fast path takes only canonical ones."""
    carrier = {TRACEPARENT: value.decode()}
    expected = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()
    headers: list[tuple[str, Any]] = [("x", b"1"), (TRACEPARENT, value)]
    ctx, came = incoming(headers)
    unsampled = expected.is_valid and not expected.trace_flags.sampled
    assert (ctx is None) == unsampled
    assert forwardable(headers) is None or unsampled
    assert is_sampled(value) == (expected.is_valid and expected.trace_flags.sampled)
    assert came == ([(TRACEPARENT, value)] if expected.is_valid else [])
    if ctx is not None:
        got = trace.get_current_span(ctx).get_span_context()
        assert (got.is_valid, got.trace_id, got.span_id, got.trace_flags, got.is_remote) == (
            expected.is_valid,
            expected.trace_id,
            expected.span_id,
            expected.trace_flags,
            expected.is_remote,
        )


@pytest.mark.parametrize("flags", [b"00", b"02", b"fe"])
def test_a_canonical_unsampled_context_takes_the_fast_path_whole(flags: bytes) -> None:
    value = UNSAMPLED[:-2] + flags
    headers: list[tuple[str, Any]] = [("x-correlation-id", b"c"), (TRACEPARENT, value)]
    assert forwardable(headers) == (TRACEPARENT, value)
    # not when a tracestate travels with it, wherever it is (the whole context goes on: incoming), nor
    # when the traceparent is not the last header, nor when sampled
    assert forwardable([(TRACESTATE, b"k=v"), *headers]) is None
    assert incoming([(TRACESTATE, b"k=v"), *headers]) == (None, [(TRACEPARENT, value), (TRACESTATE, b"k=v")])
    assert forwardable([*headers, ("x", b"1")]) is None
    assert forwardable([(TRACEPARENT, SAMPLED)]) is None
    assert forwardable(None) is None
    assert forwardable({TRACEPARENT: value}) is None


def _header_cases() -> list[Any]:
    """Header lists around every ``TRACEPARENTS`` value: alone, last after others, not last, with a
    ``tracestate`` before or after it, a str value; and no headers at all."""
    cases: list[Any] = [None, [], [("x-correlation-id", b"c")], [(TRACEPARENT, UNSAMPLED.decode())]]
    for value in TRACEPARENTS:
        cases += [
            [(TRACEPARENT, value)],
            [("x-correlation-id", b"c"), ("x", b"1"), (TRACEPARENT, value)],
            [(TRACEPARENT, value), ("x", b"1")],
            [(TRACESTATE, b"k=v"), (TRACEPARENT, value)],
            [(TRACEPARENT, value), (TRACESTATE, b"k=v")],
        ]
    return cases


@pytest.mark.parametrize("headers", _header_cases())
def test_the_processors_inline_check_is_forwardable(
    headers: list[tuple[str, Any]] | None, spans: tuple[Any, InMemorySpanExporter]
) -> None:
    """The user stage's processor inlines ``forwardable`` (Processor.trace_fast, no call per event): the
    same decision for every header list, the same header carried on, the others left to the tracer."""
    tracer, _ = spans
    stage = _stage(tracer, repartition="g-network-repartition")
    result = stage.process([_msg(9, _event("u1"), [] if headers is None else list(headers))])
    ((_source, _key, _value, out),) = result.batch.outputs
    fast = forwardable(headers)
    assert (result.batch.traced == []) == (fast is not None)
    assert bool(_route_flags(result.records[0]) & ROUTE_TRACED) == (fast is None)
    if fast is not None:
        assert out[-1] is fast  # as it came: the same header, nothing rebuilt
    assert stage.processor.trace_fast is True


def test_a_sampler_that_decides_for_itself_sends_every_event_to_the_tracer() -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    stage = _stage(provider.get_tracer("always-off"))
    assert stage.processor.trace_fast is False
    result = stage.process([_msg(9, _event("u1"), [(TRACEPARENT, UNSAMPLED)])])
    assert result.batch.traced == [0]
    assert dict(result.records[0][4])[TRACEPARENT] == UNSAMPLED  # not recorded: the context goes on


@pytest.mark.parametrize(
    ("sampler", "follows"),
    [
        (ParentBased(ALWAYS_ON), True),
        (ParentBased(ALWAYS_OFF), True),
        (ParentBasedTraceIdRatio(0.01), True),
        (ParentBasedTraceIdRatio(1.0), True),
        (ALWAYS_ON, False),
        (ALWAYS_OFF, False),
        (TraceIdRatioBased(0.5), False),
        (ParentBased(ALWAYS_ON, remote_parent_not_sampled=TraceIdRatioBased(0.5)), False),
        (ParentBased(ALWAYS_ON, remote_parent_sampled=TraceIdRatioBased(0.999)), False),
        (ParentBased(ALWAYS_ON, remote_parent_sampled=ALWAYS_OFF), False),
        (None, False),
    ],
)
def test_the_header_decides_only_under_a_sampler_that_follows_the_parents_flag(
    sampler: Any, follows: bool
) -> None:
    assert follows_parent(sampler) is follows


@pytest.mark.parametrize(
    ("name", "follows"),
    [
        (None, True),
        ("parentbased_always_on", True),
        ("parentbased_always_off", True),
        ("parentbased_traceidratio", True),
        ("always_on", False),
        ("traceidratio", False),
    ],
)
def test_the_sdks_samplers_by_name(name: str | None, follows: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """opentelemetry-sdk 1.45.2 (sdk/trace/sampling.py, _KNOWN_SAMPLERS): the ``parentbased_*`` samplers,
    and the default, are ParentBased with remote delegates ALWAYS_ON and ALWAYS_OFF; its Tracer keeps the
    sampler as ``sampler`` (sdk/trace/__init__.py), which StageTracer asks."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.01")
    if name is None:
        monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    else:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
    tracing = setup_tracing("t", "0")
    assert tracing is not None
    try:
        assert tracing.tracer.sampler is tracing.sampler
        assert StageTracer(tracing.tracer, group="g", dlq_topic="d").follows_parent is follows
    finally:
        tracing.shutdown()


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
    before_ns = time.time_ns()
    result = stage.process(batch)
    sampled, unsampled = (dict(record[4]) for record in result.records)
    # one span per stage and sampled event: no receive, no send span
    (process,) = exporter.get_finished_spans()
    assert process.name == "process user-login"
    assert process.context.trace_id == int(SAMPLED[3:35], 16)
    assert process.parent.span_id == int(SAMPLED[36:52], 16)  # the producer's send span
    assert process.kind == trace.SpanKind.CONSUMER
    assert process.attributes["messaging.system"] == "kafka"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.destination.name"] == "user-login"
    assert process.attributes["messaging.destination.partition.id"] == "2"
    assert process.attributes["messaging.kafka.offset"] == 10
    assert process.attributes["messaging.consumer.group.name"] == "g"
    assert process.attributes["messaging.kafka.message.key"] == "k"
    assert process.attributes["login.stage"] == "user"
    assert process.attributes["login.output.topic"] == "out"
    # the time the record waited in the topic: the read less its Kafka timestamp (_msg: 50 ms before now)
    created_ms = batch[0].timestamp()[1]
    assert process.attributes["login.queued_ms"] == process.start_time // 1_000_000 - created_ms >= 50
    assert before_ns <= process.start_time <= process.end_time <= time.time_ns()
    assert process.attributes["login.risk.level"] in ("low", "medium", "high")
    # the verdicts are the output's (taken from its document as serialized, not parsed back)
    output = orjson.loads(result.records[0][3])
    assert process.attributes["login.event_id"] == output["event_id"]
    assert process.attributes["login.risk.score"] == output["risk_score"]
    assert list(process.attributes["login.reasons"]) == output["reasons"]
    # the output carries the span's context; the unsampled event's context goes on as it came
    assert sampled[TRACEPARENT] == b"00-%032x-%016x-01" % (process.context.trace_id, process.context.span_id)
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
    (span,) = exporter.get_finished_spans()
    assert span.name == "process user-login"
    assert span.attributes["login.output.topic"] == "g-network-repartition"
    assert dict(record[4])[TRACEPARENT].endswith(b"%016x-01" % span.context.span_id)


def test_a_dead_letter_shows_the_error_and_carries_its_own_context(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    stage = _stage(tracer)
    bad = _msg(7, b'{"user_id": 5}', [(TRACEPARENT, SAMPLED)])
    result = stage.process([bad])
    ((msg, why),) = result.batch.dead
    (process,) = exporter.get_finished_spans()
    assert process.name == "process user-login"
    assert process.parent.span_id == int(SAMPLED[36:52], 16)
    assert process.status.status_code == trace.StatusCode.ERROR
    assert process.attributes["error.type"] == why.error_type
    assert process.attributes["login.output.topic"] == "dlq"
    assert process.attributes["messaging.kafka.offset"] == 7
    assert [e.name for e in process.events] == ["exception"]
    assert process.events[0].attributes["exception.type"] == why.error_type
    headers = dict(dlq_headers(msg, why, 0))
    assert headers[TRACEPARENT] == b"00-%032x-%016x-01" % (process.context.trace_id, process.context.span_id)


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


# --- both stages: what goes on, and what is recorded ---------------------------------------------------


def _both(tracer: Any) -> tuple[UserStage, Any]:
    """The user stage (every user detector) and the network stage, as the consumer wires them."""
    settings = load_settings(ConsumerSettings, metrics_port=0, state_changelog=False)
    processor = Processor.from_settings(settings, build_detectors(settings))
    user, network = build_stages(settings, processor, build_network_detector(settings))
    assert network is not None
    network.ordered = False  # complete at once (one writer)
    user.tracer = network.tracer = StageTracer(tracer, group="g", dlq_topic="dlq")
    return user, network


def _through(user: UserStage, network: Any, batch: list[Message]) -> tuple[list[Any], list[Any]]:
    """(repartition records, output records) of a batch through both stages."""
    hop = user.process(batch).records
    assert all(r[0].endswith("-network-repartition") for r in hop)
    stamp = (1, int(time.time() * 1000))
    messages = [
        Message(topic=r[0], partition=r[1], offset=i, key=r[2], value=r[3], headers=r[4], timestamp=stamp)
        for i, r in enumerate(hop)
    ]
    return hop, network.process(messages, flush=True).records


def _route_flags(record: Any) -> int:
    found = read_route(record[4])
    assert found is not None
    return int(found[1].split(b" ")[4])


def test_an_unsampled_event_crosses_both_stages_with_its_context_as_it_came_and_no_sdk_call(
    spans: tuple[Any, InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    tracer, exporter = spans

    def no_span(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("an unsampled event reached the SDK")

    monkeypatch.setattr(tracer, "start_span", no_span)
    user, network = _both(tracer)
    batch = [
        _msg(20 + n, _event(f"u{n}"), [("x-correlation-id", b"c%d" % n), (TRACEPARENT, RANDOM_UNSAMPLED)])
        for n in range(3)
    ]
    hop, outputs = _through(user, network, batch)
    assert [dict(r[4])[TRACEPARENT] for r in hop] == [RANDOM_UNSAMPLED] * 3
    assert not any(_route_flags(r) & ROUTE_TRACED for r in hop)  # the network stage does not look
    # same trace id, same parent id, flags (02: random trace id, not sampled) as they came
    assert [dict(r[4])[TRACEPARENT] for r in outputs] == [RANDOM_UNSAMPLED] * 3
    assert [[h[0] for h in r[4]].count(TRACEPARENT) for r in outputs] == [1, 1, 1]
    assert exporter.get_finished_spans() == ()


def test_a_sampled_event_gets_one_span_in_each_stage(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    user, network = _both(tracer)
    hop, (output,) = _through(user, network, [_msg(30, _event("u1"), [(TRACEPARENT, SAMPLED)])])
    assert _route_flags(hop[0]) & ROUTE_TRACED
    finished = exporter.get_finished_spans()
    repartition = hop[0][0]
    assert sorted(s.name for s in finished) == sorted(["process user-login", f"process {repartition}"])
    by_name = {s.name: s for s in finished}
    first, second = by_name["process user-login"], by_name[f"process {repartition}"]
    assert {s.context.trace_id for s in finished} == {int(SAMPLED[3:35], 16)}
    assert first.parent.span_id == int(SAMPLED[36:52], 16)
    assert second.parent.span_id == first.context.span_id  # through the repartition record's header
    assert {s.kind for s in finished} == {trace.SpanKind.CONSUMER}
    assert first.attributes["login.stage"] == "user"
    assert first.attributes["login.output.topic"] == repartition
    assert second.attributes["login.stage"] == "network"
    assert second.attributes["login.output.topic"] == "processed-logins"
    assert second.attributes["messaging.destination.name"] == repartition
    assert second.attributes["messaging.destination.partition.id"] == str(hop[0][1])
    assert second.attributes["messaging.kafka.offset"] == 0
    assert second.attributes["login.queued_ms"] >= 0
    assert second.attributes["login.network.detection"] in ("none", "credential_stuffing")
    assert dict(output[4])[TRACEPARENT] == b"00-%032x-%016x-%02x" % (
        second.context.trace_id,
        second.context.span_id,
        int(second.context.trace_flags),
    )
    assert [[h[0] for h in r[4]].count(TRACEPARENT) for r in (*hop, output)] == [1, 1]


def test_a_tracestate_travels_with_an_unsampled_context_wherever_it_is(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    user, network = _both(tracer)
    headers: list[tuple[str, Any]] = [
        (TRACESTATE, b"vendor=1"),
        ("x-correlation-id", b"c"),
        (TRACEPARENT, UNSAMPLED),
    ]
    _hop, (output,) = _through(user, network, [_msg(40, _event("u1"), headers)])
    assert read_context(output[4]) == (UNSAMPLED, b"vendor=1")
    assert exporter.get_finished_spans() == ()


def test_an_invalid_context_is_not_carried_on_a_new_trace_starts(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    """W3C: a traceparent with an invalid trace id is ignored; the stage starts a trace (the sampler decides
    as for a root span: here never) and the output carries that one, valid and not sampled."""
    _, exporter = spans
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    user, network = _both(provider.get_tracer("root-never"))
    invalid = b"00-00000000000000000000000000000000-b7ad6b7169203331-00"
    _hop, (output,) = _through(user, network, [_msg(50, _event("u1"), [(TRACEPARENT, invalid)])])
    carried = dict(output[4])[TRACEPARENT]
    assert carried != invalid
    assert forwardable([(TRACEPARENT, carried)]) is not None  # canonical, valid, not sampled
    assert exporter.get_finished_spans() == ()


def test_a_sampler_that_decides_for_itself_is_asked_for_an_unsampled_parent(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    """OTEL_TRACES_SAMPLER=always_on (not parent-based) records every event, whatever the flag says."""
    _, exporter = spans
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stage = _stage(provider.get_tracer("always"))
    (record,) = stage.process([_msg(60, _event("u1"), [(TRACEPARENT, UNSAMPLED)])]).records
    (span,) = exporter.get_finished_spans()
    assert span.name == "process user-login"
    assert span.context.trace_id == int(UNSAMPLED[3:35], 16)
    assert dict(record[4])[TRACEPARENT].endswith(b"%016x-01" % span.context.span_id)
    assert is_sampled(dict(record[4])[TRACEPARENT])  # type: ignore[arg-type]


def test_an_unsampled_dead_letter_keeps_the_inputs_context(spans: tuple[Any, InMemorySpanExporter]) -> None:
    tracer, exporter = spans
    stage = _stage(tracer)
    result = stage.process([_msg(70, b'{"user_id": 5}', [(TRACEPARENT, RANDOM_UNSAMPLED)])])
    ((msg, why),) = result.batch.dead
    assert why.trace == ()
    assert dict(dlq_headers(msg, why, 0))[TRACEPARENT] == RANDOM_UNSAMPLED
    assert exporter.get_finished_spans() == ()


def test_a_sampled_events_log_line_names_its_trace(spans: tuple[Any, InMemorySpanExporter]) -> None:
    tracer, exporter = spans
    stage = _stage(tracer)
    with structlog.testing.capture_logs() as logs:
        stage.process([_msg(80, b'{"user_id": 5}', [(TRACEPARENT, SAMPLED)])])
    (line,) = [entry for entry in logs if entry["event"] == "event.dead_lettered"]
    (process,) = exporter.get_finished_spans()
    assert line["trace_id"] == f"{process.context.trace_id:032x}" == SAMPLED[3:35].decode()
    assert line["span_id"] == f"{process.context.span_id:016x}"


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
