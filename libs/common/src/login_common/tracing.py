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
``tracestate``) as headers; each stage reads them (``read_context``), and writes its own span's context on
the records it produces (``context_headers``/``replace_context``), so output, repartition and dead-letter
records carry the trace on. The sampled flag travels with it (``is_sampled``): a stage records spans only
for sampled events and forwards an unsampled event's context as it came, untouched, which is what keeps
1 % sampling cheap (parent-based sampling would decide "not sampled" anyway, after building a context).

Logs: ``add_trace_ids`` is a structlog processor (``configure_logging(tracing=True)`` installs it) that adds
``trace_id`` and ``span_id`` (hex, as Jaeger shows them) of the current span to each log line, so logs and
traces join.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
EXPORTERS: Final = frozenset({"otlp", "console"})

Header = tuple[str, str | bytes | None]

__all__ = [
    "SAMPLED_DIGITS",
    "TRACEPARENT",
    "TRACESTATE",
    "PresetIds",
    "Tracing",
    "TracingError",
    "add_trace_ids",
    "context_headers",
    "exporters_from_env",
    "format_traceparent",
    "is_sampled",
    "parent_context",
    "read_context",
    "replace_context",
    "setup_tracing",
    "unsampled_tail",
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


# the second hex digit of the flags when the sampled flag is set (the stages' fast path tests
# ``traceparent[54:55] not in SAMPLED_DIGITS``)
SAMPLED_DIGITS: Final = (b"1", b"3", b"5", b"7", b"9", b"b", b"d", b"f", b"B", b"D", b"F")
_ODD_HEX: Final = frozenset(b"13579bdfBDF")
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


def is_sampled(traceparent: bytes | None) -> bool:
    """True when a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``) has the sampled flag (the
    flags' lowest bit: their second hex digit is odd); a malformed one is not sampled (the stage then
    records nothing for it and forwards it untouched)."""
    if traceparent is None or len(traceparent) < 55:
        return False
    return traceparent[54] in _ODD_HEX and traceparent[53] in _HEX


def unsampled_tail(headers: Any) -> Header | None:
    """The fast path of a stage: when a record's last header is a ``traceparent`` without the sampled
    flag (where the producer and the stages put it), that header, to forward as it is; else None (then
    ``read_context`` reads them all)."""
    if type(headers) is not list or not headers:
        return None
    last = headers[-1]
    if last[0] == TRACEPARENT and type(last[1]) is bytes and not is_sampled(last[1]):
        return last  # type: ignore[no-any-return]
    return None


def parent_context(traceparent: bytes | None, tracestate: bytes | None = None) -> Any:
    """The OpenTelemetry context a header pair describes (an empty context for a missing or invalid one:
    a span started in it begins a new trace)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    if traceparent is not None:
        carrier[TRACEPARENT] = _text(traceparent) or ""
        if tracestate is not None:
            carrier[TRACESTATE] = _text(tracestate) or ""
    return TraceContextTextMapPropagator().extract(carrier)


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
