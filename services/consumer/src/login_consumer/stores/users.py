"""The user stage's state: bounded, event-time stores per input partition, and their changelog records.

Two stores, each kept in (approximately) least-recently-updated order, so that expiry and eviction
only ever look at the oldest entries, in O(1):

* ``history`` per partition, ``user_id -> UserView`` (``histories.UserHistories``): the user's known
  devices and countries and last successful login (new_device, new_country, impossible_travel), kept
  compact (~150 bytes a user: one bytes record per user, keyed by a 60-bit hash of the id, in event-time
  generations; see histories.py). Created by a user's first success.
* ``failures`` per partition, ``(ip, user_id) -> Failures`` (an ``OrderedDict``): failure times of one
  account from one IP.

Windows keep two zones: *live*, the window (t - W, t] ending at the newest event, whose size or number
of accounts is the answer for an in-order event, in O(1); and *grace*, the ``grace`` seconds before it,
kept only so that an event up to ``grace`` seconds out of order still sees its own window (counted by a
scan, bounded: beyond ``SCAN_LIMIT`` entries the live count is used).

Bounds: an entry expires when its last update is older than its store's TTL in event time (the user TTL
for history, window + grace for the others; ``sweep`` runs once per batch), and each store has a maximum
number of entries (the least recently updated go first). Evicted entries become changelog tombstones.

Changelog records (``changes``): the current value of every entry updated since the last call, keyed
``h<8-byte user key>`` (history, the compact record; ``H<user>`` JSON records of earlier versions are
read and rewritten), ``F<ip> <user>`` (failure times) and ``W`` (the partition's watermark and last
applied offset), each in its user's input partition. Tombstones come first, so an entry evicted and
created again in one batch ends up present.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from login_consumer.stores import histories
from login_consumer.stores.histories import UserHistories, UserView

MAX_DEVICES: Final = 64  # per user; the oldest known device is forgotten first
MAX_COUNTRIES: Final = 32
MAX_FAILURES: Final = 256  # per (ip, user) window; beyond, the oldest times go (the count saturates)
SCAN_LIMIT: Final = 32  # out-of-order counts scan at most this many entries (else: the live count)
MOVE_AFTER: Final = 3_600  # seconds of event time between two moves of a history entry
EVICTED: Final = -1  # the ``gen`` of an entry that left its store

F: Final = "F"
W_KEY: Final = b"W"

NEVER: Final = -(1 << 62)  # a watermark before any event


History = UserView  # a user's history as the detectors see it (histories.py)


class Failures:
    """Failure times of one account from one IP: live (the window) and grace zones, ascending lists.

    Lists, not deques: an empty deque costs 760 bytes (a 64-slot block), and there are up to
    ``MAX_STATE_FAILURE_KEYS`` of these; a zone holds at most ``MAX_FAILURES`` times, so taking from
    its front is bounded work."""

    __slots__ = ("gen", "grace", "ip", "live", "user")

    def __init__(self, ip: str, user: str, gen: int) -> None:
        self.ip = ip
        self.user = user
        self.live: list[int] = []
        self.grace: list[int] = []
        self.gen = gen

    @property
    def last(self) -> int:
        return self.live[-1] if self.live else (self.grace[-1] if self.grace else NEVER)

    def add(self, ts: int, window: int, grace: int) -> int:
        """Record a failure at ``ts``; the number of failures in (ts - window, ts]."""
        live = self.live
        if not live or ts >= live[-1]:
            horizon = ts - window
            if live and live[0] <= horizon:  # the oldest leave the window for the grace zone
                cut = bisect_right(live, horizon)
                self.grace.extend(live[:cut])
                del live[:cut]
            old = self.grace
            if old and old[0] <= horizon - grace:
                del old[: bisect_right(old, horizon - grace)]
            live.append(ts)
            if len(live) > MAX_FAILURES:
                del live[0]
            return len(live)
        newest = live[-1]
        if ts > newest - window:
            insort(live, ts)
            if len(live) > MAX_FAILURES:
                del live[0]
        elif ts > newest - window - grace:
            insort(self.grace, ts)
            if len(self.grace) > MAX_FAILURES:
                del self.grace[0]
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


@dataclass(slots=True)
class PartitionState:
    """One input partition's stores, clocks and pending changelog work."""

    history: UserHistories
    failures: OrderedDict[tuple[str, str], Failures] = field(default_factory=OrderedDict)
    watermark: int = NEVER  # the latest event time applied
    applied: int = -1  # the input offset of the last event applied
    dirty_history: list[UserView] = field(default_factory=list)
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
        self._migrated: list[Change] = []  # history records of the previous format, rewritten

    # ------------------------------------------------------------------ partitions

    def partition(self, partition: int) -> PartitionState:
        state = self.partitions.get(partition)
        if state is None:
            state = self.partitions[partition] = PartitionState(UserHistories(self.limits.user_ttl))
        return state

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the state of these partitions (revoked): their new owner restores it."""
        gone = {p for p in partitions if p in self.partitions}
        for p in gone:
            del self.partitions[p]
        self._tombstones = [c for c in self._tombstones if c[0] not in gone]
        self._migrated = [c for c in self._migrated if c[0] not in gone]

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
            state.history.flush()
            for key in state.history.store.expire(state.watermark - limits.user_ttl):
                self._tombstones.append((p, histories.changelog_key(key), None))
            failures = state.failures
            horizon = state.watermark - limits.failure_window - limits.grace
            while failures:
                found = next(iter(failures.values()))
                if found.last > horizon:
                    break
                self._evict(p, failures, 1)
        self._cap([(p, s.history.store) for p, s in self.partitions.items()], limits.max_users)
        self._cap([(p, s.failures) for p, s in self.partitions.items()], limits.max_failure_keys)

    def _evict(self, partition: int, store: Any, count: int) -> None:
        """The ``count`` least recently updated entries of one partition's store go (tombstones)."""
        tombstones = self._tombstones
        if isinstance(store, histories.HistoryStore):
            tombstones.extend((partition, histories.changelog_key(key), None) for key in store.evict(count))
            return
        for _ in range(count):
            _, entry = store.popitem(last=False)
            tombstones.append((partition, entry.key(), None))
            entry.gen = EVICTED

    def _cap(self, stores: list[tuple[int, Any]], cap: int) -> None:
        """Evict the least recently updated entries of the largest partitions down to ``cap`` in all."""
        total = sum(len(d) for _, d in stores)
        while total > cap:
            p, largest = max(stores, key=lambda item: len(item[1]))
            excess = min(total - cap, max(1, len(largest) - cap // max(1, len(stores))))
            self._evict(p, largest, excess)
            total -= excess

    def sizes(self) -> dict[str, int]:
        return {
            "user_history": sum(len(s.history.store) for s in self.partitions.values()),
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
        self._migrated.clear()
        self.gen += 1

    def changes(self) -> list[Change]:
        """Records for every entry changed (or evicted) since the last call; then starts a new batch."""
        out = self._tombstones
        out.extend(self._migrated)
        self._tombstones, self._migrated = [], []
        append = out.append
        for p, state in self.partitions.items():
            if state.dirty_history:
                state.history.flush()
                stored = state.history.store.get
                for entry in state.dirty_history:
                    record = stored(histories.key_of(entry.key))
                    if record is not None:  # else evicted since
                        append((p, entry.key, record))
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
        """Rebuild one partition's state from its changelog records (oldest first); entries restored.

        History records go straight into the compact store as they come (the last record of a key wins,
        a tombstone deletes), so a restore holds no second copy of them; records of the previous format
        (``H<user>``) are converted and rewritten with the next ``changes``, their old key tombstoned."""
        latest: dict[bytes, bytes | None] = {}
        state = self.partition(partition)
        store = state.history.store
        legacy: dict[bytes, bytes | None] = {}
        for key, value in records:
            if key[:1] == histories.KEY_PREFIX:
                try:
                    hashed = histories.key_of(key)
                    if value is None:
                        store.delete(hashed)
                    else:
                        histories.unpack(value)  # a record this version cannot read is skipped
                        store.put(hashed, value, histories.last_ts_of(value))
                except ValueError:
                    continue
            elif key[:1] == b"H":
                legacy[key] = value
            else:
                latest[key] = value  # compaction may not have run yet: the last record of a key wins
        gen = self.gen - 1  # restored entries are not changes
        limits = self.limits
        failures: list[Failures] = []
        for raw_key, raw_value in legacy.items():
            if raw_value is None:
                continue
            try:
                user_key, record = histories.from_legacy(raw_key[1:].decode(), orjson.loads(raw_value))
            except (UnicodeDecodeError, orjson.JSONDecodeError, TypeError, ValueError):
                continue
            store.put(user_key, record, histories.last_ts_of(record))
            self._tombstones.append((partition, raw_key, None))  # the old key goes ...
            self._migrated.append((partition, histories.changelog_key(user_key), record))  # ... for this
        for raw_key, raw_value in latest.items():
            if raw_value is None:
                continue
            try:
                kind, rest = raw_key[:1].decode(), raw_key[1:].decode()
                value = orjson.loads(raw_value)
                if kind == F:
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
        failures.sort(key=lambda f: f.last)
        state.failures.update(((f.ip, f.user), f) for f in failures)
        self.sweep()
        return len(store) + len(failures)
