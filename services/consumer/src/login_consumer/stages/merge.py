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
  its end). A claim stands until the source's owner writes again, so an owner giving the source up (a
  rebalance, a stop) withdraws it in the batch its hand-over commits (``Topology.resign``), and a new
  owner judges "its end" by the broker's high watermark at the assignment, never by the client's cache
  of a fetch from before the hand-over (``intake/ends.py``);
* here each source has a FIFO queue (its events stay in their order) and a bound: an event is released
  when its key is before every other source's bound, where a source with queued events is bounded
  by its first event, an idle source not at all, and any other source by its last progress record;
* the order is total and the same whatever the arrival: (event time, input create time ms, source), and
  within a source its own order. Event times are whole seconds, so many events share one; a progress
  record therefore carries the create time of the source's last event too (its own header, read as "the
  whole second" when absent: an older user stage), and an event waits for a source that may still write
  an event of the same second created earlier. A bound of event time alone (before) released such an event
  as soon as the other source reached its second, and the count a network had at a given event then
  depended on which process wrote first: a rescaled run flagged other events of a wave than one process;
* a source that has not moved on for ``max_wait`` seconds (no event and no higher bound: its process died,
  the group is rebalancing, or its owner is stuck) stops holding the others back, like align.py's silent
  partitions and Kafka Streams' ``max.task.idle.ms``; more than ``max_buffered`` held events release the
  oldest;
* *idle* is a claim about the broker, not about the producers: an input partition read to its end can
  still be written an event created before the ones another partition already delivered (a producer's
  batch for one partition reaches the broker after its batch for another). Such an event arrives here
  after a later one was released: it is counted (``late``, cause ``late_arrival`` in the metrics) where
  it is seen, as an out-of-order release. What was released is remembered (``top``) in the network
  changelog with the partition's other progress, so the new owner of a partition counts it too.

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
LAST_OF_SECOND: Final = 1 << 62  # a bound's create time when its progress record has none: the whole second
# (event time, input create time ms, source, repartition offset): the order of release; the offset is
# bookkeeping only (no two sources share a key's first three, and a source's own queue is FIFO)
Key = tuple[float, int, int, int]
NEVER: Final[Key] = (-math.inf, 0, -1, -1)
OPEN: Final[Key] = (math.inf, 0, -1, -1)  # no bound at all
Released = tuple[float, int, int]  # a key's order fields: (event time, input create time ms, source)
NOTHING: Final[Released] = (-math.inf, 0, -1)  # nothing released yet


@dataclass(slots=True)
class _Source(Generic[T]):
    queue: deque[tuple[Key, T]] = field(default_factory=deque)
    bound: Key = NEVER  # the key its owner said it has written up to (offset: unused)
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
        top: Released = NOTHING,
    ) -> None:
        """``top``: the greatest key released from this partition before (by a previous owner)."""
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
        self.top = top  # the greatest key released so far
        self.late = 0  # events that arrived after a later one was released

    def _source(self, source: int) -> _Source[T]:
        found = self.sources.get(source)
        if found is None:  # an input partition added since start
            found = self.sources[source] = _Source(heard=self._clock())
        return found

    def progress(self, source: int, bound: float, *, idle: bool, created: int = LAST_OF_SECOND) -> None:
        """A progress record: ``source``'s owner has written everything up to event time ``bound`` and,
        within that second, input create time ``created``."""
        src = self._source(source)
        key = (bound, created, source, -1)
        if key > src.bound or idle != src.idle:
            src.heard = self._clock()
            src.bound = max(src.bound, key)
        src.idle = idle

    def add(self, source: int, ts: float, offset: int, item: T, created: int = 0) -> None:
        """Queue an event of ``source`` (arrival order = offset order). Events of the same second go in
        the order of their input records' create time (``created``, ms), as align.py orders them."""
        src = self._source(source)
        order = max((ts, created), src.last)
        src.last = order
        key = (order[0], order[1], source, offset)
        if key[:3] < self.top:
            self.late += 1
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
        bound: Key = OPEN
        for number, src in self.sources.items():
            if src.queue:
                heads.append((src.queue[0][0], number))
            elif not src.idle:
                if now - src.heard > self.max_wait:
                    self.timeouts += 1
                    continue  # silent too long: stop waiting for it
                bound = min(bound, src.bound)
        heapq.heapify(heads)
        out: list[T] = []
        released = self._released
        last = NEVER
        while heads:
            key, number = heads[0]
            if key > bound:  # never equal: the bound is another source's (its third field differs)
                break
            src = self.sources[number]
            _, item = src.queue.popleft()
            out.append(item)
            released.add(key[3])
            last = key
            if src.queue:
                heapq.heapreplace(heads, (src.queue[0][0], number))
            else:
                heapq.heappop(heads)
                if not src.idle and now - src.heard <= self.max_wait:
                    bound = min(bound, max(src.bound, key))  # it may still send from here on
        self.buffered -= len(out)
        self._top(last)
        if self.buffered > self.max_buffered:
            out.extend(self._oldest(self.buffered - self.max_buffered // 2))
        return out

    def _top(self, key: Key) -> None:
        """``key`` was released last (keys leave the heap in ascending order: the greatest of a round)."""
        self.top = max(self.top, key[:3])

    def flush(self) -> list[T]:
        """Everything held, in event-time order, without waiting for any source."""
        return self._oldest(self.buffered, forced=False)

    def _oldest(self, count: int, *, forced: bool = True) -> list[T]:
        """Release the ``count`` oldest held events regardless of the bounds."""
        heads = [(src.queue[0][0], number) for number, src in self.sources.items() if src.queue]
        heapq.heapify(heads)
        out: list[T] = []
        last = NEVER
        while heads and len(out) < count:
            key, number = heads[0]
            src = self.sources[number]
            _, item = src.queue.popleft()
            out.append(item)
            self._released.add(key[3])
            last = key
            if src.queue:
                heapq.heapreplace(heads, (src.queue[0][0], number))
            else:
                heapq.heappop(heads)
        self.buffered -= len(out)
        self._top(last)
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
