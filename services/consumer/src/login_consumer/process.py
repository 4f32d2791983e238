"""The in-process path of one batch: parse -> validate -> enrich -> detect -> score -> serialize.

No Kafka here: ``Processor.process`` takes confluent-kafka ``Message`` objects (which can also be built
in memory, as tests and the benchmark do) and returns what to send where plus the batch's statistics.
Work that does not depend on the event is done once per batch (the timestamp window, the processing
time stamp, the detector call, metric aggregation); the rest is cached per distinct value by the
validator and the enricher.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Final, NamedTuple

import orjson
import structlog
from confluent_kafka import Message

from login_common.contract import (
    HEADER_CONTENT_TYPE,
    HEADER_CORRELATION_ID,
    HEADER_SCHEMA_VERSION,
    PROCESSED_SCHEMA_VERSION,
)
from login_common.tracing import TRACEPARENT, TRACESTATE, unsampled_traceparent
from login_consumer import __version__
from login_consumer.config import ConsumerSettings
from login_consumer.detectors.base import NO_DETECTIONS, DetectBatch, Detection, Detectors, NoDetectors
from login_consumer.enrich import Client, Enriched, Enricher, Place, TimeInfo, processed_at_now
from login_consumer.privacy import Privacy
from login_consumer.records import Header
from login_consumer.risk import RiskModel
from login_consumer.validate import Invalid, Validator

log = structlog.get_logger("login_consumer")

_SCHEMA_HEADER: Final[Header] = (HEADER_SCHEMA_VERSION, str(PROCESSED_SCHEMA_VERSION).encode())
_JSON_HEADER: Final[Header] = (HEADER_CONTENT_TYPE, b"application/json")
_NAME: Final = itemgetter(0)


@dataclass(slots=True)
class BatchStats:
    """Aggregates of one batch, applied to the metrics once the batch is delivered."""

    consumed: int = 0
    seconds: float = 0.0
    risk_scores: list[int] = field(default_factory=list)
    levels: Counter[str] = field(default_factory=Counter)
    geo: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    times: Counter[tuple[int, int]] = field(default_factory=Counter)
    platforms: Counter[tuple[str, str]] = field(default_factory=Counter)
    detections: Counter[str] = field(default_factory=Counter)
    dlq: Counter[str] = field(default_factory=Counter)
    flagged_users: Counter[str] = field(default_factory=Counter)
    flagged_ips: Counter[str] = field(default_factory=Counter)
    stuffing: dict[str, int] = field(default_factory=dict)  # network -> most failing accounts seen
    errors: Counter[str] = field(default_factory=Counter)
    out_of_order: Counter[tuple[str, str]] = field(default_factory=Counter)  # (stage, cause) -> count


# (source message, key, value, headers)
Output = tuple[Message, bytes, bytes, list[Header]]


# Route flag: the event's trace context is for the stages' tracer to read (sampled, or a context the fast
# path does not read: login_consumer/tracing.py); carried to the network stage in the route header.
ROUTE_TRACED: Final = 4


class Route(NamedTuple):
    """What routing needs of one output (``stages/user.py``), so that it never parses the JSON again."""

    ip: str  # the real address: the network stage keys by it, whatever the output shows
    ts: int  # event time (epoch seconds)
    flags: int  # 1: a failed login; 2: flagged by a user-stage detector; 4: ROUTE_TRACED
    score: int  # risk score so far
    level: str  # risk level so far
    shown: str  # the address as the output shows it (OUTPUT_PRIVACY)


@dataclass(slots=True)
class BatchResult:
    outputs: list[Output]
    dead: list[tuple[Message, Invalid]]
    stats: BatchStats
    routes: list[Route] = field(default_factory=list)  # one per output
    # tracing on: indexes of the outputs whose trace context the stage's tracer reads (ROUTE_TRACED), and
    # their documents as serialized (the verdicts of a sampled event's span, without parsing its output)
    traced: list[int] = field(default_factory=list)
    traced_docs: list[dict[str, Any]] = field(default_factory=list)


class Processor:
    def __init__(
        self,
        validator: Validator,
        enricher: Enricher,
        risk: RiskModel,
        detectors: Detectors | None = None,
        privacy: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.validator = validator
        self.enricher = enricher
        self.risk = risk
        self.detectors: Detectors = detectors if detectors is not None else NoDetectors()
        # False when a later stage completes the events (the network stage): their risk score and level
        # may still change, so they are counted there, not here
        self.final = True
        self.privacy = privacy  # OUTPUT_PRIVACY: rewrites IP and device id of each output (privacy.py)
        # Tracing (set with the user stage's tracer, stages/user.py): None = off, nothing read. True = the
        # fast path, inline (``login_common.tracing.forwardable``'s test, without a call per event): an
        # input whose last header is a canonical version-00 ``traceparent`` without the sampled flag, and
        # that has no ``tracestate``, has that header carried on to its output as it came (no span, no
        # OpenTelemetry call). Any other output (and every one when False: a sampler that decides for
        # itself, ``tracing.follows_parent``) has its index in ``BatchResult.traced`` and ROUTE_TRACED in
        # its route, for the stages' tracer. tests/unit/test_tracing.py pins it against ``forwardable``.
        self.trace_fast: bool | None = None

    @classmethod
    def from_settings(cls, settings: ConsumerSettings, detectors: Detectors | None = None) -> Processor:
        risk = RiskModel(settings.weights(), settings.risk_medium_threshold, settings.risk_high_threshold)
        return cls(
            Validator(
                max_bytes=settings.max_event_bytes,
                max_age_seconds=settings.timestamp_max_age_seconds,
                max_ahead_seconds=settings.timestamp_max_ahead_seconds,
                ip_cache_size=settings.geo_cache_size,
            ),
            Enricher(
                risk=risk,
                min_app_version=settings.min_app_version,
                cache_size=settings.geo_cache_size,
                geoip_data_file=settings.geoip_data_file,
                consumer_version=__version__,
            ),
            risk,
            detectors,
            Privacy.from_settings(settings),
        )

    def process(self, messages: Sequence[Message], now: float | None = None) -> BatchResult:
        started = time.perf_counter()
        if now is None:
            now = time.time()
        low, high = self.validator.window(now)
        processed_at = processed_at_now(now)
        check = self.validator.check
        enrich = self.enricher.enrich
        stats = BatchStats(consumed=len(messages))
        dead: list[tuple[Message, Invalid]] = []
        enriched: list[Enriched] = []
        sources: list[Message] = []
        agents: list[str | None] = []

        for msg in messages:
            raw = msg.value()
            result = check(raw, low, high)
            if isinstance(result, Invalid):
                dead.append((msg, result))
                continue
            event, ts = result
            try:
                enriched.append(enrich(event, ts, raw, processed_at))  # type: ignore[arg-type] # raw: not None
            except Exception as exc:  # noqa: BLE001 - one bad event must not stop the batch
                dead.append((msg, _processing_error("enrich", exc)))
                continue
            sources.append(msg)
            agents.append(event.user_agent)

        found: Mapping[int, Sequence[Detection]] = NO_DETECTIONS
        if enriched:
            try:
                found = self.detectors.detect(
                    DetectBatch(
                        [item[0] for item in enriched],
                        [m.partition() or 0 for m in sources],
                        [m.offset() or 0 for m in sources],
                        now,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - detectors are optional; the events still flow
                stats.errors["processing"] += 1
                log.error("detectors.failed", error=repr(exc)[:300])
                found = NO_DETECTIONS

        outputs: list[Output] = []
        routes: list[Route] = []
        traced: list[int] = []
        traced_docs: list[dict[str, Any]] = []
        trace_fast = self.trace_fast
        final = self.final
        assess = self.risk.assess
        protect = self.privacy
        unsampled = unsampled_traceparent
        dumps = orjson.dumps
        scores = stats.risk_scores
        levels: list[str] = []
        # cached objects, counted by identity (cheaper than hashing their label tuples per event)
        places: list[Place] = []
        moments: list[TimeInfo] = []
        clients: list[Client] = []
        flagged: list[dict[str, Any]] = []
        fresh_prefix = str(uuid.uuid4())[:24].encode()  # new correlation ids: this + a 12-hex counter
        fresh = 0
        for index, (doc, place, moment, client) in enumerate(enriched):
            msg = sources[index]
            try:
                dets = found.get(index) if found else None
                risk_score, level, reasons, det_docs = assess(
                    place.factors, client.factors, moment.night, doc, agents[index], detections=dets
                )
                doc["risk_score"] = risk_score
                doc["risk_level"] = level
                doc["reasons"] = reasons
                doc["detections"] = det_docs
                ip = doc["ip"]  # the network stage keys by the real address, whatever the output shows
                if protect is not None:
                    protect(doc)
                value = dumps(doc)
                key = doc["user_id"].encode()
            except Exception as exc:  # noqa: BLE001
                dead.append((msg, _processing_error("score", exc)))
                continue
            correlation: bytes | str | None = None
            headers = msg.headers()
            if headers:
                for name, header in headers.items() if isinstance(headers, dict) else headers:
                    if name == HEADER_CORRELATION_ID and header:
                        correlation = header
                        break
            if correlation is None:
                fresh += 1
                correlation = fresh_prefix + b"%012x" % fresh
            elif type(correlation) is not bytes:
                correlation = str(correlation).encode()
            flags = (doc["outcome"] == "failure") | (2 if dets else 0)
            if trace_fast is None:
                out_headers = [_SCHEMA_HEADER, _JSON_HEADER, (HEADER_CORRELATION_ID, correlation)]
            elif (
                trace_fast
                and type(headers) is list
                and headers
                and (last := headers[-1])[0] == TRACEPARENT
                and type(parent := last[1]) is bytes
                and unsampled(parent) is not None
                and (len(headers) == 1 or TRACESTATE not in map(_NAME, headers))
            ):  # not sampled: its context goes on as it came
                out_headers = [_SCHEMA_HEADER, _JSON_HEADER, (HEADER_CORRELATION_ID, correlation), last]
            else:  # for the tracer
                out_headers = [_SCHEMA_HEADER, _JSON_HEADER, (HEADER_CORRELATION_ID, correlation)]
                traced.append(len(outputs))
                traced_docs.append(doc)
                flags |= ROUTE_TRACED
            outputs.append((msg, key, value, out_headers))
            routes.append(
                Route(
                    ip,
                    doc["timestamp"],
                    flags,
                    risk_score,
                    level,
                    doc["ip"],
                )
            )
            places.append(place)
            moments.append(moment)
            clients.append(client)
            if dets:
                stats.detections.update(d.detector for d in dets)
                for d in dets:
                    if d.scope and d.count > stats.stuffing.get(d.scope, 0):
                        stats.stuffing[d.scope] = d.count
                flagged.append(doc)
            if final:
                scores.append(risk_score)
                levels.append(level)
                if level == "high" and not dets:
                    flagged.append(doc)

        stats.levels.update(levels)
        for place, count in Counter(places).items():
            stats.geo[place.geo_key] += count
        for moment, count in Counter(moments).items():
            stats.times[moment.key] += count
        for client, count in Counter(clients).items():
            stats.platforms[client.key] += count
        stats.dlq.update(why.error_type for _, why in dead)
        for doc in flagged:
            stats.flagged_users[doc["user_id"]] += 1
            stats.flagged_ips[doc["ip"]] += 1
        stats.seconds = time.perf_counter() - started
        return BatchResult(outputs, dead, stats, routes, traced, traced_docs)


def tune_gc() -> None:
    """Garbage-collector settings for a high-throughput process (call once, after start-up).

    Each event allocates a few dozen short-lived containers, so CPython's default gen-0 threshold (700)
    would run a collection every few events. Reference data loaded at start-up is frozen out of the
    collector's view; nothing the pipeline builds has reference cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _processing_error(stage: str, exc: Exception) -> Invalid:
    return Invalid("processing_error", f"{stage}: {type(exc).__name__}: {str(exc)[:200]}")
