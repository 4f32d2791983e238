"""The network-keyed stage: repartition topic -> credential_stuffing -> output topic.

Every event of one network is in one partition of ``<GROUP_ID>-network-repartition`` (``stages/user.py``
writes them there), so the network detector (``detectors/networks.py``) sees all of a network's accounts
whatever the number of consumer processes. The stage completes each event: an event the detector does
not flag is written to the output topic as the user stage left it (no JSON parsing: its value is already
the final document); a flagged one gets the detection, its reason and its risk (score capped at 100, level
from the thresholds) added to the document. The output is keyed by ``user_id`` like the user stage's.

A repartition record that cannot be read (someone else wrote to the internal topic) is dead-lettered
untouched with ``error_type=processing_error``, like any other input that cannot be processed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from confluent_kafka import Message

from login_consumer.detectors.networks import NetEvent, NetworkDetector
from login_consumer.process import BatchStats, Header
from login_consumer.risk import RiskModel
from login_consumer.stages.user import ROUTE_HEADER, Record
from login_consumer.validate import Invalid

_ROUTE: Final = ROUTE_HEADER


@dataclass(slots=True)
class NetworkStageResult:
    records: list[Record] = field(default_factory=list)
    dead: list[tuple[Message, Invalid]] = field(default_factory=list)
    stats: BatchStats = field(default_factory=BatchStats)
    latencies: Counter[float] = field(default_factory=Counter)


def read_route(
    headers: Sequence[tuple[str, Any]] | dict[str, Any] | None,
) -> tuple[list[Header], bytes] | None:
    """(output headers, route header value) of a repartition record, or None when it has no route."""
    if not headers:
        return None
    if isinstance(headers, dict):
        headers = list(headers.items())
    for at in range(len(headers) - 1, -1, -1):
        name, value = headers[at]
        if name == _ROUTE and isinstance(value, bytes):
            return [h for i, h in enumerate(headers) if i != at], value
    return None


class NetworkStage:
    """Completes repartitioned events with the network detector's verdict."""

    def __init__(self, detector: NetworkDetector, risk: RiskModel, *, output_topic: str) -> None:
        self.detector = detector
        self.risk = risk
        self.output_topic = output_topic

    def process(self, messages: Sequence[Message]) -> NetworkStageResult:
        started = time.perf_counter()
        result = NetworkStageResult()
        stats = result.stats
        events: list[NetEvent] = []
        kept: list[
            tuple[Message, list[Header], int, int, bytes, bytes]
        ] = []  # msg, headers, flags, score, ip, user
        created: Counter[int] = Counter()
        for msg in messages:
            try:
                headers, route = read_route(msg.headers()) or ([], b"")
                source, created_ms, ts, raw_flags, raw_score, ip, user = route.split(b" ", 6)
                net = (msg.key() or b"").decode()
                if not net or not user or msg.value() is None:
                    raise ValueError("empty network, user or value")
                events.append(
                    NetEvent(
                        msg.partition() or 0,
                        msg.offset() or 0,
                        net,
                        user.decode(),
                        int(ts),
                        int(raw_flags) & 1 == 1,
                        int(source),
                    )
                )
                kept.append((msg, headers, int(raw_flags), int(raw_score), ip, user))
                created[int(created_ms)] += 1
            except (ValueError, UnicodeDecodeError) as exc:
                result.dead.append(
                    (msg, Invalid("processing_error", f"network stage: unreadable record: {exc}"))
                )
        found = self.detector.detect(events) if events else {}
        output = self.output_topic
        records = result.records
        risk = self.risk
        scores = stats.risk_scores
        levels = stats.levels
        for i, (msg, headers, flags, score, ip, user) in enumerate(kept):
            value: bytes = msg.value()  # type: ignore[assignment] # checked above
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
            if flags & 2:  # counted once per event: the user stage flagged it already
                continue
            stats.flagged_users[user.decode("utf-8", "replace")] += 1
            stats.flagged_ips[ip.decode("utf-8", "replace")] += 1
        stats.dlq.update(why.error_type for _, why in result.dead)
        now_ms = time.time() * 1000.0
        for ms, count in created.items():
            if ms > 0:
                result.latencies[max(0.0, (now_ms - ms) / 1000.0)] += count
        stats.seconds = time.perf_counter() - started
        return result
