"""Ground truth: which detectors each emitted event should trigger (docs/producer.md, "Truth rules").

``TruthOracle`` applies the documented rules to the stream exactly as it is emitted (event-time order,
integer ``timestamp`` seconds, the country every IP geolocates to), keeping only bounded state:
fixed-size arrays per user (known devices and countries as bitmasks, last successful login) and
windowed queues per (user, IP) and per network that are swept as they expire.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

from login_common.geo import great_circle_km
from login_producer.world import COUNTRIES

BRUTE_FORCE: Final = "brute_force"
CREDENTIAL_STUFFING: Final = "credential_stuffing"
IMPOSSIBLE_TRAVEL: Final = "impossible_travel"
NEW_DEVICE: Final = "new_device"
NEW_COUNTRY: Final = "new_country"

_SWEEP_EVERY: Final = 4096


@dataclass(frozen=True)
class TruthRules:
    """Thresholds of the truth rules; the detectors' defaults should match them."""

    brute_force_failures: int = 5  # k: the k-th failure within the window and later ones are positive
    brute_force_window_s: int = 300  # sliding window per (user_id, ip)
    stuffing_accounts: int = 10  # m distinct accounts with a failure from one network
    stuffing_window_s: int = 600  # sliding window per network
    stuffing_prefix: Literal[24, 32] = 24  # network = the IPv4 /24 (24) or the single address (32)
    travel_max_speed_kmh: float = 1000.0  # faster than this between two successes is impossible
    travel_min_distance_km: float = 500.0  # closer than this is never impossible (geolocation noise)


class _Network:
    __slots__ = ("accounts", "failures")

    def __init__(self) -> None:
        self.failures: deque[tuple[int, str]] = deque()
        self.accounts: dict[str, int] = {}  # user_id -> failures in the window


class TruthOracle:
    """Labels events in emission order. ``user`` is the population index, or -1 outside the population."""

    def __init__(self, rules: TruthRules, users: int) -> None:
        if len(COUNTRIES) > 64:  # pragma: no cover - the world table is static
            raise ValueError("country bitmasks hold at most 64 countries")
        self.rules = rules
        self.known_devices = array("Q", bytes(8 * users))
        self.known_countries = array("Q", bytes(8 * users))
        self.last_time = array("q", bytes(8 * users))
        self.last_country = array("B", bytes(users))
        self._foreign_devices: dict[int, set[str]] = {}
        self._dist = [[great_circle_km(a.point, b.point) for b in COUNTRIES] for a in COUNTRIES]
        self._bf: dict[tuple[str, str], deque[int]] = {}
        self._nets: dict[str, _Network] = {}
        self._failures = 0

    def distance_km(self, a: int, b: int) -> float:
        return self._dist[a][b]

    def has_history(self, user: int) -> bool:
        """True when the user has at least one successful login in the stream so far."""
        return self.known_countries[user] != 0

    def knows_country(self, user: int, country: int) -> bool:
        return bool((self.known_countries[user] >> country) & 1)

    def _network(self, ip: str) -> str:
        return ip.rsplit(".", 1)[0] if self.rules.stuffing_prefix == 24 else ip

    def label(  # noqa: PLR0917 - positional on the hot path
        self,
        ts: int,
        user: int,
        user_id: str,
        slot: int,
        device_id: str,
        ip: str,
        country: int,
        success: bool,
    ) -> tuple[str, ...]:
        """Update the state with one event and return the detectors it should trigger (DETECTORS order)."""
        rules = self.rules
        bf = cs = travel = new_dev = new_cty = False
        net_key = self._network(ip)
        net = self._nets.get(net_key)
        if not success:
            key = (user_id, ip)
            times = self._bf.get(key)
            if times is None:
                times = self._bf[key] = deque()
            horizon = ts - rules.brute_force_window_s
            while times and times[0] <= horizon:
                times.popleft()
            times.append(ts)
            bf = len(times) >= rules.brute_force_failures
            if net is None:
                net = self._nets[net_key] = _Network()
            self._expire(net, ts)
            net.failures.append((ts, user_id))
            net.accounts[user_id] = net.accounts.get(user_id, 0) + 1
            cs = len(net.accounts) >= rules.stuffing_accounts
            self._failures += 1
            if self._failures % _SWEEP_EVERY == 0:
                self._sweep(ts)
        else:
            if net is not None:
                self._expire(net, ts)
                cs = len(net.accounts) >= rules.stuffing_accounts
            if user >= 0:
                countries = self.known_countries[user]
                if slot >= 0:
                    bit = 1 << slot
                    new_dev = not self.known_devices[user] & bit
                    self.known_devices[user] |= bit
                else:
                    seen = self._foreign_devices.setdefault(user, set())
                    new_dev = device_id not in seen
                    seen.add(device_id)
                if countries:
                    new_cty = not (countries >> country) & 1
                    last = self.last_country[user]
                    if last != country:
                        dist = self._dist[last][country]
                        if dist >= rules.travel_min_distance_km:
                            hours = (ts - self.last_time[user]) / 3600
                            travel = hours <= 0 or dist / hours > rules.travel_max_speed_kmh
                else:
                    new_dev = False
                self.known_countries[user] = countries | (1 << country)
                self.last_time[user] = ts
                self.last_country[user] = country
        out: list[str] = []
        if bf:
            out.append(BRUTE_FORCE)
        if cs:
            out.append(CREDENTIAL_STUFFING)
        if travel:
            out.append(IMPOSSIBLE_TRAVEL)
        if new_dev:
            out.append(NEW_DEVICE)
        if new_cty:
            out.append(NEW_COUNTRY)
        return tuple(out)

    def _expire(self, net: _Network, ts: int) -> None:
        horizon = ts - self.rules.stuffing_window_s
        failures, accounts = net.failures, net.accounts
        while failures and failures[0][0] <= horizon:
            _, uid = failures.popleft()
            left = accounts[uid] - 1
            if left:
                accounts[uid] = left
            else:
                del accounts[uid]

    def _sweep(self, ts: int) -> None:
        """Drop windows that hold nothing recent, so state stays bounded by the window's traffic."""
        bf_horizon = ts - self.rules.brute_force_window_s
        for pair in [k for k, v in self._bf.items() if not v or v[-1] <= bf_horizon]:
            del self._bf[pair]
        cs_horizon = ts - self.rules.stuffing_window_s
        for key in [k for k, n in self._nets.items() if not n.failures or n.failures[-1][0] <= cs_horizon]:
            del self._nets[key]

    def state_sizes(self) -> dict[str, int]:
        return {"brute_force_keys": len(self._bf), "networks": len(self._nets)}
