"""The network-keyed stage: repartition topic -> credential_stuffing -> output topic.

Every event of one network is in one partition of ``<GROUP_ID>-network-repartition`` (``stages/user.py``
writes them there), so the network detector (``detectors/networks.py``) sees all of a network's accounts
whatever the number of consumer processes. The stage completes each event: an event the detector does
not flag is written to the output topic as the user stage left it (no JSON parsing: its value is already
the final document); a flagged one gets the detection, its reason and its risk (score capped at 100, level
from the thresholds) added to the document. The output is keyed by ``user_id`` like the user stage's.

Before detection each partition's sources are merged in event-time order (``stages/merge.py``), so the
detector sees a network's events as one process would, whatever the number of processes writing them.
In exactly-once mode a record read again after a restart or a rebalance whose event was completed before
(the changelog remembers the last input offset done per source) is skipped: its output is out already.

A repartition record that cannot be read (someone else wrote to the internal topic) is dead-lettered
untouched with ``error_type=processing_error``, like any other input that cannot be processed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Final, NamedTuple

import orjson
from confluent_kafka import Message

from login_consumer.detectors.base import Detection
from login_consumer.detectors.networks import NetEvent, NetworkDetector
from login_consumer.process import ROUTE_TRACED, BatchStats
from login_consumer.records import Header, Record
from login_consumer.risk import RiskModel
from login_consumer.stages.merge import LAST_OF_SECOND, SourceMerge
from login_consumer.stages.user import PROGRESS_CREATED_HEADER, PROGRESS_HEADER, ROUTE_HEADER
from login_consumer.tracing import StageTracer
from login_consumer.validate import Invalid

_ROUTE: Final = ROUTE_HEADER
_NAME: Final = itemgetter(0)


@dataclass(slots=True)
class NetworkStageResult:
    records: list[Record] = field(default_factory=list)
    dead: list[tuple[Message, Invalid]] = field(default_factory=list)
    stats: BatchStats = field(default_factory=BatchStats)
    latencies: Counter[float] = field(default_factory=Counter)


def read_progress(
    headers: Sequence[tuple[str, Any]] | dict[str, Any] | None,
) -> tuple[int, float, int, bool] | None:
    """(source, event time, create ms, idle) of a progress record, or None for any other record. A record
    of an older user stage has no create time: ``LAST_OF_SECOND``, the bound it meant (its whole second)."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    if PROGRESS_HEADER not in map(_NAME, items):  # every other record: one scan in C, not a loop here
        return None
    found: tuple[int, float, bool] | None = None
    created = LAST_OF_SECOND
    for name, value in items:
        if name == PROGRESS_HEADER and isinstance(value, bytes):
            source, ts, idle = value.split(b" ")
            found = int(source), float(ts), idle == b"1"
        elif name == PROGRESS_CREATED_HEADER and isinstance(value, bytes):
            created = int(value)
    return None if found is None else (found[0], found[1], created, found[2])


def read_route(
    headers: Sequence[tuple[str, Any]] | dict[str, Any] | None,
) -> tuple[list[Header], bytes] | None:
    """(output headers, route header value) of a repartition record, or None when it has no route."""
    if not headers:
        return None
    if isinstance(headers, dict):
        headers = list(headers.items())
    name, value = headers[-1]
    if name == _ROUTE and isinstance(value, bytes):  # last, where the user stage puts it: a slice, no scan
        return headers[:-1] if type(headers) is list else list(headers[:-1]), value
    for at in range(len(headers) - 2, -1, -1):
        name, value = headers[at]
        if name == _ROUTE and isinstance(value, bytes):
            return [h for i, h in enumerate(headers) if i != at], value
    return None


class Held(NamedTuple):
    """A repartition record held by its partition's merge until its turn (``stages/merge.py``)."""

    msg: Message
    headers: list[Header]  # the output headers (the route header removed)
    flags: int  # 1: a failed login; 2: flagged by a user-stage detector; 4: process.ROUTE_TRACED
    score: int  # risk score from the user stage
    ip: bytes  # the address as the output shows it
    user: bytes  # user_id: the output key
    created_ms: int  # the input record's create time (latency)
    event: NetEvent  # what the network detector sees


class NetworkStage:
    """Merges each partition's sources in event time, then completes the events with the network
    detector's verdict."""

    def __init__(
        self,
        detector: NetworkDetector,
        risk: RiskModel,
        *,
        output_topic: str,
        sources: int = 1,
        exactly_once: bool = False,
        max_wait: float = 2.0,
        max_buffered: int = 100_000,
        merge: bool = True,
    ) -> None:
        """``merge=False``: complete events in arrival order, at once (one writer, e.g. in-process use)."""
        self.detector = detector
        self.ordered = merge
        self.risk = risk
        self.output_topic = output_topic
        self.sources = sources  # input partitions
        self.exactly_once = exactly_once
        self.max_wait = max_wait
        self.max_buffered = max_buffered
        self.merges: dict[int, SourceMerge[Held]] = {}
        self.skipped = 0  # records read again that were completed before (exactly-once)
        self.tracer: StageTracer | None = None  # set when tracing is on (wiring.py)

    @property
    def holding(self) -> bool:
        return any(m.buffered for m in self.merges.values())

    def first_held(self, partition: int) -> int | None:
        merge = self.merges.get(partition)
        return merge.first_held() if merge is not None else None

    def drop(self, partitions: Sequence[int]) -> None:
        """Forget what is held for these partitions (revoked, or rewound: read again)."""
        for p in partitions:
            merge = self.merges.pop(p, None)
            if merge is not None:
                merge.drop()

    def _merge(self, partition: int) -> SourceMerge[Held]:
        merge = self.merges.get(partition)
        if merge is None:
            share = max(1_000, self.max_buffered // max(1, len(self.merges) + 1))
            merge = self.merges[partition] = SourceMerge(
                self.sources,
                max_wait=self.max_wait,
                max_buffered=share,
                top=self.detector.released(partition),
            )
        return merge

    def process(self, messages: Sequence[Message], *, flush: bool = False) -> NetworkStageResult:
        """Read repartition records; complete what the merges release (``flush``: everything they hold,
        in event-time order, without waiting for slower sources)."""
        started = time.perf_counter()
        started_ns = time.time_ns() if self.tracer is not None else 0
        result = NetworkStageResult()
        stats = result.stats
        done = self.detector.done
        skip_done = self.exactly_once
        for msg in messages:
            q = msg.partition() or 0
            merge = self._merge(q)
            raw_headers = msg.headers()
            try:
                progress = read_progress(raw_headers)
                if progress is not None:
                    merge.progress(progress[0], progress[1], idle=progress[3], created=progress[2])
                    continue
                headers, route = read_route(raw_headers) or ([], b"")
                source, source_offset, created_ms, ts, raw_flags, raw_score, ip, user = route.split(b" ", 7)
                net = (msg.key() or b"").decode()
                if not net or not user or msg.value() is None:
                    raise ValueError("empty network, user or value")
                flags = int(raw_flags)
                event = NetEvent(
                    q, int(source), int(source_offset), net, user.decode(), int(ts), flags & 1 == 1
                )
                if skip_done and done(q, event.source, event.source_offset):
                    self.skipped += 1  # completed (and committed) before: its output is out already
                    continue
                item = Held(msg, headers, flags, int(raw_score), ip, user, int(created_ms), event)
                merge.add(event.source, event.ts, msg.offset() or 0, item, int(created_ms))
            except (ValueError, UnicodeDecodeError) as exc:
                result.dead.append(
                    (msg, Invalid("processing_error", f"network stage: unreadable record: {exc}"))
                )
        held: list[Held] = []
        disorder = stats.out_of_order
        for q, merge in self.merges.items():
            if merge.buffered:
                timeouts, forced = merge.timeouts, merge.forced
                held.extend(merge.release() if self.ordered and not flush else merge.flush())
                if merge.timeouts != timeouts:
                    disorder["network", "silent_source"] += merge.timeouts - timeouts
                if merge.forced != forced:
                    disorder["network", "too_many_held"] += merge.forced - forced
                if merge.late:  # arrived behind what was released (stages/merge.py: idle is no promise)
                    disorder["network", "late_arrival"] += merge.late
                    merge.late = 0
                self.detector.mark_released(q, merge.top)
        found, traced = self._complete(held, result)
        if self.tracer is not None:
            self.tracer.network_stage(
                held, found, traced, result.dead, output_topic=self.output_topic, started_ns=started_ns
            )
        stats.dlq.update(why.error_type for _, why in result.dead)
        stats.seconds = time.perf_counter() - started
        return result

    def _complete(
        self, held: list[Held], result: NetworkStageResult
    ) -> tuple[Mapping[int, Detection], list[int]]:
        """Detect over the released events (in order) and build their output records; the verdicts, and
        the indexes of the events the user stage marked ROUTE_TRACED (for the tracer)."""
        stats = result.stats
        found = self.detector.detect([item.event for item in held]) if held else {}
        output = self.output_topic
        records = result.records
        risk = self.risk
        scores = stats.risk_scores
        levels = stats.levels
        created: Counter[int] = Counter()
        traced: list[int] = []
        for i, (msg, headers, flags, score, ip, user, created_ms, _event) in enumerate(held):
            if flags & ROUTE_TRACED:
                traced.append(i)
            value: bytes = msg.value()  # type: ignore[assignment] # checked on arrival
            created[created_ms] += 1
            det = found.get(i)
            if det is None:
                records.append((output, -1, user, value, headers))
                scores.append(score)
                level = risk.level(score)
                levels[level] += 1
                if level == "high" and not flags & 2:
                    stats.flagged_users[user.decode("utf-8", "replace")] += 1
                    stats.flagged_ips[ip.decode("utf-8", "replace")] += 1
                continue
            try:
                doc = orjson.loads(value)
                final = min(100, int(doc["risk_score"]) + det.risk)
                level = risk.level(final)
                doc["risk_score"] = final
                doc["risk_level"] = level
                doc["reasons"] = [*doc["reasons"], det.detector]
                doc["detections"] = [
                    *doc["detections"],
                    {"detector": det.detector, "evidence": list(det.evidence), "risk": det.risk},
                ]
                value = orjson.dumps(doc)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                result.dead.append((msg, Invalid("processing_error", f"network stage: {type(exc).__name__}")))
                continue
            records.append((output, -1, user, value, headers))
            scores.append(final)
            levels[level] += 1
            stats.detections[det.detector] += 1
            if det.scope and det.count > stats.stuffing.get(det.scope, 0):
                stats.stuffing[det.scope] = det.count
            if flags & 2:  # counted once per event: the user stage flagged it already
                continue
            stats.flagged_users[user.decode("utf-8", "replace")] += 1
            stats.flagged_ips[ip.decode("utf-8", "replace")] += 1
        now_ms = time.time() * 1000.0
        for ms, count in created.items():
            if ms > 0:
                result.latencies[max(0.0, (now_ms - ms) / 1000.0)] += count
        return found, traced
