"""Distributed tracing: the OpenTelemetry SDK set up from the standard ``OTEL_*`` variables, and W3C trace
context (``traceparent``/``tracestate``) carried in Kafka headers.

Off by default. ``OTEL_TRACES_EXPORTER`` switches it on: ``otlp`` (OTLP to ``OTEL_EXPORTER_OTLP_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_EXPORTER_OTLP_PROTOCOL`` ``http/protobuf``, the default,
or ``grpc``) and/or ``console`` (spans as JSON on stdout), comma-separated; unset or ``none`` (or
``OTEL_SDK_DISABLED=true``) leaves it off. Off means ``setup_tracing`` returns None: no tracer provider,
no exporter thread, and the services' hot paths test one ``is None`` per batch and do nothing else (not
even read the headers; ``make bench-tracing`` measures it). The SDK's own settings are read by the SDK:
``OTEL_TRACES_SAMPLER`` (the project's documented choice is ``parentbased_traceidratio`` with
``OTEL_TRACES_SAMPLER_ARG``, e.g. 0.01; the SDK's default is ``parentbased_always_on``),
``OTEL_BSP_*`` for the batch span processor, ``OTEL_EXPORTER_OTLP_*`` for the exporter.

Resource: ``service.name`` (the service's own name unless ``OTEL_SERVICE_NAME`` says otherwise),
``service.version`` (the package's version), ``service.instance.id`` and ``k8s.pod.name`` (the pod's
name: ``POD_NAME``, else ``HOSTNAME``), then ``OTEL_RESOURCE_ATTRIBUTES`` over them (the charts set
``k8s.namespace.name`` there), then ``OTEL_SERVICE_NAME`` over everything.

Kafka headers: the producer starts one trace per event and writes its ``traceparent`` (and any
``tracestate``) as headers; each stage reads them and writes its own span's context on the records it
produces (``context_headers``/``replace_context``), so output, repartition and dead-letter records carry
the trace on. The sampled flag decides (parent-based sampling, ``follows_parent``), and it is read from the
header's bytes before any OpenTelemetry call: an event whose context is not sampled gets no span, and its
context goes on exactly as it came (``forwardable``, the fast path: one regular-expression match on the last
header, inlined in the consumer's processor loop through ``unsampled_traceparent``; ``incoming`` for
whatever that leaves: sampled, ``tracestate``, a later version, a missing or invalid context), so the next
hop, and ``replay-dlq``, continue the same trace id with the same decision.
That is what keeps 1 % sampling cheap: the SDK's own route (extract, a non-recording span, inject) cost
14 CPU µs per event and stage on this project's shared 2-core machine, for nothing that is exported;
``forwardable`` 0.8 µs (medians of 9 x 20,000 calls, load 14-18).

Logs: ``add_trace_ids`` is a structlog processor (``configure_logging(tracing=True)`` installs it) that adds
``trace_id`` and ``span_id`` (hex, as Jaeger shows them) of the current span to each log line, so logs and
traces join.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
EXPORTERS: Final = frozenset({"otlp", "console"})

Header = tuple[str, str | bytes | None]

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "PresetIds",
    "Tracing",
    "TracingError",
    "add_trace_ids",
    "context_headers",
    "exporters_from_env",
    "follows_parent",
    "format_traceparent",
    "forwardable",
    "incoming",
    "is_sampled",
    "parent_context",
    "read_context",
    "replace_context",
    "setup_tracing",
    "unsampled_traceparent",
]


class TracingError(ValueError):
    """A tracing setting the SDK cannot use (an unknown exporter or protocol): a clear start-up error."""


def exporters_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The span exporters asked for (``OTEL_TRACES_EXPORTER``); empty when tracing is off."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    unknown = sorted(set(names) - EXPORTERS)
    if unknown:
        raise TracingError(
            f"OTEL_TRACES_EXPORTER: unknown exporter(s) {', '.join(unknown)} (known: otlp, console, none)"
        )
    return names


class PresetIds:
    """The SDK's id generator (random ids), except that the next trace id can be chosen: the producer
    decides sampling on a trace id of its own first and builds a span only for a sampled one."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        self._random = RandomIdGenerator()
        self.preset = 0

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        preset, self.preset = self.preset, 0
        return preset or self._random.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return True


@dataclass
class Tracing:
    """The process's tracer, the provider behind it and its sampler (``setup_tracing``)."""

    tracer: Any  # opentelemetry.trace.Tracer
    provider: Any  # opentelemetry.sdk.trace.TracerProvider
    service: str
    sampler: Any  # opentelemetry.sdk.trace.sampling.Sampler, from OTEL_TRACES_SAMPLER(_ARG)
    ids: PresetIds

    def shutdown(self) -> None:
        """Export what is queued and stop the exporter (at the end of the process)."""
        self.provider.shutdown()


def _resource(service: str, version: str, env: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource

    pod = env.get("POD_NAME") or env.get("HOSTNAME") or socket.gethostname()
    base = Resource(
        {
            "service.name": service,
            "service.version": version,
            "service.instance.id": pod,
            "k8s.pod.name": pod,
        }
    )
    return base.merge(OTELResourceDetector().detect())


def _otlp_exporter(env: Mapping[str, str]) -> Any:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    raise TracingError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported (http/protobuf or grpc)")


def setup_tracing(service: str, version: str) -> Tracing | None:
    """The tracer of a service, or None when tracing is off (see the module doc). The SDK is imported
    only here, only when tracing is on; it reads its own settings from the process environment."""
    env = os.environ
    exporters = exporters_from_env(env)
    if not exporters:
        return None
    from opentelemetry.sdk.trace import TracerProvider, sampling
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = _resource(service, version, env)
    # the sampler the SDK builds when given none (OTEL_TRACES_SAMPLER(_ARG); SDK 1.45.2,
    # opentelemetry/sdk/trace/sampling.py), built here so that the producer can ask it first
    sampler = sampling._get_from_env_or_default()
    ids = PresetIds()
    provider = TracerProvider(sampler=sampler, resource=resource, id_generator=ids)  # type: ignore[arg-type]
    for name in exporters:
        exporter = _otlp_exporter(env) if name == "otlp" else ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    name = str(resource.attributes.get("service.name", service))
    return Tracing(provider.get_tracer(service, version), provider, name, sampler, ids)


# --- W3C trace context in Kafka headers ---------------------------------------------------------------

# W3C Trace Context (Recommendation, "traceparent Header Field Values"): version 00 is exactly
# ``00-<trace-id>-<parent-id>-<trace-flags>``, 32, 16 and 2 lowercase hex digits, 55 characters; a trace-id
# or parent-id of all zeros is invalid ("vendors MUST ignore the traceparent"); the sampled flag is the
# flags' lowest bit (their second digit odd), the other bits are carried, never interpreted. These match
# such a header and nothing else (no whitespace, no later version): the canonical form every OpenTelemetry
# SDK writes, read here without the SDK. Whatever they do not match goes to the SDK's own propagator
# (``parent_context``). tests/unit/test_tracing.py pins both against opentelemetry-api 1.45.2's
# TraceContextTextMapPropagator.extract. One match costs 0.23 µs here; the same test by hand (the
# bytes translated to a class per character and compared with a template, the version, the ids not zero
# by ``startswith`` at an offset, the flag digit looked up) cost 0.40-0.43 µs (timeit, best of 7 x
# 300,000), so the expression stays.
_UNSAMPLED = re.compile(rb"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f][02468ace]").fullmatch
# the fast path's test, for a hot loop that inlines ``forwardable`` (login_consumer/process.py): a match
# object for a canonical, valid version-00 ``traceparent`` without the sampled flag, else None
unsampled_traceparent: Final = _UNSAMPLED
_SAMPLED = re.compile(rb"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f][13579bdf]").fullmatch
_NAME = itemgetter(0)


def _text(value: str | bytes | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value


def read_context(
    headers: Sequence[tuple[str, Any]] | Mapping[str, Any] | None,
) -> tuple[bytes | None, bytes | None]:
    """(traceparent, tracestate) of a record's headers as bytes (the last of each), None when absent."""
    if not headers:
        return None, None
    parent: bytes | None = None
    state: bytes | None = None
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if name == TRACEPARENT and value:
            parent = value if isinstance(value, bytes) else str(value).encode()
        elif name == TRACESTATE and value:
            state = value if isinstance(value, bytes) else str(value).encode()
    return parent, state


def forwardable(headers: Any) -> Header | None:
    """The stages' fast path, for the 99 % at 1 % sampling: when a record's last header (where the
    producer, the stages and OpenTelemetry's injectors put it) is a canonical version-00 ``traceparent``
    without the sampled flag and the record has no ``tracestate``, that header, to go on as it came (W3C
    "forwarding mode": the whole trace context unchanged); else None (``incoming`` then decides). No
    OpenTelemetry call: one regular-expression match, and a look at the header names when there are
    several. Right only under a sampler that follows the parent's flag (``follows_parent``)."""
    if type(headers) is not list or not headers:
        return None
    last = headers[-1]
    value = last[1]
    if last[0] != TRACEPARENT or type(value) is not bytes or _UNSAMPLED(value) is None:
        return None
    if len(headers) > 1 and TRACESTATE in map(_NAME, headers):
        return None
    return last  # type: ignore[no-any-return]


def is_sampled(traceparent: bytes | None) -> bool:
    """True when a ``traceparent`` is valid and has the sampled flag (a malformed one is not sampled: a
    stage starts a new trace for it)."""
    if traceparent is None:
        return False
    if _SAMPLED(traceparent) is not None:
        return True
    if _UNSAMPLED(traceparent) is not None:
        return False
    from opentelemetry import trace

    span_context = trace.get_current_span(parent_context(traceparent)).get_span_context()
    return bool(span_context.is_valid and span_context.trace_flags.sampled)


def parent_context(traceparent: bytes | None, tracestate: bytes | None = None) -> Any:
    """The OpenTelemetry context a header pair describes, read by the SDK's propagator (an empty context
    for a missing or invalid one: a span started in it begins a new trace)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    if traceparent is not None:
        carrier[TRACEPARENT] = _text(traceparent) or ""
        if tracestate is not None:
            carrier[TRACESTATE] = _text(tracestate) or ""
    return TraceContextTextMapPropagator().extract(carrier)


@functools.cache
def _otel() -> tuple[Any, Any]:
    """``opentelemetry.context`` and ``opentelemetry.trace``, imported at the first sampled event (not at
    this module's import: tracing off imports no OpenTelemetry module), then looked up once per call
    instead of an import statement's machinery twice per sampled event and stage."""
    from opentelemetry import context, trace

    return context, trace


def _remote_context(traceparent: bytes) -> Any:
    """The context the SDK's propagator extracts from a canonical ``traceparent`` without ``tracestate``,
    built directly (a quarter of the propagator's cost: no text carrier, no regular expression)."""
    context, trace = _otel()
    span_context = trace.SpanContext(
        int(traceparent[3:35], 16),
        int(traceparent[36:52], 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(int(traceparent[53:55], 16)),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context), context.Context())


def incoming(headers: Any, *, follows_parent: bool = True) -> tuple[Any | None, list[Header]]:
    """What a stage does with a record's trace context when the fast path (``forwardable``) left it:
    ``(context, came)``. ``came`` is the context as it came (``traceparent``, and ``tracestate`` when
    there is one), empty when there is no valid one. ``context`` is None when the event gets no span (a
    valid context without the sampled flag, under a sampler that follows it): the record carries ``came``
    on unchanged. Else it is the context to start the event's spans in, the sampler deciding as the SDK
    does: a valid parent's (sampled, or a sampler that decides for itself), or an empty one when the
    context is missing or invalid (W3C: the trace restarts; the sampler decides as for a root span)."""
    context, trace = _otel()
    parent, state = read_context(headers)
    if parent is None:
        return context.Context(), []
    came: list[Header] = (
        [(TRACEPARENT, parent)] if state is None else [(TRACEPARENT, parent), (TRACESTATE, state)]
    )
    if state is None:
        if _SAMPLED(parent) is not None:
            return _remote_context(parent), came
        if follows_parent and _UNSAMPLED(parent) is not None:
            return None, came
    ctx = parent_context(parent, state)
    span_context = trace.get_current_span(ctx).get_span_context()
    if not span_context.is_valid:
        return ctx, []
    if follows_parent and not span_context.trace_flags.sampled:
        return None, came
    return ctx, came


def follows_parent(sampler: Any) -> bool:
    """True when ``sampler`` decides a child of a remote parent by the parent's sampled flag alone: record
    it when set, drop it when not. The SDK's parent-based samplers do (``OTEL_TRACES_SAMPLER``
    ``parentbased_always_on``, the default, ``parentbased_always_off``, ``parentbased_traceidratio``: their
    remote-parent delegates are ALWAYS_ON and ALWAYS_OFF); ``always_on``, ``always_off`` and
    ``traceidratio`` decide for themselves. The sampler is asked, not its type: for a remote parent sampled
    and not, on two trace ids at the two ends of the ratio samplers' range (lowest 64 bits all zeros, all
    ones), so a delegate that is a ratio is caught whatever its rate. When False every event goes through
    the SDK (``incoming``), slower but the sampler's own decision."""
    if sampler is None:
        return False
    from opentelemetry import context, trace
    from opentelemetry.sdk.trace.sampling import Decision

    for flags, expected in ((trace.TraceFlags.SAMPLED, Decision.RECORD_AND_SAMPLE), (0, Decision.DROP)):
        for trace_id in (1 << 64, (1 << 128) - 1):
            parent = trace.SpanContext(trace_id, 1, is_remote=True, trace_flags=trace.TraceFlags(flags))
            ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent), context.Context())
            if sampler.should_sample(ctx, trace_id, "follows-parent probe").decision != expected:
                return False
    return True


def format_traceparent(span_context: Any) -> bytes:
    """``traceparent`` of a span context (version 00)."""
    return b"00-%032x-%016x-%02x" % (
        span_context.trace_id,
        span_context.span_id,
        int(span_context.trace_flags),
    )


def context_headers(span: Any) -> list[Header]:
    """The headers that carry ``span``'s context on a record it produces."""
    ctx = span.get_span_context()
    headers: list[Header] = [(TRACEPARENT, format_traceparent(ctx))]
    if ctx.trace_state:
        headers.append((TRACESTATE, ctx.trace_state.to_header().encode()))
    return headers


def replace_context(headers: list[Header], context: Sequence[Header]) -> None:
    """Put ``context`` (``context_headers``) in place of any trace context ``headers`` hold, in place."""
    headers[:] = [h for h in headers if h[0] not in (TRACEPARENT, TRACESTATE)]
    headers.extend(context)


def add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` of the current span, when there is one."""
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", f"{ctx.trace_id:032x}")
        event_dict.setdefault("span_id", f"{ctx.span_id:016x}")
    return event_dict
