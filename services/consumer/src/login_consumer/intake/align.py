"""Event-time alignment of the input partitions (``EVENT_TIME_ALIGNMENT``).

Events are keyed by user, so one network's credential-stuffing attempts are spread over every input
partition, and a consumer catching up on a backlog reads its partitions at different paces (a fetch
brings thousands of events of one partition at a time): without alignment, the stuffing window would
see one partition's hour next to another partition's day. The aligner buffers consumed messages per
partition and releases them in event-time order: a message is released once no assigned partition can
still deliver an older one, i.e. its event time is at or before every partition's *bound*:

* a partition that has been read to its end (position at its high watermark) is no bound: what it
  delivers next is newer (in real time, the consumer is at the end of every partition most of the time,
  and the aligner then holds nothing back);
* any other partition is bounded by the newest event time read from it (its events arrive in order).

When a partition with unread data has delivered nothing for ``max_wait`` seconds while the client had
nothing else queued locally, it stops holding the others back (like Kafka Streams'
``max.task.idle.ms``); when more than ``max_buffered`` messages are
held, the oldest are released anyway, and a partition holding more than its share is paused until the
others catch up. Released messages keep each partition's offset order (a partition's event times are
made non-decreasing for ordering), so committing the released messages' offsets commits a prefix of
every partition. With one assigned partition the aligner is a pass-through.

Event time is read from the message value (its ``timestamp`` field) with a decoder that skips every
other field; a value that has none sorts with its partition's previous message. Events of the same
second are released in the order they were produced (the record's create time breaks the tie).
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any, Final

import msgspec
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from login_consumer.records import TP

Key = tuple[float, int]  # (event time, the message's create time in ms): the order of release
FIRST: Final[Key] = (-math.inf, 0)
LAST: Final[Key] = (math.inf, 0)
_FIRST: Final = itemgetter(0)


class _Stamp(msgspec.Struct):
    timestamp: int | float | str | None = None


_DECODE: Final = msgspec.json.Decoder(_Stamp).decode
_ERRORS: Final = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError)


def event_time(value: bytes | None) -> float | None:
    """The ``timestamp`` of a raw event (epoch seconds), or None when it has none that reads."""
    if not value:
        return None
    try:
        stamp = _DECODE(value).timestamp
    except _ERRORS:
        return None
    if stamp is None or isinstance(stamp, bool):
        return None
    if isinstance(stamp, str):
        try:
            return float(stamp)
        except ValueError:
            return None
    return float(stamp)


class Aligner:
    """Buffers consumed messages per partition and releases them in event-time order (see module doc)."""

    def __init__(
        self,
        *,
        max_wait: float = 2.0,
        max_buffered: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_wait = max_wait
        self.max_buffered = max_buffered
        self._clock = clock
        self._queues: dict[TP, deque[tuple[Key, Message]]] = {}
        self._newest: dict[TP, Key] = {}  # newest order key read per partition (while assigned)
        self._heard: dict[TP, float] = {}  # when each partition last delivered a message
        self.buffered = 0
        self.forced = 0  # messages released before their turn because too many were held
        self.timeouts = 0  # releases that stopped waiting for a silent partition
        self.ready = False  # the last release was cut short by its limit: more can go at once

    def add(self, messages: Iterable[Message]) -> None:
        queues, newest, heard = self._queues, self._newest, self._heard
        now = self._clock()
        for msg in messages:
            tp = (msg.topic() or "", msg.partition() or 0)
            ts = event_time(msg.value())
            kind, created = msg.timestamp()
            last = newest.get(tp, FIRST)
            key = last if ts is None else (ts, created if kind == TIMESTAMP_CREATE_TIME else 0)
            key = max(key, last)  # keep the partition's order
            newest[tp] = key
            heard[tp] = now
            queue = queues.get(tp)
            if queue is None:
                queue = queues[tp] = deque()
            queue.append((key, msg))
            self.buffered += 1

    def release(
        self,
        assignment: Iterable[TP],
        at_end: Callable[[TP], bool],
        *,
        busy: bool = False,
        limit: int = 0,
    ) -> list[Message]:
        """The messages that can go now, in event-time order (at most ``limit``, 0 = all).

        ``busy``: the client still had messages queued locally (the last read filled a batch), so a
        partition that delivered nothing is behind in that queue, not silent: its wait does not count.
        ``ready`` says afterwards whether more could go at once (the limit cut the release short).
        """
        self.ready = False
        if not self.buffered:
            return []
        now = self._clock()
        if busy:
            for tp in assignment:
                self._heard[tp] = now
        bound = LAST
        for tp in assignment:
            if at_end(tp):
                continue  # what it delivers next is newer than anything read so far
            if not self._queues.get(tp) and now - self._heard.setdefault(tp, now) > self.max_wait:
                self.timeouts += 1
                continue  # silent for too long: stop waiting for it
            bound = min(bound, self._newest.get(tp, FIRST))
        out = self._take(bound)
        if self.buffered > self.max_buffered:
            extra = self._oldest(self.buffered - self.max_buffered // 2)
            self.forced += len(extra)
            out.extend(extra)
        if len(out) > 1:
            out.sort(key=_FIRST)
        if limit and len(out) > limit:
            self._put_back(out[limit:])
            del out[limit:]
            self.ready = True
        return [msg for _, msg in out]

    def _put_back(self, items: list[tuple[Key, Message]]) -> None:
        """Return released items to the front of their queues (each partition's order is kept)."""
        queues = self._queues
        for item in reversed(items):
            msg = item[1]
            queues[(msg.topic() or "", msg.partition() or 0)].appendleft(item)
        self.buffered += len(items)

    def _take(self, bound: Key) -> list[tuple[Key, Message]]:
        out: list[tuple[Key, Message]] = []
        for queue in self._queues.values():
            while queue and queue[0][0] <= bound:
                out.append(queue.popleft())
        self.buffered -= len(out)
        return out

    def _oldest(self, count: int) -> list[tuple[Key, Message]]:
        """The ``count`` oldest buffered messages (by event time, each partition in order).

        A k-way merge of the partition queues through a heap of their heads: O(log P) per message for P
        partitions (the queue's index breaks ties, so equal keys go in assignment order)."""
        out: list[tuple[Key, Message]] = []
        heads = [(q[0][0], n, q) for n, q in enumerate(self._queues.values()) if q]
        heapq.heapify(heads)
        while len(out) < count and heads:
            _, n, queue = heads[0]
            out.append(queue.popleft())
            if queue:
                heapq.heapreplace(heads, (queue[0][0], n, queue))
            else:
                heapq.heappop(heads)
        self.buffered -= len(out)
        return out

    def crowded(self, assignment: Sequence[TP]) -> list[TP]:
        """Partitions holding more than their share of ``max_buffered`` (pause them)."""
        share = self.max_buffered // max(1, len(assignment))
        return [tp for tp in assignment if len(self._queues.get(tp, ())) > share]

    def holding(self, tp: TP) -> int:
        return len(self._queues.get(tp, ()))

    def drop(self, partitions: Iterable[TP]) -> None:
        """Forget the buffered messages of these partitions (revoked, or rewound: they are read again)."""
        for tp in partitions:
            queue = self._queues.pop(tp, None)
            if queue:
                self.buffered -= len(queue)
            self._newest.pop(tp, None)
            self._heard.pop(tp, None)

    def snapshot(self) -> dict[str, Any]:
        return {"buffered": self.buffered, "forced": self.forced, "timeouts": self.timeouts}
