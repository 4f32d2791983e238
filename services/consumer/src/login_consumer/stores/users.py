"""The user stage's state: bounded, event-time stores per input partition, and their changelog records.

Two stores, each kept in (approximately) least-recently-updated order, so that expiry only ever looks at
the head (``OrderedDict``s, whose head is O(1) to find however many entries were deleted before it):

* ``history`` per partition, ``user_id -> History``: the user's known devices and countries and last
  successful login (new_device, new_country, impossible_travel). Created by a user's first success.
  An update moves the entry to the end at most once per ``MOVE_AFTER`` seconds of event time (moving is
  the costly part of an update); expiry is late by at most that much.
* ``failures`` per partition, ``(ip, user_id) -> Failures``: failure times of one account from one IP.

Windows keep two zones: *live*, the window (t - W, t] ending at the newest event, whose size or number
of accounts is the answer for an in-order event, in O(1); and *grace*, the ``grace`` seconds before it,
kept only so that an event up to ``grace`` seconds out of order still sees its own window (counted by a
scan, bounded: beyond ``SCAN_LIMIT`` entries the live count is used).

Bounds: an entry expires when its last update is older than its store's TTL in event time (the user TTL
for history, window + grace for the others; ``sweep`` runs once per batch), and each store has a maximum
number of entries (the least recently updated go first). Evicted entries become changelog tombstones.

Changelog records (``changes``): the current value of every entry updated since the last call, keyed
``H<user>`` (history), ``F<ip> <user>`` (failure times) and ``W`` (the partition's watermark and last
applied offset), each in its user's input partition. Tombstones come first, so an entry evicted and
created again in one batch ends up present.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

MAX_DEVICES: Final = 64  # per user; the oldest known device is forgotten first
MAX_COUNTRIES: Final = 32
MAX_FAILURES: Final = 256  # per (ip, user) window; beyond, the oldest times go (the count saturates)
SCAN_LIMIT: Final = 32  # out-of-order counts scan at most this many entries (else: the live count)
MOVE_AFTER: Final = 3_600  # seconds of event time between two moves of a history entry
EVICTED: Final = -1  # the ``gen`` of an entry that left its store

H: Final = "H"
F: Final = "F"
W_KEY: Final = b"W"

NEVER: Final = -(1 << 62)  # a watermark before any event


class History:
    """A user's successful logins: devices and countries seen, and the last one (time, country)."""

    __slots__ = ("countries", "devices", "gen", "key", "last_country", "last_ts", "moved", "saved_ts", "user")

    def __init__(  # noqa: PLR0917 - positional on the hot path
        self,
        user: str,
        devices: list[str],
        countries: list[str],
        last_ts: int,
        last_country: str | None,
        gen: int,
    ) -> None:
        self.user = user
        self.devices = devices
        self.countries = countries
        self.last_ts = last_ts
        self.last_country = last_country
        self.gen = gen  # the batch that last changed it (changelog bookkeeping); EVICTED once gone
        self.moved = last_ts  # event time of its last move to the end of the store
        self.saved_ts = last_ts  # last_ts as last written to the changelog
        self.key = (H + user).encode()  # its changelog key

    def encode(self) -> bytes:
        return orjson.dumps((self.last_ts, self.last_country, self.devices, self.countries))


class Failures:
    """Failure times of one account from one IP: live (the window) and grace zones, ascending."""

    __slots__ = ("gen", "grace", "ip", "live", "user")

    def __init__(self, ip: str, user: str, gen: int) -> None:
        self.ip = ip
        self.user = user
        self.live: deque[int] = deque()
        self.grace: deque[int] = deque()
        self.gen = gen

    @property
    def last(self) -> int:
        return self.live[-1] if self.live else (self.grace[-1] if self.grace else NEVER)

    def add(self, ts: int, window: int, grace: int) -> int:
        """Record a failure at ``ts``; the number of failures in (ts - window, ts]."""
        live = self.live
        if not live or ts >= live[-1]:
            horizon = ts - window
            old = self.grace
            while live and live[0] <= horizon:
                old.append(live.popleft())
            slack = horizon - grace
            while old and old[0] <= slack:
                old.popleft()
            live.append(ts)
            if len(live) > MAX_FAILURES:
                live.popleft()
            return len(live)
        newest = live[-1]
        if ts > newest - window:
            _insort(live, ts)
            if len(live) > MAX_FAILURES:
                live.popleft()
        elif ts > newest - window - grace:
            _insort(self.grace, ts)
            if len(self.grace) > MAX_FAILURES:
                self.grace.popleft()
        # (older still: counted for itself, not kept)
        return self.count(ts - window, ts) + (ts <= newest - window - grace)

    def count(self, low: int, high: int) -> int:
        """Failures in (low, high] (exact up to SCAN_LIMIT entries, else the live count)."""
        if len(self.live) + len(self.grace) > SCAN_LIMIT:
            return len(self.live)
        return sum(1 for t in self.grace if low < t <= high) + sum(1 for t in self.live if low < t <= high)

    def key(self) -> bytes:
        return (F + self.ip + " " + self.user).encode()

    def encode(self) -> bytes:
        return orjson.dumps([*self.grace, *self.live])


def _insort(zone: deque[Any], item: Any) -> None:
    """Insert into an ascending deque, searching from the end (out-of-order events are rarely far back)."""
    at = len(zone)
    while at and zone[at - 1] > item:
        at -= 1
    zone.insert(at, item)


@dataclass(slots=True)
class PartitionState:
    """One input partition's stores, clocks and pending changelog work."""

    # OrderedDicts: eviction takes the head, O(1) (a plain dict's head is O(n) after many deletions)
    history: OrderedDict[str, History] = field(default_factory=OrderedDict)
    failures: OrderedDict[tuple[str, str], Failures] = field(default_factory=OrderedDict)
    watermark: int = NEVER  # the latest event time applied
    applied: int = -1  # the input offset of the last event applied
    dirty_history: list[History] = field(default_factory=list)
    dirty_failures: list[Failures] = field(default_factory=list)
    meta_dirty: bool = False


@dataclass(frozen=True, slots=True)
class Limits:
    user_ttl: int  # seconds of event time a user's history is kept after its last success
    failure_window: int  # brute-force window (seconds)
    grace: int  # seconds behind the watermark an event may be and still update state
    max_users: int
    max_failure_keys: int


# (partition, key, value or None for a tombstone)
Change = tuple[int, bytes, bytes | None]


class DetectorState:
    """The stores of every assigned partition, their bounds and their changelog."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.partitions: dict[int, PartitionState] = {}
        self.gen = 1  # incremented per batch; entries remember the batch that changed them
        self._tombstones: list[Change] = []

    # ------------------------------------------------------------------ partitions

    def partition(self, partition: int) -> PartitionState:
        state = self.partitions.get(partition)
        if state is None:
            state = self.partitions[partition] = PartitionState()
        return state

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the state of these partitions (revoked): their new owner restores it."""
        gone = {p for p in partitions if p in self.partitions}
        for p in gone:
            del self.partitions[p]
        self._tombstones = [c for c in self._tombstones if c[0] not in gone]

    # ------------------------------------------------------------------ bounds

    def watermark(self) -> int:
        """The latest event time applied in any partition."""
        return max((s.watermark for s in self.partitions.values()), default=NEVER)

    def sweep(self) -> None:
        """Expire entries by event time and enforce the maximum sizes (once per batch)."""
        limits = self.limits
        for p, state in self.partitions.items():
            if state.watermark == NEVER:
                continue
            history = state.history
            horizon = state.watermark - limits.user_ttl
            while history:
                entry = next(iter(history.values()))
                if entry.last_ts > horizon:
                    break
                self._evict(p, history, entry.user)
            failures = state.failures
            horizon = state.watermark - limits.failure_window - limits.grace
            while failures:
                pair, found = next(iter(failures.items()))
                if found.last > horizon:
                    break
                self._evict(p, failures, pair)
        self._cap("history", limits.max_users)
        self._cap("failures", limits.max_failure_keys)

    def _evict(self, partition: int, store: dict[Any, Any], key: Any) -> None:
        entry = store.pop(key)
        self._tombstones.append((partition, entry.key if isinstance(entry, History) else entry.key(), None))
        entry.gen = EVICTED

    def _cap(self, store: str, cap: int) -> None:
        """Evict the least recently updated entries of the largest partitions down to ``cap`` in all."""
        stores: list[tuple[int, dict[Any, Any]]] = [
            (p, getattr(s, store)) for p, s in self.partitions.items()
        ]
        total = sum(len(d) for _, d in stores)
        while total > cap:
            p, largest = max(stores, key=lambda item: len(item[1]))
            excess = min(total - cap, max(1, len(largest) - cap // max(1, len(stores))))
            for _ in range(excess):
                self._evict(p, largest, next(iter(largest)))
            total -= excess

    def sizes(self) -> dict[str, int]:
        return {
            "user_history": sum(len(s.history) for s in self.partitions.values()),
            "user_ip_failures": sum(len(s.failures) for s in self.partitions.values()),
        }

    # ------------------------------------------------------------------ changelog

    def discard_changes(self) -> None:
        """Start a new batch without producing records (no changelog)."""
        for state in self.partitions.values():
            state.dirty_history.clear()
            state.dirty_failures.clear()
            state.meta_dirty = False
        self._tombstones.clear()
        self.gen += 1

    def changes(self) -> list[Change]:
        """Records for every entry changed (or evicted) since the last call; then starts a new batch."""
        out = self._tombstones
        self._tombstones = []
        append = out.append
        dumps = orjson.dumps
        for p, state in self.partitions.items():
            if state.dirty_history:
                for entry in state.dirty_history:
                    if entry.gen != EVICTED:
                        value = dumps((entry.last_ts, entry.last_country, entry.devices, entry.countries))
                        append((p, entry.key, value))
                        entry.saved_ts = entry.last_ts
                state.dirty_history.clear()
            if state.dirty_failures:
                for failures in state.dirty_failures:
                    if failures.gen != EVICTED:
                        append((p, failures.key(), failures.encode()))
                state.dirty_failures.clear()
            if state.meta_dirty:
                meta = {"watermark": state.watermark, "offset": state.applied}
                append((p, W_KEY, orjson.dumps(meta)))
                state.meta_dirty = False
        self.gen += 1
        return out

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Rebuild one partition's state from its changelog records (oldest first); entries restored."""
        latest: dict[bytes, bytes | None] = {}
        for key, value in records:
            latest[key] = value  # compaction may not have run yet: the last record of a key wins
        state = self.partition(partition)
        gen = self.gen - 1  # restored entries are not changes
        limits = self.limits
        histories: list[History] = []
        failures: list[Failures] = []
        for raw_key, raw_value in latest.items():
            if raw_value is None:
                continue
            try:
                kind, rest = raw_key[:1].decode(), raw_key[1:].decode()
                value = orjson.loads(raw_value)
                if kind == H:
                    last_ts, last_country, devices, countries = value
                    histories.append(
                        History(rest, [str(d) for d in devices], [str(c) for c in countries], int(last_ts),
                                None if last_country is None else str(last_country), gen)
                    )  # fmt: skip
                elif kind == F:
                    ip, _, user = rest.partition(" ")
                    entry = Failures(ip, user, gen)
                    for ts in value:
                        entry.add(int(ts), limits.failure_window, limits.grace)
                    failures.append(entry)
                elif raw_key == W_KEY:
                    state.watermark = max(state.watermark, int(value["watermark"]))
                    state.applied = max(state.applied, int(value["offset"]))
            except (UnicodeDecodeError, orjson.JSONDecodeError, TypeError, ValueError, KeyError, IndexError):
                continue  # a record this version cannot read is skipped, not fatal
        histories.sort(key=lambda h: h.last_ts)
        failures.sort(key=lambda f: f.last)
        state.history.update((h.user, h) for h in histories)
        state.failures.update(((f.ip, f.user), f) for f in failures)
        self.sweep()
        return len(histories) + len(failures)
