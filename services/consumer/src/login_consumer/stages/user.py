"""The user-keyed stage: input topic -> validate, enrich, per-user detectors, score -> next hop.

The input is keyed by ``user_id``, so every event of one account is read by one process, in order: the
per-user detectors (``detectors/users.py``) are exact here. What credential stuffing needs is a network's
failures from every account, which are spread over every input partition, so when the network stage runs
(credential_stuffing enabled) each processed event is re-keyed by its network onto the repartition topic
(``<GROUP_ID>-network-repartition``) instead of going to the output topic; the network stage completes it.

A repartition record is the event's processed document as this stage left it (complete except for the network
detector's verdict), keyed by the network, in the partition ``crc32(network) % partitions`` (stable across
processes and versions), with the output headers plus one internal header, ``x-login-stream-route``: ``<input
partition> <input offset> <input create time ms> <event time> <flags> <risk score> <ip as the output shows it>
<user_id>`` (flags: 1 = a failed login, 2 = already flagged by a user detector, 4 = its trace context is for
the stages' tracer: ``process.ROUTE_TRACED``), so the network stage needs no JSON parsing for events it does
not flag, nor a look at the headers of events whose trace is not sampled. After its batches (and at least
every ``PROGRESS_SECONDS``) the process also writes a *progress* record per input partition it owns to every
repartition partition (header ``x-login-stream-progress``: ``<input partition> <event time> <idle 0/1>``),
which the network stage needs to merge its sources in event-time order (``stages/merge.py``). An event whose
address has no network (none after validation, but never assumed) goes straight to the output topic.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from confluent_kafka import Message

from login_consumer.process import BatchResult, Processor
from login_consumer.records import Header, Record
from login_consumer.stages.keys import network_of, network_partition
from login_consumer.tracing import StageTracer

ROUTE_HEADER: Final = "x-login-stream-route"
PROGRESS_HEADER: Final = "x-login-stream-progress"
# The create time (ms) of the last input record written from the source, beside PROGRESS_HEADER's event
# time: a header of its own, so that a network stage of an older version (reading three fields of the
# first) keeps working through a rolling upgrade (stages/merge.py: ties within one second).
PROGRESS_CREATED_HEADER: Final = "x-login-stream-progress-created"
UNWRITTEN: Final = (-(1 << 62), 0)  # the order key of a source nothing was written from
_NET_CACHE_SIZE: Final = 65_536


@dataclass(slots=True)
class UserStageResult:
    batch: BatchResult
    records: list[Record] = field(default_factory=list)
    completed: int = 0  # records that went straight to the output topic
    latencies: Counter[float] = field(default_factory=Counter)  # seconds -> count, of completed records


class UserStage:
    """Runs the ``Processor`` on input messages and routes each result to its next hop."""

    def __init__(
        self,
        processor: Processor,
        *,
        output_topic: str,
        repartition_topic: str | None = None,
        partitions: int = 1,
        stuffing_prefix: int = 24,
    ) -> None:
        self.processor = processor
        self.output_topic = output_topic
        self.repartition_topic = repartition_topic
        self.partitions = max(1, partitions)
        self.prefix = stuffing_prefix
        processor.final = repartition_topic is None
        self._tracer: StageTracer | None = None
        self._nets: dict[str, tuple[bytes, int] | None] = {}
        # input partition -> the order key (event time, create ms) of the latest event written
        self.sent: dict[int, tuple[int, int]] = {}

    def _network(self, ip: str) -> tuple[bytes, int] | None:
        """(network, repartition partition) of an address, cached (cleared when full: O(1) amortised)."""
        found = self._nets.get(ip, False)
        if found is False:
            if len(self._nets) >= _NET_CACHE_SIZE:
                self._nets.clear()
            net = network_of(ip, self.prefix)
            raw = net.encode() if net is not None else None
            found = self._nets[ip] = None if raw is None else (raw, network_partition(raw, self.partitions))
        return found  # type: ignore[return-value] # False was replaced above

    @property
    def tracer(self) -> StageTracer | None:
        """Set when tracing is on (wiring.py); setting it tells the processor to read each input's trace
        context on its way (``Processor.trace_fast``)."""
        return self._tracer

    @tracer.setter
    def tracer(self, tracer: StageTracer | None) -> None:
        self._tracer = tracer
        self.processor.trace_fast = tracer.follows_parent if tracer is not None else None

    def process(self, messages: Sequence[Message], now: float | None = None) -> UserStageResult:
        tracer = self._tracer
        if tracer is None:
            return self._route(self.processor.process(messages, now))
        started_ns = time.time_ns()
        result = self._route(self.processor.process(messages, now))
        batch = result.batch
        tracer.user_stage(
            batch.outputs, result.records, batch.dead, batch.traced, batch.traced_docs, started_ns=started_ns
        )
        return result

    def _route(self, batch: BatchResult) -> UserStageResult:
        """Each output's record: to the output topic, or (network stage on) to the repartition topic."""
        result = UserStageResult(batch)
        records = result.records
        output = self.output_topic
        hop = self.repartition_topic
        if hop is None:
            records.extend((output, -1, key, value, headers) for _, key, value, headers in batch.outputs)
            result.completed = len(records)
            result.latencies = _latencies(batch.outputs)
            return result
        stats = batch.stats
        network = self._network
        sent = self.sent
        for (msg, key, value, headers), (ip, ts, flags, score, level, shown) in zip(  # noqa: B905 - equal lengths
            batch.outputs, batch.routes
        ):
            found = network(ip)
            if found is None:  # no network: complete here
                records.append((output, -1, key, value, headers))
                result.completed += 1
                stats.risk_scores.append(score)
                stats.levels[level] += 1
                if level == "high" and not flags & 2:
                    stats.flagged_users[key.decode("utf-8", "replace")] += 1
                    stats.flagged_ips[shown] += 1
                continue
            net, partition = found
            kind, created = msg.timestamp()
            created = created if kind else 0
            source = msg.partition() or 0
            if (ts, created) > sent.get(source, UNWRITTEN):
                sent[source] = (ts, created)
            route = b"%d %d %d %d %d %d %s %s" % (
                source,
                msg.offset() or 0,
                created,
                ts,
                flags,
                score,
                shown.encode(),
                key,
            )
            records.append((hop, partition, net, value, [*headers, (ROUTE_HEADER, route)]))
        return result

    def progress(self, source: int, *, idle: bool) -> list[Record]:
        """Progress records of one input partition, one per repartition partition (see module doc)."""
        if self.repartition_topic is None:
            return []
        ts, created = self.sent.get(source, UNWRITTEN)
        headers: list[Header] = [
            (PROGRESS_HEADER, b"%d %d %d" % (source, ts, idle)),
            (PROGRESS_CREATED_HEADER, b"%d" % created),
        ]
        topic = self.repartition_topic
        return [(topic, q, b"", b"", headers) for q in range(self.partitions)]

    def forget(self, sources: Sequence[int]) -> None:
        for source in sources:
            self.sent.pop(source, None)


def _latencies(outputs: Sequence[tuple[Message, bytes, bytes, list[Header]]]) -> Counter[float]:
    """Seconds from each source message's create time to now (its output is handed to the producer),
    counted per distinct create time (batches repeat them a lot)."""
    return latencies_since(Counter(msg.timestamp() for msg, _, _, _ in outputs))


def latencies_since(created: Counter[tuple[int, int]]) -> Counter[float]:
    """``{(timestamp type, create ms): count}`` -> ``{seconds ago: count}`` (unknown times left out)."""
    now_ms = time.time() * 1000.0
    out: Counter[float] = Counter()
    for (kind, ms), count in created.items():
        if kind:  # 0 = TIMESTAMP_NOT_AVAILABLE
            out[max(0.0, (now_ms - ms) / 1000.0)] += count
    return out
