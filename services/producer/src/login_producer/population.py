"""The simulated population: every user's profile derived on demand from (seed, user index).

Nothing is stored per user: a profile is a pure function of the seed and the index (a 64-bit mix hash),
kept in a bounded cache because active users log in often. This keeps a population of a million users
in a few tens of megabytes.

A profile holds the home country and region (US state, else capital), the UTC offset, a chronotype shift
of the daily rhythm, one to three usual devices (slot 0 is the phone), a stable home IP, and for office
workers the office's shared IP. App versions drift: a release every ``RELEASE_INTERVAL_S`` and each
device upgrades after its own lag.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import Final

from login_producer.ippool import BlockPool, CountryPools
from login_producer.world import COUNTRIES, US, US_STATES

M64: Final = (1 << 64) - 1
GOLDEN: Final = 0x9E3779B97F4A7C15


def mix64(x: int) -> int:
    """splitmix64 finaliser: a fast, well-distributed 64-bit hash."""
    x &= M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def unit(h: int) -> float:
    """A hash as a float in [0, 1)."""
    return (h >> 11) * (1.0 / (1 << 53))


def uuid_from(a: int, b: int) -> str:
    """A version-4-shaped UUID string from two 64-bit hashes."""
    x = f"{a:016x}{b:016x}"
    return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-{'89ab'[b & 3]}{x[17:20]}-{x[20:]}"


def generator_device_id(h: int) -> str:
    """A device id in the common data generator's shape: ``ddd-dd-dddd``."""
    n = h % 1_000_000_000
    return f"{n // 1_000_000:03d}-{(n // 10_000) % 100:02d}-{n % 10_000:04d}"


# --- app versions -----------------------------------------------------------------------------------
RELEASE_INTERVAL_S: Final = 21 * 86400
# Release 0 ("2.0.0") is 12 releases before 2025-01-01, so early 2025 runs 2.3.x like the generator.
RELEASE_ZERO: Final = 1_735_689_600 - 12 * RELEASE_INTERVAL_S
_VERSIONS: dict[int, str] = {}


def app_version_at(t: float, lag_s: int) -> str:
    """Version installed at time ``t`` on a device that upgrades ``lag_s`` seconds after each release."""
    k = int((t - lag_s - RELEASE_ZERO) // RELEASE_INTERVAL_S)
    k = max(k, 0)
    v = _VERSIONS.get(k)
    if v is None:
        v = _VERSIONS[k] = f"{2 + k // 20}.{(k % 20) // 4}.{k % 4}"
    return v


# --- devices ------------------------------------------------------------------------------------------
ANDROID_MODELS: Final = ("Pixel 8", "Pixel 7a", "SM-S918B", "SM-A546B", "moto g54", "2312DRA50G", "CPH2581")
ANDROID_OS: Final = ("12", "13", "14", "15")
IOS_OS: Final = ("16_7", "17_5", "17_6", "18_1")
WEB_OS: Final = (
    "Windows NT 10.0; Win64; x64",
    "Macintosh; Intel Mac OS X 10_15_7",
    "X11; Linux x86_64",
)


@dataclass(frozen=True, slots=True)
class Device:
    slot: int
    device_id: str
    device_type: str  # android | iOS | web, the generator's mixed case
    platform: str  # the user-agent's platform part
    lag_s: int  # upgrade lag after each release

    def user_agent(self, version: str) -> str:
        key = (self.platform, version)
        agent = _AGENTS.get(key)
        if agent is None:
            if self.device_type == "web":
                agent = (
                    f"Mozilla/5.0 ({self.platform}) AppleWebKit/537.36 (KHTML, like Gecko) "
                    f"Chrome/131.0.0.0 Safari/537.36 LoginWeb/{version}"
                )
            else:
                agent = f"LoginApp/{version} ({self.platform})"
            _AGENTS[key] = agent
        return agent


# (platform, version) -> user agent: a few hundred platforms times the versions of a run.
_AGENTS: dict[tuple[str, str], str] = {}


def make_device(key: int, slot: int, kind: str | None = None) -> Device:
    """Device ``slot`` of the user with hash ``key``; ``kind`` forces phone (android/iOS) or web."""
    h1 = mix64(key + GOLDEN * (slot + 101))
    h2 = mix64(h1)
    if kind is None:
        kind = "web" if slot == 1 else ("android" if unit(h1) < 0.55 else "iOS")
    if kind == "android":
        platform = f"Linux; Android {ANDROID_OS[h2 % 4]}; {ANDROID_MODELS[(h2 >> 8) % len(ANDROID_MODELS)]}"
    elif kind == "iOS":
        platform = f"iPhone; CPU iPhone OS {IOS_OS[h2 % 4]} like Mac OS X"
    else:
        platform = WEB_OS[h2 % len(WEB_OS)]
    lag_days = (
        0 if kind == "web" else int(-14 * math.log1p(-unit(mix64(h2 + 7))))
    )  # exponential, mean 14 days
    return Device(slot, generator_device_id(mix64(h2 + 3)), kind, platform, min(lag_days, 120) * 86400)


# --- profiles ------------------------------------------------------------------------------------------
PHONE_SLOT_BASE: Final = 8  # the n-th new phone (n >= 1) is device slot PHONE_SLOT_BASE + n
MAX_PHONE_GENERATION: Final = 55  # slots stay below 64 (bitmask of known devices)
USERS_PER_OFFICE: Final = 150


class Profile:
    """One user. Cheap fields are set at once; the account id, home IP and devices on first use."""

    __slots__ = (
        "_devices",
        "_home_ip",
        "_home_k",
        "_pool",
        "_user_id",
        "country",
        "device_cum",
        "idx",
        "key",
        "locale",
        "n_devices",
        "office_ip",
        "region",
        "shift_h",
        "tz_s",
    )

    def __init__(  # noqa: PLR0917 - positional on the hot path
        self,
        idx: int,
        key: int,
        country: int,
        region: str,
        locale: str,
        tz_s: int,
        shift_h: int,
        n_devices: int,
        office_ip: str | None,
        pool: BlockPool,
        home_k: int,
    ) -> None:
        self.idx = idx
        self.key = key
        self.country = country  # index into world.COUNTRIES
        self.region = region
        self.locale = locale
        self.tz_s = tz_s  # UTC offset in seconds
        self.shift_h = shift_h  # chronotype: the daily rhythm shifted by this many hours
        self.n_devices = n_devices
        self.device_cum = _DEVICE_CUM[n_devices]  # cumulative usage weights of the usual devices
        self.office_ip = office_ip
        self._pool = pool
        self._home_k = home_k
        self._user_id: str | None = None
        self._home_ip: str | None = None
        self._devices: list[Device | None] = [None] * n_devices

    @property
    def user_id(self) -> str:
        if self._user_id is None:
            self._user_id = uuid_from(mix64(self.key + 1), mix64(self.key + 2))
        return self._user_id

    @property
    def home_ip(self) -> str:
        if self._home_ip is None:
            self._home_ip = self._pool.address(self._home_k)
        return self._home_ip

    def device(self, slot: int) -> Device:
        """Usual device ``slot`` (0 = the original phone, 1 = web, 2 = a tablet)."""
        dev = self._devices[slot]
        if dev is None:
            dev = self._devices[slot] = make_device(self.key, slot)
        return dev

    @property
    def devices(self) -> tuple[Device, ...]:
        return tuple(self.device(i) for i in range(self.n_devices))

    def phone(self, generation: int) -> Device:
        """The phone in use after ``generation`` new phones (0 = the original)."""
        if generation == 0:
            return self.device(0)
        first = self.device(0).device_type
        h = mix64(self.key + generation * 0x51ED)
        kind = first if unit(h) < 0.8 else ("iOS" if first == "android" else "android")
        return make_device(self.key, PHONE_SLOT_BASE + generation, kind)


_DEVICE_CUM: Final = {
    n: tuple(accumulate(w / sum((0.72, 0.2, 0.08)[:n]) for w in (0.72, 0.2, 0.08)[:n])) for n in (1, 2, 3)
}
_SHIFTS: Final = (-2, -1, -1, 0, 0, 0, 0, 1, 1, 2)


class Population:
    """``size`` users, profile ``i`` a function of (seed, i) only."""

    def __init__(
        self,
        seed: int,
        size: int,
        pools: dict[str, CountryPools],
        *,
        office_share: float = 0.15,
        cache_size: int = 65_536,
    ) -> None:
        self.seed = seed
        self.size = size
        self.pools = pools
        self.office_share = office_share
        self.offices = max(1, round(size * office_share / USERS_PER_OFFICE))
        self.key = mix64(seed * GOLDEN + 0x10C1)
        self._country_cum = list(accumulate(c.user_weight for c in COUNTRIES))
        self._state_cum = list(accumulate(w for _, _, w in US_STATES))
        self._office_cache: dict[int, tuple[int, str, str, int, str]] = {}
        self.profile = lru_cache(maxsize=cache_size)(self._derive)

    def user_key(self, idx: int) -> int:
        return mix64(self.key ^ ((idx + 1) * GOLDEN & M64))

    def user_id(self, idx: int) -> str:
        """The account id of user ``idx``; indexes >= size are accounts outside the population."""
        k = self.user_key(idx)
        return uuid_from(mix64(k + 1), mix64(k + 2))

    def _place(self, h: int) -> tuple[int, str, str, int]:
        """(country index, region, locale, tz seconds) drawn from hash ``h``."""
        ci = bisect_right(self._country_cum, unit(h) * self._country_cum[-1])
        country = COUNTRIES[ci]
        if country.code == US:
            h2 = mix64(h + 5)
            si = bisect_right(self._state_cum, unit(h2) * self._state_cum[-1])
            state, offset, _ = US_STATES[si]
            return ci, state, state, offset * 3600
        return ci, country.region, country.code, int(country.utc_offset_h * 3600)

    def office(self, j: int) -> tuple[int, str, str, int, str]:
        """Office ``j``: its place and its shared NAT address."""
        found = self._office_cache.get(j)
        if found is None:
            h = mix64(self.key + (j + 1) * 0x0FF1CE)
            ci, region, locale, tz = self._place(h)
            ip = self.pools[COUNTRIES[ci].code].residential.address(mix64(h + 9))
            found = self._office_cache[j] = (ci, region, locale, tz, ip)
        return found

    def _derive(self, idx: int) -> Profile:
        k = self.user_key(idx)
        h = mix64(k + GOLDEN)
        office_ip: str | None = None
        if (h & 0xFFFF) < self.office_share * 0x10000:
            ci, region, locale, tz, office_ip = self.office((h >> 16) % self.offices)
        else:
            ci, region, locale, tz = self._place(mix64(k + 2 * GOLDEN))
        d = (h >> 40) % 100
        n_devices = 1 if d < 45 else (2 if d < 85 else 3)
        shift = _SHIFTS[(h >> 48) % 10]
        pool = self.pools[COUNTRIES[ci].code].residential
        return Profile(
            idx, k, ci, region, locale, tz, shift, n_devices, office_ip, pool, mix64(k + 3 * GOLDEN)
        )
