"""Compact user histories: one ``bytes`` record per user, keyed by a 60-bit hash of the user id.

The history detectors (new_device, new_country, impossible_travel) need, per user, the devices and
countries seen and the last success (time, country). Kept as a slotted object with two lists of strings
and its changelog key, that costs ~0.8 KB a user (898 MB RSS for 1M users); this store keeps ~120 bytes:

* key: ``user_key(user_id)``, the first 60 bits of BLAKE2b-64 of the id (a 2-digit int: 32 bytes; for
  2M users the chance of any collision is ~2e-6, and a collision merges two users' histories);
* value: the record, also the changelog value (no encoding step on the way out or in)::

    version (1 byte, 2) | last_ts (uint32, big-endian) | last country (2 ASCII bytes, "--": none)
    | device count D (1 byte) | D device keys (BLAKE2b-64 of the device id, 8 bytes each)
    | country codes (2 ASCII bytes each)

* order: records live in *generations*, dicts of one ``width`` of event time each (a user updated in an
  older generation moves to the newest). Expiry drops whole generations (older than the TTL), and the
  size cap takes from the oldest generation (``dict.popitem``: O(1)); so both are least recently
  updated first, to one generation's width (``ttl / GENERATIONS``). A look-up tries the generations
  newest first (at most ``GENERATIONS + 1`` dict probes).

Changelog: key ``h`` + the 8-byte big-endian user key, value the record. Records of the previous format
(``H<user_id>`` -> JSON ``[last_ts, last_country, devices, countries]``) are read by ``from_legacy``:
a restore converts them and writes them again in this format, with a tombstone for the old key.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Iterator
from typing import Final

VERSION: Final = 2
KEY_PREFIX: Final = b"h"
GENERATIONS: Final = 8  # generations per TTL: expiry and eviction are LRU to ttl / GENERATIONS
NO_COUNTRY: Final = b"--"
_HEAD: Final = struct.Struct(">BI2sB")  # version, last_ts, last country, device count
HEAD_SIZE: Final = _HEAD.size  # 8
DEVICE_SIZE: Final = 8


def user_key(user: str) -> int:
    """The store's key of a user id: 60 bits of its BLAKE2b-64 (stable across processes)."""
    digest = hashlib.blake2b(user.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 4


def device_key(device: str) -> bytes:
    """The 8 bytes a device id is kept as."""
    return hashlib.blake2b(device.encode(), digest_size=DEVICE_SIZE).digest()


def pack(last_ts: int, last_country: str | None, devices: list[bytes], countries: list[str]) -> bytes:
    """A record (see the module doc); ``devices``: device keys."""
    country = NO_COUNTRY if last_country is None else last_country.encode()
    head = _HEAD.pack(VERSION, max(0, min(last_ts, 0xFFFFFFFF)), country, len(devices))
    return head + b"".join(devices) + "".join(countries).encode()


def unpack(record: bytes) -> tuple[int, str | None, list[bytes], list[str]]:
    """(last_ts, last country, device keys, countries) of a record; ValueError if it is not one."""
    if len(record) < HEAD_SIZE or record[0] != VERSION:
        raise ValueError("not a version 2 history record")
    _, last_ts, country, count = _HEAD.unpack_from(record)
    end = HEAD_SIZE + DEVICE_SIZE * count
    if len(record) < end or (len(record) - end) % 2:
        raise ValueError("truncated history record")
    devices = [record[i : i + DEVICE_SIZE] for i in range(HEAD_SIZE, end, DEVICE_SIZE)]
    text = record[end:].decode("ascii")
    countries = [text[i : i + 2] for i in range(0, len(text), 2)]
    return last_ts, None if country == NO_COUNTRY else country.decode("ascii"), devices, countries


def last_ts_of(record: bytes) -> int:
    return int.from_bytes(record[1:5], "big")


def last_country_of(record: bytes) -> bytes:
    return record[5:7]


def with_last_ts(record: bytes, ts: int) -> bytes:
    """The record with only its last success time moved (the common update)."""
    return record[:1] + ts.to_bytes(4, "big") + record[5:]


def has_device(record: bytes, device: bytes) -> bool:
    end = HEAD_SIZE + DEVICE_SIZE * record[7]
    at = record.find(device, HEAD_SIZE, end)
    while at >= 0:
        if (at - HEAD_SIZE) % DEVICE_SIZE == 0:
            return True
        at = record.find(device, at + 1, end)
    return False


def has_country(record: bytes, country: bytes) -> bool:
    start = HEAD_SIZE + DEVICE_SIZE * record[7]
    at = record.find(country, start)
    while at >= 0:
        if (at - start) % 2 == 0:
            return True
        at = record.find(country, at + 1)
    return False


def changelog_key(key: int) -> bytes:
    return KEY_PREFIX + key.to_bytes(8, "big")


def key_of(changelog: bytes) -> int:
    """The user key of a changelog key ``h...``; ValueError if it is not one."""
    if len(changelog) != 9 or changelog[:1] != KEY_PREFIX:
        raise ValueError("not a version 2 history key")
    return int.from_bytes(changelog[1:], "big")


def from_legacy(user: str, value: list[object]) -> tuple[int, bytes]:
    """(key, record) of a previous-format record ``H<user>`` -> ``[last_ts, country, devices, countries]``."""
    last_ts, last_country, devices, countries = value
    if not isinstance(devices, list) or not isinstance(countries, list):
        raise ValueError("legacy history record: devices and countries must be lists")
    record = pack(
        int(last_ts),  # type: ignore[call-overload]
        None if last_country is None else str(last_country),
        [device_key(str(d)) for d in devices][-255:],
        [str(c) for c in countries if len(str(c)) == 2 and str(c).isascii()],
    )
    return user_key(user), record


class HistoryStore:
    """One partition's histories (see the module doc). ``put`` records an update at event time ``ts``."""

    def __init__(self, ttl: int) -> None:
        self.width = max(1, ttl // GENERATIONS)
        self._gens: deque[tuple[int, dict[int, bytes]]] = deque()  # (generation number, records)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def get(self, key: int) -> bytes | None:
        for _, records in reversed(self._gens):
            found = records.get(key)
            if found is not None:
                return found
        return None

    def put(self, key: int, record: bytes, ts: int) -> None:
        gens = self._gens
        number = ts // self.width
        if not gens or gens[-1][0] < number:
            gens.append((number, {}))
        newest = gens[-1][1]
        if key not in newest:
            for _, records in gens:
                if records is not newest and records.pop(key, None) is not None:
                    break
            else:
                self._count += 1
        newest[key] = record

    def delete(self, key: int) -> None:
        for _, records in self._gens:
            if records.pop(key, None) is not None:
                self._count -= 1
                return

    def expire(self, horizon: int) -> Iterator[int]:
        """Drop (and yield) the keys of every generation that ends at or before ``horizon``."""
        gens = self._gens
        while gens and (gens[0][0] + 1) * self.width <= horizon:
            _, records = gens.popleft()
            self._count -= len(records)
            yield from records

    def evict(self, count: int) -> Iterator[int]:
        """Drop (and yield) ``count`` keys, from the oldest generation first."""
        gens = self._gens
        while count > 0 and gens:
            records = gens[0][1]
            if not records:
                gens.popleft()
                continue
            key, _ = records.popitem()
            self._count -= 1
            count -= 1
            yield key

    def items(self) -> Iterator[tuple[int, bytes]]:
        for _, records in self._gens:
            yield from records.items()


class UserView:
    """A user's history decoded for the detectors (devices as device keys); ``UserHistories`` packs it
    back into its store at the end of the batch."""

    __slots__ = ("countries", "devices", "gen", "key", "last_country", "last_ts", "moved", "saved_ts", "user")

    def __init__(  # noqa: PLR0917 - positional on the hot path
        self,
        user: str,
        devices: list[bytes],
        countries: list[str],
        last_ts: int,
        last_country: str | None,
        gen: int,
        key: int | None = None,
    ) -> None:
        self.user = user
        self.devices = devices
        self.countries = countries
        self.last_ts = last_ts
        self.last_country = last_country
        self.gen = gen  # the batch that last changed it (changelog bookkeeping)
        self.moved = last_ts  # unused: the store orders by generation (kept for the detectors' code)
        self.saved_ts = last_ts  # last_ts as last written to the changelog
        self.key = changelog_key(user_key(user) if key is None else key)

    def record(self) -> bytes:
        return pack(self.last_ts, self.last_country, self.devices, self.countries)


class UserHistories:
    """``user_id -> UserView`` as the detectors use it, over a ``HistoryStore``.

    The users of the current batch are decoded once into views (``get``) and packed back by ``flush``
    (called before expiry and the changelog, once per batch); everything else stays packed. Deleting a
    user is a no-op and setting one records its view: the store moves users between generations itself.
    """

    def __init__(self, ttl: int) -> None:
        self.store = HistoryStore(ttl)
        self._views: dict[str, UserView] = {}

    def __len__(self) -> int:
        return len(self.store) + sum(1 for v in self._views.values() if self.store.get(key_of(v.key)) is None)

    def get(self, user: str) -> UserView | None:
        view = self._views.get(user)
        if view is None:
            key = user_key(user)
            record = self.store.get(key)
            if record is not None:
                last_ts, last_country, devices, countries = unpack(record)
                view = self._views[user] = UserView(user, devices, countries, last_ts, last_country, 0, key)
        return view

    def __setitem__(self, user: str, view: UserView) -> None:
        self._views[user] = view

    def __delitem__(self, user: str) -> None:
        return None

    def flush(self) -> None:
        """Pack the views the batch changed (``gen`` set) back into the store; forget the others.

        A view whose only change is a later time that was not written to the changelog (the
        ``STATE_TIME_SLACK_SECONDS`` rule) is not packed either: memory keeps what a restore would."""
        put = self.store.put
        for view in self._views.values():
            if view.gen:
                put(key_of(view.key), view.record(), view.last_ts)
        self._views.clear()
