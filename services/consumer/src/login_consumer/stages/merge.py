"""Event-time order on the network stage: a k-way merge of the sources interleaved in each partition.

One partition of the repartition topic holds the events of its networks from every input partition (the
*sources*), interleaved in the order the user-stage processes happened to write them. With one consumer
process that order is already event-time order (the user stage aligns its input partitions, align.py);
with several, each process writes its own partitions at its own pace, and a network's failures could reach
the network detector out of order by minutes of event time, which would blind it. So the network stage
merges its sources by event time before detecting, as a single process would have seen them:

* every user-stage process writes, after its batches and at least every ``PROGRESS_SECONDS``, a *progress*
  record per input partition it owns to every repartition partition: the event time (order key) of the
  last event it wrote from that source, and whether that source is *idle* (read to its end with nothing
  held back: what it writes next is newer than anything so far, as align.py assumes for a partition at
  its end);
* here each source has a FIFO queue (its events stay in their order) and a bound: an event is released
  when its key is at or before every other source's bound, where a source with queued events is bounded
  by its first event, an idle source not at all, and any other source by its last progress record;
* a source that has not moved on for ``max_wait`` seconds (no event and no higher bound: its process died,
  the group is rebalancing, or its owner is stuck) stops holding the others back, like align.py's silent
  partitions and Kafka Streams' ``max.task.idle.ms``; more than ``max_buffered`` held events release the
  oldest.

Offsets: what is held is not processed, so the network stage commits a repartition partition only up to
its first held offset; records after it that were already processed are read again after a restart or a
rebalance and recognised by their source offset (``NetworkPartition.processed``).

Cost per event: O(log S) for S sources with queued events (a heap of queue heads), O(S) per release
round for the bound.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

T = TypeVar("T")

PROGRESS_SECONDS: Final = 0.5  # the longest a user-stage process stays silent about a source it owns
Key = tuple[float, int, int]  # (event time, input create time ms, repartition offset): the order of release


@dataclass(slots=True)
class _Source(Generic[T]):
    queue: deque[tuple[Key, T]] = field(default_factory=deque)
    bound: float = -math.inf  # the key its owner said it has written up to
    idle: bool = False
    heard: float = 0.0  # when it last moved on: a higher bound, or an event (monotonic seconds)
    last: tuple[float, int] = (-math.inf, 0)  # the newest key queued (non-decreasing per source)


class SourceMerge(Generic[T]):
    """The merge of one repartition partition's sources (see the module doc)."""

    def __init__(
        self,
        sources: int,
        *,
        max_wait: float = 2.0,
        max_buffered: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        now = clock()
        self._clock = clock
        self.max_wait = max_wait
        self.max_buffered = max_buffered
        self.sources: dict[int, _Source[T]] = {s: _Source(heard=now) for s in range(sources)}
        self._offsets: deque[int] = deque()  # offsets of held events, ascending (arrival order)
        self._released: set[int] = set()  # held offsets released out of arrival order
        self.buffered = 0
        self.forced = 0
        self.timeouts = 0

    def _source(self, source: int) -> _Source[T]:
        found = self.sources.get(source)
        if found is None:  # an input partition added since start
            found = self.sources[source] = _Source(heard=self._clock())
        return found

    def progress(self, source: int, bound: float, *, idle: bool) -> None:
        """A progress record: ``source``'s owner has written everything up to ``bound``."""
        src = self._source(source)
        if bound > src.bound or idle != src.idle:
            src.heard = self._clock()
        src.bound = max(src.bound, bound)
        src.idle = idle

    def add(self, source: int, ts: float, offset: int, item: T, created: int = 0) -> None:
        """Queue an event of ``source`` (arrival order = offset order). Events of the same second go in
        the order of their input records' create time (``created``, ms), as align.py orders them."""
        src = self._source(source)
        order = max((ts, created), src.last)
        src.last = order
        key = (order[0], order[1], offset)
        src.queue.append((key, item))
        src.heard = self._clock()
        self._offsets.append(offset)
        self.buffered += 1

    def first_held(self) -> int | None:
        """The smallest offset still held (the partition is committed up to it), or None."""
        offsets, released = self._offsets, self._released
        while offsets and offsets[0] in released:
            released.discard(offsets.popleft())
        return offsets[0] if offsets else None

    def release(self) -> list[T]:
        """Every event that can go now, in event-time order."""
        if not self.buffered:
            return []
        now = self._clock()
        heads: list[tuple[Key, int]] = []
        bound = math.inf
        for number, src in self.sources.items():
            if src.queue:
                heads.append((src.queue[0][0], number))
            elif not src.idle:
                if now - src.heard > self.max_wait:
                    if src.bound != math.inf:
                        self.timeouts += 1
                    continue  # silent too long: stop waiting for it
                bound = min(bound, src.bound)
        heapq.heapify(heads)
        out: list[T] = []
        released = self._released
        while heads:
            key, number = heads[0]
            if key[0] > bound:
                break
            src = self.sources[number]
            _, item = src.queue.popleft()
            out.append(item)
            released.add(key[2])
            if src.queue:
                heapq.heapreplace(heads, (src.queue[0][0], number))
            else:
                heapq.heappop(heads)
                if not src.idle and now - src.heard <= self.max_wait:
                    bound = min(bound, max(src.bound, key[0]))  # it may still send from here on
        self.buffered -= len(out)
        if self.buffered > self.max_buffered:
            out.extend(self._oldest(self.buffered - self.max_buffered // 2))
        return out

    def flush(self) -> list[T]:
        """Everything held, in event-time order, without waiting for any source."""
        return self._oldest(self.buffered, forced=False)

    def _oldest(self, count: int, *, forced: bool = True) -> list[T]:
        """Release the ``count`` oldest held events regardless of the bounds."""
        heads = [(src.queue[0][0], number) for number, src in self.sources.items() if src.queue]
        heapq.heapify(heads)
        out: list[T] = []
        while heads and len(out) < count:
            key, number = heads[0]
            src = self.sources[number]
            _, item = src.queue.popleft()
            out.append(item)
            self._released.add(key[2])
            if src.queue:
                heapq.heapreplace(heads, (src.queue[0][0], number))
            else:
                heapq.heappop(heads)
        self.buffered -= len(out)
        if forced:
            self.forced += len(out)
        return out

    def drop(self) -> None:
        """Forget everything held (revoked or rewound: it is read again)."""
        for src in self.sources.values():
            src.queue.clear()
        self._offsets.clear()
        self._released.clear()
        self.buffered = 0


def merged(partitions: Iterable[SourceMerge[T]]) -> int:
    """Events held over every partition."""
    return sum(m.buffered for m in partitions)
