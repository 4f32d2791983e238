"""Workload H of `make bench`: high-cardinality traffic in the public login-event generators' format.

The 7 generator fields only (`user_id`, `app_version`, `ip`, `locale`, `device_id`, `timestamp`,
`device_type`), with the generators' quirks: a fresh `user_id` (UUID), a fresh `device_id` (`ddd-dd-dddd`,
distinct for every event) and a random IPv4 from the whole range on every event; about 5% without
`device_type`; `device_type` in mixed case; `locale` mostly a US state; `timestamp` as an int or as a
numeric string. Event time moves forward at `per_second` events a second with bursts (every 50th second
carries 10x the events), a share of events arrives out of order (up to a minute behind) and a smaller
share late (behind the detectors' 5-minute grace period, still within the consumer's 30-day bound).
Deterministic for a seed. Pure: no Kafka (harness.py produces it). Unit-tested in
tests/unit/test_bench_traffic.py.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Final

import orjson

US_STATES: Final = (
    "AL",
    "AK",
    "AZ",
    "AR",
    "CA",
    "CO",
    "CT",
    "DE",
    "DC",
    "FL",
    "GA",
    "HI",
    "ID",
    "IL",
    "IN",
    "IA",
    "KS",
    "KY",
    "LA",
    "ME",
    "MD",
    "MA",
    "MI",
    "MN",
    "MS",
    "MO",
    "MT",
    "NE",
    "NV",
    "NH",
    "NJ",
    "NM",
    "NY",
    "NC",
    "ND",
    "OH",
    "OK",
    "OR",
    "PA",
    "RI",
    "SC",
    "SD",
    "TN",
    "TX",
    "UT",
    "VT",
    "VA",
    "WA",
    "WV",
    "WI",
    "WY",
)
COUNTRIES: Final = ("GB", "DE", "FR", "IN", "BR", "JP", "MX", "CA", "AU", "NG")
DEVICE_TYPES: Final = ("android", "Android", "iOS", "ios", "web", "Web")
APP_VERSIONS: Final = ("2.2.0", "2.3.0", "2.3.1", "2.4.0", "2.4.1", "3.0.0", "1.9.9")
NO_DEVICE_TYPE_SHARE: Final = 0.05
STRING_TIMESTAMP_SHARE: Final = 0.5
OUT_OF_ORDER_SHARE: Final = 0.02  # 1-60 s behind the stream's clock
LATE_SHARE: Final = 0.005  # 6-60 min behind: past the detectors' grace period
BURST_EVERY: Final = 50  # every 50th second of event time ...
BURST_FACTOR: Final = 10  # ... carries 10x the events
_DEVICE_SPACE: Final = 1_000_000_000  # ddd-dd-dddd
_DEVICE_STEP: Final = 387_420_489  # 3**18, coprime with 10**9: i -> i*step mod 10**9 is a bijection


def device_id(index: int, offset: int) -> str:
    """The `ddd-dd-dddd` id of the index-th event: distinct for the first 10**9 indexes of one offset."""
    n = (index * _DEVICE_STEP + offset) % _DEVICE_SPACE
    digits = f"{n:09d}"
    return f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"


def event_seconds(count: int, per_second: int) -> int:
    """How many seconds of event time ``count`` events span (bursts included)."""
    seconds, left = 0, count
    while left > 0:
        left -= per_second * (BURST_FACTOR if seconds % BURST_EVERY == BURST_EVERY - 1 else 1)
        seconds += 1
    return seconds


def h_event(rng: random.Random, index: int, ts: int, device_offset: int) -> dict[str, object]:
    """One generator-format event with fresh ids; ``ts`` is its event time (epoch seconds)."""
    event: dict[str, object] = {
        "user_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "app_version": rng.choice(APP_VERSIONS),
        "ip": f"{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
        "locale": rng.choice(US_STATES) if rng.random() < 0.9 else rng.choice(COUNTRIES),
        "device_id": device_id(index, device_offset),
        "timestamp": str(ts) if rng.random() < STRING_TIMESTAMP_SHARE else ts,
    }
    if rng.random() >= NO_DEVICE_TYPE_SHARE:
        event["device_type"] = rng.choice(DEVICE_TYPES)
    return event


def h_workload(
    count: int, *, end: int, seed: int = 9, per_second: int = 1_000
) -> Iterator[tuple[bytes, bytes]]:
    """``count`` events as (key, value) bytes, event time ending at ``end`` (epoch seconds).

    The key is the `user_id`, as the generators' Kafka producers and login-producer key them.
    """
    rng = random.Random(seed)
    device_offset = rng.randrange(_DEVICE_SPACE)
    second = end - event_seconds(count, per_second)
    index = 0
    tick = 0
    while index < count:
        in_second = per_second * (BURST_FACTOR if tick % BURST_EVERY == BURST_EVERY - 1 else 1)
        for _ in range(min(in_second, count - index)):
            ts = second
            draw = rng.random()
            if draw < LATE_SHARE:
                ts -= rng.randint(360, 3_600)
            elif draw < LATE_SHARE + OUT_OF_ORDER_SHARE:
                ts -= rng.randint(1, 60)
            event = h_event(rng, index, ts, device_offset)
            yield str(event["user_id"]).encode(), orjson.dumps(event)
            index += 1
        second += 1
        tick += 1
