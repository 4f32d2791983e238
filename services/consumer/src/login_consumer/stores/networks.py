"""The network stage's state: per network, the accounts failing from it, over event time.

The network stage reads the repartition topic, where every event of one network (IPv4 /24, IPv6 /64)
lands in the same partition, so each partition of that topic owns its networks outright: the store is
per partition (``NetworkPartition``), restored from and written to the same partition of the network
changelog topic, and handed over with it on a rebalance.

``NetWindow`` keeps, per network, each failing account's latest failure in two zones: *live*, the window
(t - W, t] ending at the network's newest failure, whose size is the answer for an in-order event in
O(1); and *grace*, the ``grace`` seconds before it, kept so that an event up to ``grace`` seconds out of
order still sees its own window (counted by a bounded scan). Both zones are ``OrderedDict``s in ascending
time order: expiry pops from the front and a repeat failure moves its account to the end, each O(1)
whatever the number of networks or accounts (a plain ``dict`` would rescan the deleted slots that
front-deletion leaves behind).

Changelog records (per partition of ``<GROUP_ID>-network-state``): ``N<network> <user>`` -> the account's
latest failure time (ASCII integer), tombstones for accounts that left the window, and ``W`` -> the
partition's progress per source (input) partition: its event-time watermark and the input offset of the
last event processed (events are merged across sources, so a repartition offset is no prefix), and the
merge's greatest released key (``released``: event time, create time ms, source; ``stages/merge.py``), so
that the partition's next owner still recognises an event arriving behind it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import orjson

SCAN_LIMIT: Final = 32  # out-of-order counts scan at most this many accounts (else: the live count)
EVICTED: Final = -1  # the ``gen`` of a window that left its store
NEVER: Final = -(1 << 62)  # a time before any event
N: Final = "N"
W_KEY: Final = b"W"

# (key, value or None for a tombstone)
Record = tuple[bytes, bytes | None]
Released = tuple[float, int, int]  # the merge's order key: (event time, input create time ms, source)
NOTHING_RELEASED: Final[Released] = (-math.inf, 0, -1)


class NetWindow:
    """Accounts failing from one network: each account's latest failure, in the live and grace zones."""

    __slots__ = ("changed", "dead", "gen", "grace", "live", "net", "newest")

    def __init__(self, net: str, gen: int) -> None:
        self.net = net
        self.live: OrderedDict[str, int] = OrderedDict()  # user -> latest failure, ascending
        self.grace: OrderedDict[str, int] = OrderedDict()
        self.newest = NEVER  # the latest failure time
        self.gen = gen  # the batch that last changed it (changelog bookkeeping); EVICTED once gone
        self.changed: list[str] = []  # accounts whose record must be written
        self.dead: list[str] = []  # accounts that left the window (tombstones to write)

    @property
    def last(self) -> int:
        return self.newest

    def advance(self, horizon: int, grace: int) -> None:
        """Move accounts whose latest failure is at or before ``horizon`` to the grace zone; forget the
        ones before the grace zone. O(1) per account moved."""
        live, old = self.live, self.grace
        while live:
            user, ts = next(iter(live.items()))
            if ts > horizon:
                break
            live.popitem(last=False)
            old[user] = ts
        slack = horizon - grace
        while old:
            user, ts = next(iter(old.items()))
            if ts > slack:
                break
            old.popitem(last=False)
            self.dead.append(user)

    def add(self, ts: int, user: str, window: int, grace: int) -> int:
        """Record a failure; the number of distinct accounts failing in (ts - window, ts]."""
        live = self.live
        if ts >= self.newest:
            self.newest = ts
            self.advance(ts - window, grace)
            if user in live:
                del live[user]
            else:
                self.grace.pop(user, None)
            live[user] = ts
            self.changed.append(user)
            return len(live)
        known = live.get(user)
        if known is None:
            known = self.grace.get(user)
        if known is None or known < ts:
            live.pop(user, None)
            self.grace.pop(user, None)
            # out of order: goes at the end of its zone, so it may stay up to its lateness too long
            (live if ts > self.newest - window else self.grace)[user] = ts
            self.changed.append(user)
        return self.count(ts - window, ts)

    def accounts_at(self, ts: int, window: int, grace: int) -> int:
        """Distinct accounts failing in (ts - window, ts] for an event that is not a failure."""
        if ts >= self.newest:
            self.advance(ts - window, grace)
            return len(self.live)
        return self.count(ts - window, ts)

    def count(self, low: int, high: int, extra: str | None = None) -> int:
        """Accounts whose latest failure is in (low, high], plus ``extra`` (beyond SCAN_LIMIT accounts:
        the live zone's)."""
        live = self.live
        if len(live) + len(self.grace) > SCAN_LIMIT:
            return len(live) + (extra is not None and extra not in live)
        users = {u for u, t in self.grace.items() if low < t <= high}
        users.update(u for u, t in live.items() if low < t <= high)
        if extra is not None:
            users.add(extra)
        return len(users)

    def empty(self) -> bool:
        return not self.live and not self.grace

    def entries(self) -> list[tuple[str, int]]:
        """(user_id, latest failure) of every account in the window."""
        return [*self.grace.items(), *self.live.items()]

    def key(self, user: str) -> bytes:
        return (N + self.net + " " + user).encode()


@dataclass(slots=True)
class NetworkPartition:
    """One repartition-topic partition's networks, clocks and pending changelog work."""

    networks: OrderedDict[str, NetWindow] = field(default_factory=OrderedDict)  # least recently updated first
    hot: dict[str, NetWindow] = field(default_factory=dict)  # last failure saw >= threshold accounts
    watermarks: dict[int, int] = field(default_factory=dict)  # source (input) partition -> latest event time
    processed: dict[int, int] = field(default_factory=dict)  # source -> input offset of its last event done
    released: Released = NOTHING_RELEASED  # the greatest key the partition's merge released
    dirty: list[NetWindow] = field(default_factory=list)
    tombstones: list[bytes] = field(default_factory=list)
    meta_dirty: bool = False

    @property
    def clock(self) -> int:
        """The latest event time applied from any source."""
        return max(self.watermarks.values(), default=NEVER)

    def touch(self, window: NetWindow) -> None:
        """Mark ``window`` as the most recently updated network (O(1))."""
        self.networks.move_to_end(window.net)

    def evict(self, net: str) -> None:
        window = self.networks.pop(net)
        self.hot.pop(net, None)
        self.tombstones.extend(window.key(user) for user in window.dead)
        self.tombstones.extend(window.key(user) for user, _ in window.entries())
        window.gen = EVICTED


class NetworkState:
    """The network stores of every assigned repartition partition, their bounds and their changelog."""

    def __init__(self, *, window: int, grace: int, max_networks: int) -> None:
        self.window = window
        self.grace = grace
        self.max_networks = max_networks
        self.partitions: dict[int, NetworkPartition] = {}
        self.gen = 1

    def partition(self, partition: int) -> NetworkPartition:
        state = self.partitions.get(partition)
        if state is None:
            state = self.partitions[partition] = NetworkPartition()
        return state

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget these partitions (revoked): their new owner restores them from the changelog."""
        for p in partitions:
            self.partitions.pop(p, None)

    def sizes(self) -> dict[str, int]:
        return {"network_failures": sum(len(s.networks) for s in self.partitions.values())}

    def sweep(self) -> None:
        """Expire networks by event time and enforce ``max_networks`` (once per batch; O(1) per eviction
        apart from a scan over the assigned partitions)."""
        for state in self.partitions.values():
            clock = state.clock
            if clock == NEVER:
                continue
            horizon = clock - self.window - self.grace
            networks = state.networks
            while networks:
                window = next(iter(networks.values()))
                if window.last > horizon:
                    break
                state.evict(window.net)
        total = sum(len(s.networks) for s in self.partitions.values())
        while total > self.max_networks:
            largest = max(self.partitions.values(), key=lambda s: len(s.networks))
            share = self.max_networks // max(1, len(self.partitions))
            excess = min(total - self.max_networks, max(1, len(largest.networks) - share))
            for _ in range(excess):
                largest.evict(next(iter(largest.networks)))
            total -= excess

    # ------------------------------------------------------------------ changelog

    def changes(self) -> list[tuple[int, bytes, bytes | None]]:
        """(partition, key, value or None) for everything changed since the last call; a new batch starts."""
        out: list[tuple[int, bytes, bytes | None]] = []
        for p, state in self.partitions.items():
            out.extend((p, key, None) for key in state.tombstones)
            state.tombstones.clear()
            for window in state.dirty:
                if window.gen == EVICTED:
                    continue
                out.extend((p, window.key(user), None) for user in window.dead)
                window.dead.clear()
                live, old = window.live, window.grace
                for user in window.changed:
                    ts = live.get(user)
                    if ts is None:
                        ts = old.get(user)
                    if ts is not None:
                        out.append((p, window.key(user), b"%d" % ts))
                window.changed.clear()
            state.dirty.clear()
            if state.meta_dirty:
                meta: dict[str, object] = {
                    "watermarks": {str(k): v for k, v in state.watermarks.items()},
                    "processed": {str(k): v for k, v in state.processed.items()},
                }
                if state.released != NOTHING_RELEASED:
                    meta["released"] = list(state.released)
                out.append((p, W_KEY, orjson.dumps(meta)))
                state.meta_dirty = False
        self.gen += 1
        return out

    def discard_changes(self) -> None:
        for state in self.partitions.values():
            state.tombstones.clear()
            for window in state.dirty:
                window.dead.clear()
                window.changed.clear()
            state.dirty.clear()
            state.meta_dirty = False
        self.gen += 1

    def restore(self, partition: int, records: Iterable[Record]) -> int:
        """Rebuild one partition's networks from its changelog records (oldest first); entries restored."""
        latest: dict[bytes, bytes | None] = {}
        for key, value in records:
            latest[key] = value  # compaction may not have run yet: the last record of a key wins
        self.partitions.pop(partition, None)
        state = self.partition(partition)
        gen = self.gen - 1  # restored entries are not changes
        found: list[tuple[int, str, str]] = []  # (ts, network, user)
        for raw_key, raw_value in latest.items():
            if raw_value is None:
                continue
            try:
                if raw_key == W_KEY:
                    meta = orjson.loads(raw_value)
                    for source, wm in dict(meta["watermarks"]).items():
                        state.watermarks[int(source)] = int(wm)
                    for source, offset in dict(meta["processed"]).items():
                        state.processed[int(source)] = int(offset)
                    if "released" in meta:  # absent: written by an older version, or nothing released
                        ts, created, source = meta["released"]
                        state.released = (float(ts), int(created), int(source))
                elif raw_key[:1] == b"N":
                    net, _, user = raw_key[1:].decode().partition(" ")
                    found.append((int(raw_value), net, user))
            except (UnicodeDecodeError, orjson.JSONDecodeError, TypeError, ValueError, KeyError):
                continue  # a record this version cannot read is skipped, not fatal
        found.sort()
        networks = state.networks
        for ts, net, user in found:
            window = networks.get(net)
            if window is None:
                window = networks[net] = NetWindow(net, gen)
                state.hot[net] = window  # checked (and dropped if below the threshold) by the next success
            window.add(ts, user, self.window, self.grace)
            window.changed.clear()
            window.dead.clear()
            networks.move_to_end(net)
        self.sweep()
        return len(found)
