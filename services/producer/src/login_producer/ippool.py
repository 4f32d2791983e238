"""Per-country IPv4 address pools built from the consumer's own geolocation data (geoip2fast).

geoip2fast keeps its networks as sorted lists (first address, prefix length, country). An address inside
network N geolocates to N's country when no later network starts inside N, so only such networks of
prefix /24 or shorter are kept. Their /24 blocks are split by parity: even blocks form the *residential*
pool (homes, offices, mobile carriers, hotels) and odd blocks the *hosting* pool (attackers), so an
attacker's /24 never holds a simulated user's address. Hosts .1 to .254 of a block are used.

Addresses are addressed by an integer ``k`` (``address(k)``), so a user's home IP is derived from a hash
of (seed, user) without storing anything per user.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from login_common.geo import GEOIP_DATA_FILE
from login_producer.errors import SimulationError

HOSTS_PER_BLOCK = 254


def ip_str(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


@dataclass(frozen=True)
class BlockPool:
    """The /24 blocks of one country and one kind (residential or hosting)."""

    country: str
    _starts: array[int]  # first block (address >> 8) of each network
    _steps: array[int]  # 2 when the network's blocks alternate between pools, 1 for a single block
    _cum: array[int]  # cumulative number of blocks before each network

    @property
    def blocks(self) -> int:
        return int(self._cum[-1])

    @property
    def networks(self) -> int:
        return len(self._starts)

    def block(self, k: int) -> int:
        """The k-th /24 block of the pool (k is taken modulo the pool size)."""
        k %= self._cum[-1]
        i = bisect_right(self._cum, k) - 1
        return int(self._starts[i] + (k - self._cum[i]) * self._steps[i])

    def address(self, k: int) -> str:
        """The k-th usable address of the pool (k is taken modulo the pool size)."""
        blk = self.block(k // HOSTS_PER_BLOCK)
        return ip_str((blk << 8) | (1 + k % HOSTS_PER_BLOCK))

    def in_block(self, block: int, host: int) -> str:
        return ip_str((block << 8) | (1 + host % HOSTS_PER_BLOCK))


@dataclass(frozen=True)
class CountryPools:
    residential: BlockPool
    hosting: BlockPool


def _networks() -> Iterable[tuple[int, int, str]]:
    """(first address, prefix length, country code) of every IPv4 network, in address order."""
    try:
        from geoip2fast import GeoIP2Fast
        from geoip2fast import geoip2fast as data
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise SimulationError("geoip2fast is not installed; it is a dependency of login-producer") from exc
    GeoIP2Fast(verbose=False, geoip2fast_data_file=GEOIP_DATA_FILE)  # loads the data into the module's lists
    names: list[str] = [str(n).split(":", 1)[0] for n in data.mainListNamesCountry]
    firsts: Any = data.mainListFirstIP
    lengths: Any = data.mainListNetlength
    ids: Any = data.mainListIDCountryCodes
    for chunk_first, chunk_len, chunk_id in zip(firsts, lengths, ids, strict=True):
        for first, netlen, cid in zip(chunk_first, chunk_len, chunk_id, strict=True):
            if first > 0xFFFFFFFF:
                return
            yield int(first), int(netlen), names[cid]


@cache
def build_pools(codes: tuple[str, ...]) -> dict[str, CountryPools]:
    """Residential and hosting pools of each country in ``codes`` (built once per process)."""
    wanted = set(codes)
    parts: dict[str, list[list[int]]] = {c: [[], [], [], [], [], []] for c in codes}
    prev: tuple[int, int, str] | None = None

    def take(first: int, netlen: int, code: str) -> None:
        starts_r, steps_r, counts_r, starts_h, steps_h, counts_h = parts[code]
        first_block = first >> 8
        nblocks = 1 << (24 - netlen)
        if nblocks == 1:
            if first_block % 2 == 0:
                starts_r.append(first_block)
                steps_r.append(1)
                counts_r.append(1)
            else:
                starts_h.append(first_block)
                steps_h.append(1)
                counts_h.append(1)
            return
        starts_r.append(first_block)
        steps_r.append(2)
        counts_r.append(nblocks // 2)
        starts_h.append(first_block + 1)
        steps_h.append(2)
        counts_h.append(nblocks // 2)

    for net in _networks():
        if prev is not None:
            first, netlen, code = prev
            # keep a network only when the next one starts after it ends (no shadowing)
            if code in wanted and netlen <= 24 and first + (1 << (32 - netlen)) <= net[0]:
                take(first, netlen, code)
        prev = net
    if prev is not None and prev[2] in wanted and prev[1] <= 24:
        take(*prev)

    out: dict[str, CountryPools] = {}
    for code in codes:
        starts_r, steps_r, counts_r, starts_h, steps_h, counts_h = parts[code]
        if not counts_r or not counts_h:
            raise SimulationError(f"geoip2fast data has no usable IPv4 network for country {code}")
        out[code] = CountryPools(
            residential=_pool(code, starts_r, steps_r, counts_r),
            hosting=_pool(code, starts_h, steps_h, counts_h),
        )
    return out


def _pool(code: str, starts: list[int], steps: list[int], counts: list[int]) -> BlockPool:
    cum = [0]
    for c in counts:
        cum.append(cum[-1] + c)
    return BlockPool(code, array("q", starts), array("q", steps), array("q", cum))
