"""Detector state: bounded, event-time stores per input partition, and their changelog encoding.

Three stores, each a plain ``dict`` kept in least-recently-updated order (an update moves the entry to
the end), so expiry only ever looks at the head:

* ``history`` per partition, ``user_id -> History``: the user's known devices and countries and last
  successful login (new_device, new_country, impossible_travel). Created by a user's first success.
* ``failures`` per partition, ``(user_id, ip) -> Failures``: failure times in the brute-force window.
* ``networks`` (one store for all partitions, since a network's events come from every partition),
  ``network -> NetWindow``: failures ``(ts, user_id, partition)`` in the credential-stuffing window and
  the number of failures per account among them.

Bounds: an entry expires when its last update is older than its store's TTL in event time (the user
TTL for history, the window for the others; ``sweep`` runs once per batch), and each store has a maximum
number of entries (the least recently updated go first). Evicted entries become changelog tombstones.

Changelog records (``changes``) carry the current value of every entry updated since the last call,
keyed by a JSON array (``["H", user]``, ``["F", user, ip]``, ``["N", network]``, ``["W"]``) and
addressed to the entry's input partition; a network's record in partition *p* holds only the failures
that came from *p*. ``["W"]`` holds the partition's watermark and last applied input offset.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

MAX_DEVICES: Final = 16  # per user; the oldest known device is forgotten first
MAX_COUNTRIES: Final = 16
MAX_FAILURES: Final = 1_000  # per (user, ip) window; beyond, the oldest times go

H: Final = "H"
F: Final = "F"
N: Final = "N"
W: Final = "W"

NEVER: Final = -(1 << 62)  # a watermark before any event


class History:
    """A user's successful logins: devices and countries seen, and the last one (time, country)."""

    __slots__ = ("countries", "devices", "gen", "last_country", "last_ts")

    def __init__(
        self, devices: list[str], countries: list[str], last_ts: int, last_country: str | None, gen: int
    ) -> None:
        self.devices = devices
        self.countries = countries
        self.last_ts = last_ts
        self.last_country = last_country
        self.gen = gen  # the batch that last changed it (changelog bookkeeping)

    def encode(self) -> bytes:
        return orjson.dumps([self.last_ts, self.last_country, self.devices, self.countries])


class Failures:
    """Failure times of one (user, ip), ascending, within the brute-force window."""

    __slots__ = ("gen", "times")

    def __init__(self, times: deque[int], gen: int) -> None:
        self.times = times
        self.gen = gen

    @property
    def last(self) -> int:
        return self.times[-1] if self.times else NEVER

    def encode(self) -> bytes:
        return orjson.dumps(list(self.times))


class NetWindow:
    """Failures from one network within the credential-stuffing window, ascending by time."""

    __slots__ = ("accounts", "entries", "gen", "parts")

    def __init__(self, gen: int) -> None:
        self.entries: deque[tuple[int, str, int]] = deque()  # (ts, user_id, partition)
        self.accounts: dict[str, int] = {}  # user_id -> failures among entries
        self.gen = gen
        self.parts: set[int] = set()  # partitions whose share was last written to the changelog

    @property
    def last(self) -> int:
        return self.entries[-1][0] if self.entries else NEVER

    def add(self, ts: int, user: str, partition: int) -> None:
        """Insert in time order (at the end unless the event is out of order)."""
        entries = self.entries
        item = (ts, user, partition)
        if not entries or ts >= entries[-1][0]:
            entries.append(item)
        else:
            index = len(entries)
            while index and entries[index - 1][0] > ts:
                index -= 1
            entries.insert(index, item)
        accounts = self.accounts
        accounts[user] = accounts.get(user, 0) + 1

    def expire(self, horizon: int) -> None:
        """Drop failures at or before ``horizon``."""
        entries, accounts = self.entries, self.accounts
        while entries and entries[0][0] <= horizon:
            user = entries.popleft()[1]
            left = accounts[user] - 1
            if left:
                accounts[user] = left
            else:
                del accounts[user]

    def accounts_between(self, low: int, high: int, extra: str | None = None) -> int:
        """Distinct accounts with a failure in (low, high], plus ``extra`` (an uncounted failure)."""
        users = {user for ts, user, _ in self.entries if low < ts <= high}
        if extra is not None:
            users.add(extra)
        return len(users)

    def drop_partitions(self, partitions: set[int]) -> None:
        kept = [entry for entry in self.entries if entry[2] not in partitions]
        self.entries = deque(kept)
        accounts: dict[str, int] = {}
        for _, user, _ in kept:
            accounts[user] = accounts.get(user, 0) + 1
        self.accounts = accounts
        self.parts -= partitions

    def share(self, partition: int) -> list[tuple[int, str]]:
        return [(ts, user) for ts, user, p in self.entries if p == partition]


@dataclass(slots=True)
class PartitionState:
    """One input partition's stores and clocks."""

    history: dict[str, History]
    failures: dict[tuple[str, str], Failures]
    watermark: int = NEVER  # the latest event time applied
    applied: int = -1  # the input offset of the last event applied
    meta_gen: int = 0  # the batch that last changed watermark/applied


@dataclass(frozen=True, slots=True)
class Limits:
    user_ttl: int  # seconds of event time a user's history is kept after its last success
    failure_window: int  # brute-force window (seconds)
    network_window: int  # credential-stuffing window (seconds)
    grace: int  # seconds behind the watermark an event may be and still update state
    max_users: int
    max_failure_keys: int
    max_networks: int


# (partition, key, value or None for a tombstone)
Change = tuple[int, bytes, bytes | None]


def _key(*parts: str) -> bytes:
    return orjson.dumps(parts)


class DetectorState:
    """The stores of every assigned partition, their bounds and their changelog."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.partitions: dict[int, PartitionState] = {}
        self.networks: dict[str, NetWindow] = {}
        self.gen = 1  # incremented per batch; entries remember the batch that changed them
        self._flushed_gen = 0
        self._tombstones: list[Change] = []

    # ------------------------------------------------------------------ partitions

    def partition(self, partition: int) -> PartitionState:
        state = self.partitions.get(partition)
        if state is None:
            state = self.partitions[partition] = PartitionState({}, {})
        return state

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the state of these partitions (revoked): their new owner restores it."""
        gone = {p for p in partitions if p in self.partitions}
        for p in gone:
            del self.partitions[p]
        if gone:
            for net in list(self.networks):
                window = self.networks[net]
                window.drop_partitions(gone)
                if not window.entries:
                    del self.networks[net]
        self._tombstones = [c for c in self._tombstones if c[0] not in gone]

    # ------------------------------------------------------------------ bounds

    def watermark(self) -> int:
        """The latest event time applied in any partition."""
        return max((s.watermark for s in self.partitions.values()), default=NEVER)

    def sweep(self) -> None:
        """Expire entries by event time and enforce the maximum sizes (once per batch)."""
        limits = self.limits
        tombstones = self._tombstones
        for p, state in self.partitions.items():
            if state.watermark == NEVER:
                continue
            _expire(state.history, state.watermark - limits.user_ttl, lambda h: h.last_ts, p, H, tombstones)
            _expire(
                state.failures,
                state.watermark - limits.failure_window - limits.grace,
                lambda f: f.last,
                p,
                F,
                tombstones,
            )
        clock = self.watermark()
        if clock != NEVER:
            horizon = clock - limits.network_window - limits.grace
            networks = self.networks
            while networks:
                net = next(iter(networks))
                window = networks[net]
                if window.last > horizon:
                    break
                del networks[net]
                tombstones.extend((p, _key(N, net), None) for p in window.parts)
        self._cap_partitioned("history", limits.max_users, H)
        self._cap_partitioned("failures", limits.max_failure_keys, F)
        while len(self.networks) > limits.max_networks:
            net = next(iter(self.networks))
            window = self.networks.pop(net)
            tombstones.extend((p, _key(N, net), None) for p in window.parts)

    def _cap_partitioned(self, store: str, cap: int, kind: str) -> None:
        stores: list[tuple[int, dict[Any, Any]]] = [
            (p, getattr(s, store)) for p, s in self.partitions.items()
        ]
        total = sum(len(d) for _, d in stores)
        while total > cap:
            p, largest = max(stores, key=lambda item: len(item[1]))
            excess = min(total - cap, max(1, len(largest) - cap // max(1, len(stores))))
            for _ in range(excess):
                key = next(iter(largest))
                del largest[key]
                self._tombstones.append((p, _key(kind, *((key,) if isinstance(key, str) else key)), None))
            total -= excess

    def sizes(self) -> dict[str, int]:
        return {
            "user_history": sum(len(s.history) for s in self.partitions.values()),
            "user_ip_failures": sum(len(s.failures) for s in self.partitions.values()),
            "network_failures": len(self.networks),
        }

    # ------------------------------------------------------------------ changelog

    def changes(self) -> list[Change]:
        """Records for every entry changed (or evicted) since the last call; then starts a new batch."""
        since = self._flushed_gen
        out = self._tombstones
        self._tombstones = []
        for p, state in self.partitions.items():
            for user in reversed(state.history):
                entry = state.history[user]
                if entry.gen <= since:
                    break
                out.append((p, _key(H, user), entry.encode()))
            for pair in reversed(state.failures):
                failures = state.failures[pair]
                if failures.gen <= since:
                    break
                out.append((p, _key(F, *pair), failures.encode()))
            if state.meta_gen > since:
                out.append(
                    (p, _key(W), orjson.dumps({"watermark": state.watermark, "offset": state.applied}))
                )
        for net in reversed(self.networks):
            window = self.networks[net]
            if window.gen <= since:
                break
            shares: dict[int, list[tuple[int, str]]] = {}
            for ts, user, p in window.entries:
                shares.setdefault(p, []).append((ts, user))
            for p in window.parts - shares.keys():
                out.append((p, _key(N, net), None))
            for p, share in shares.items():
                out.append((p, _key(N, net), orjson.dumps(share)))
            window.parts = set(shares)
        self._flushed_gen = self.gen
        self.gen += 1
        return out

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Rebuild one partition's state from its changelog records (oldest first); entries applied."""
        latest: dict[bytes, bytes | None] = {}
        for key, value in records:
            latest[key] = value  # compaction may not have run yet: the last record of a key wins
        state = self.partition(partition)
        gen = self._flushed_gen  # restored entries are not changes
        histories: list[tuple[str, History]] = []
        failures: list[tuple[tuple[str, str], Failures]] = []
        nets: list[tuple[str, list[Any]]] = []
        for raw_key, raw_value in latest.items():
            if raw_value is None:
                continue
            try:
                key = orjson.loads(raw_key)
                value = orjson.loads(raw_value)
                kind = key[0]
                if kind == H:
                    last_ts, last_country, devices, countries = value
                    histories.append(
                        (
                            str(key[1]),
                            History(list(devices), list(countries), int(last_ts), last_country, gen),
                        )
                    )
                elif kind == F:
                    failures.append(((str(key[1]), str(key[2])), Failures(deque(int(t) for t in value), gen)))
                elif kind == N:
                    nets.append((str(key[1]), value))
                elif kind == W:
                    state.watermark = max(state.watermark, int(value["watermark"]))
                    state.applied = max(state.applied, int(value["offset"]))
            except (orjson.JSONDecodeError, TypeError, ValueError, KeyError, IndexError):
                continue  # a record this version cannot read is skipped, not fatal
        histories.sort(key=lambda item: item[1].last_ts)
        failures.sort(key=lambda item: item[1].last)
        state.history.update(histories)
        state.failures.update(failures)
        for net, share in nets:
            window = self.networks.get(net)
            if window is None:
                window = self.networks[net] = NetWindow(gen)
            for ts, user in share:
                window.add(int(ts), str(user), partition)
            window.parts.add(partition)
        if nets:  # keep the network store in least-recently-updated order
            self.networks = dict(sorted(self.networks.items(), key=lambda item: item[1].last))
        self.sweep()
        return len(histories) + len(failures) + len(nets)


def _expire(  # noqa: PLR0917
    store: dict[Any, Any],
    horizon: int,
    last: Any,
    partition: int,
    kind: str,
    tombstones: list[Change],
) -> None:
    """Pop entries from the head of a least-recently-updated store while their last time <= horizon."""
    while store:
        key = next(iter(store))
        if last(store[key]) > horizon:
            return
        del store[key]
        tombstones.append((partition, _key(kind, *((key,) if isinstance(key, str) else key)), None))


def decode_key(raw: bytes) -> list[str]:
    """A changelog key as its parts (for tests and tools)."""
    parts = orjson.loads(raw)
    if not isinstance(parts, list):
        raise ValueError("not a changelog key")
    return [str(part) for part in parts]
