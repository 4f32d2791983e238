"""Simulated login traffic with labelled attacks and benign look-alikes.

``Simulation.events()`` yields ``SimEvent``s in event-time order: the event as it goes on the wire plus
its ground truth (scenario, attack id, and the detectors it should trigger), which travels in headers
(Kafka) or in a separate ``_label`` field (files), never in the event itself.

How time and traffic are made
-----------------------------
A driver takes *steps* at exponential intervals. Each step either logs in one user of the population
(``benign`` or ``shared_ip`` when the user is at the office) or starts an *episode* (an attack or a benign
look-alike) whose events are queued at their own future times and merged by time. The scenario of a
step is drawn with weights chosen so that each scenario's share of *events* matches its configured ratio.
Users are drawn with a heavy-tailed activity (a few users log in a lot) and kept only if the daily rhythm
of their local time accepts them (thinning), so traffic follows each user's day.

``rate`` = 0 runs a simulated clock at the population's natural pace (``logins_per_user_day``) as fast as
the CPU allows; ``rate`` > 0 makes event time follow the wall clock at about ``rate`` events per second
(the caller paces on ``SimEvent.time``). The same seed and start time give the same events, byte for byte.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from itertools import accumulate
from typing import Any, Final, NamedTuple

from login_common.contract import FETCH_FIELDS
from login_producer.errors import SimulationError
from login_producer.ippool import CountryPools, build_pools
from login_producer.population import (
    MAX_PHONE_GENERATION,
    Device,
    Population,
    Profile,
    app_version_at,
    generator_device_id,
)
from login_producer.truth import TruthOracle, TruthRules
from login_producer.world import (
    COUNTRIES,
    DAILY_RHYTHM,
    RHYTHM_MEAN,
    US,
    US_STATES,
    WEEKEND_FACTOR,
)

# Scenario names (x-sim-scenario). Benign traffic:
BENIGN: Final = "benign"
SHARED_IP: Final = "shared_ip"  # an office worker behind the office's NAT address
FORGETFUL: Final = "forgetful"  # a few failures, then success from the usual device and IP
NEW_PHONE: Final = "new_phone"  # first login from a new phone, home country
BENIGN_TRAVEL: Final = "benign_travel"  # a real trip at plausible speed, old devices
# Attacks:
BRUTE_FORCE: Final = "brute_force"
CREDENTIAL_STUFFING: Final = "credential_stuffing"
IMPOSSIBLE_TRAVEL: Final = "impossible_travel"
ACCOUNT_TAKEOVER: Final = "account_takeover"

_CODES: Final = tuple(c.code for c in COUNTRIES)
ATTACKS: Final = (BRUTE_FORCE, CREDENTIAL_STUFFING, IMPOSSIBLE_TRAVEL, ACCOUNT_TAKEOVER)
LOOKALIKES: Final = (FORGETFUL, NEW_PHONE, BENIGN_TRAVEL)
SCENARIOS: Final = (BENIGN, SHARED_IP, *LOOKALIKES, *ATTACKS)

# Default start of the simulated clock when rate = 0: Monday 2025-01-06 00:00:00 UTC.
DEFAULT_SIM_START: Final = 1_736_121_600
ACTIVITY_SKEW: Final = 1.5  # user index = n * U**skew: low indexes are the heavy users
FLIGHT_KMH: Final = 800.0
FLIGHT_OVERHEAD_H: Final = 2.0


@dataclass(frozen=True)
class ScenarioMix:
    """Expected share of *events* belonging to each episode scenario; the rest is everyday traffic."""

    brute_force: float = 0.01
    credential_stuffing: float = 0.01
    impossible_travel: float = 0.004
    account_takeover: float = 0.004
    benign_travel: float = 0.01
    new_phone: float = 0.004
    forgetful: float = 0.02

    def ratios(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    def __post_init__(self) -> None:
        total = sum(self.ratios().values())
        if any(v < 0 for v in self.ratios().values()) or total >= 0.9:
            raise SimulationError(f"scenario ratios must be >= 0 and sum below 0.9 (sum = {total:.3f})")


class SimEvent(NamedTuple):
    """One simulated login and its ground truth."""

    key: str
    event: dict[str, Any]
    scenario: str = BENIGN
    attack_id: str | None = None
    truth: tuple[str, ...] = ()
    time: float = 0.0  # event time (float seconds) for pacing
    country: str = ""  # the country the simulation intends the IP to geolocate to

    def fetch_view(self) -> dict[str, Any]:
        """The common generator's seven fields exactly (timestamp as a string); no labels, no extras."""
        ev = self.event
        return {k: (str(ev[k]) if k == "timestamp" else ev[k]) for k in FETCH_FIELDS}

    def label(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "attack_id": self.attack_id,
            "truth": list(self.truth),
            "country": self.country,
        }


class _Login:
    """A login waiting to be emitted. ``device`` set = one of the user's devices; else a foreign one."""

    __slots__ = (
        "app_version",
        "attack_id",
        "auth",
        "country",
        "device",
        "device_id",
        "device_type",
        "ip",
        "locale",
        "scenario",
        "success",
        "user",
        "user_agent",
        "user_id",
    )

    def __init__(  # noqa: PLR0917 - positional on the hot path
        self,
        user: int,
        user_id: str,
        device: Device | None,
        ip: str,
        country: int,
        locale: str,
        success: bool,
        auth: str,
        scenario: str,
        attack_id: str | None = None,
        *,
        device_id: str = "",
        device_type: str = "",
        app_version: str = "",
        user_agent: str = "",
    ) -> None:
        self.user = user
        self.user_id = user_id
        self.device = device
        self.ip = ip
        self.country = country
        self.locale = locale
        self.success = success
        self.auth = auth
        self.scenario = scenario
        self.attack_id = attack_id
        self.device_id = device_id
        self.device_type = device_type
        self.app_version = app_version
        self.user_agent = user_agent


_ATTACK_AGENTS: Final = (
    "python-requests/2.31.0",
    "okhttp/4.12.0",
    "curl/8.5.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "LoginApp/2.1.0 (Linux; Android 11; SM-G960F)",
)


@dataclass
class Simulation:
    seed: int = 42
    users: int = 1000
    start_time: float | None = None
    rate: float = 0.0
    mix: ScenarioMix = field(default_factory=ScenarioMix)
    rules: TruthRules = field(default_factory=TruthRules)
    logins_per_user_day: float = 3.0
    office_share: float = 0.15

    def __post_init__(self) -> None:
        if self.users < 1:
            raise SimulationError("users must be >= 1")
        if self.start_time is None:
            self.start_time = time.time() if self.rate > 0 else DEFAULT_SIM_START
        self._rng = random.Random(self.seed)
        self._pools: dict[str, CountryPools] = build_pools(tuple(c.code for c in COUNTRIES))
        self.population = Population(self.seed, self.users, self._pools, office_share=self.office_share)
        self.oracle = TruthOracle(self.rules, self.users)
        self._phone_gen = bytearray(self.users)
        self._phones: dict[tuple[int, int], Device] = {}
        self._busy: dict[int, float] = {}
        self._heap: list[tuple[float, int, _Login]] = []
        # simulated time: a rejected candidate costs its step; wall clock: redraw up to 20 times
        self._tries = 1 if self.rate <= 0 else 20
        self._seq = 0
        self._attack_seq = 0
        self._attack_cum = list(accumulate(c.attack_weight for c in COUNTRIES))
        self._travel_cum = list(accumulate(c.travel_weight for c in COUNTRIES))
        self._state_cum = list(accumulate(w for _, _, w in US_STATES))
        self._plan()

    # --- step weights ---------------------------------------------------------------------------------
    def _plan(self) -> None:
        """Per-step scenario probabilities such that each scenario's share of events is its ratio."""
        rules = self.rules
        k, m = rules.brute_force_failures, rules.stuffing_accounts
        lengths = {
            BENIGN: 1.0,
            BRUTE_FORCE: k + 20.0,
            CREDENTIAL_STUFFING: 4.0 * m,
            IMPOSSIBLE_TRAVEL: 2.0,
            ACCOUNT_TAKEOVER: (1 + max(1, k - 1)) / 2 + 2.0,
            BENIGN_TRAVEL: 4.0,
            NEW_PHONE: 1.0,
            FORGETFUL: (1 + max(1, min(3, k - 2))) / 2 + 1.0,
        }
        ratios = self.mix.ratios()
        ratios[BENIGN] = 1.0 - sum(ratios.values())
        simulated = self.rate <= 0
        # In simulated time a rejected candidate (rhythm thinning) consumes a step; in wall-clock mode
        # the candidate is redrawn, so every step yields its events.
        accept = {s: (RHYTHM_MEAN if simulated and s in (BENIGN, *LOOKALIKES) else 1.0) for s in lengths}
        weights = {s: ratios[s] / (lengths[s] * accept[s]) for s in lengths}
        total = sum(weights.values())
        self._step_names = [s for s in lengths if weights[s] > 0]
        self._step_cum = list(accumulate(weights[s] / total for s in self._step_names))
        per_step = sum(weights[s] / total * lengths[s] * accept[s] for s in lengths)
        if simulated:
            natural = self.users * self.logins_per_user_day / 86400  # benign logins per second
            self._step_rate = natural / (weights[BENIGN] / total * RHYTHM_MEAN)
        else:
            self._step_rate = self.rate / per_step

    # --- helpers --------------------------------------------------------------------------------------
    def _pick_index(self) -> int:
        return min(self.users - 1, int(self.users * self._rng.random() ** ACTIVITY_SKEW))

    def _pick_user(self, t: float) -> Profile | None:
        """A free, active user whose daily rhythm accepts time ``t`` (None when the draw is rejected)."""
        rand = self._rng.random
        users, busy, profile = self.users, self._busy, self.population.profile
        ts = int(t)
        for _ in range(self._tries):
            idx = int(users * rand() ** ACTIVITY_SKEW)
            if idx >= users:
                idx = users - 1
            if busy and busy.get(idx, 0.0) > t:
                continue
            p = profile(idx)
            local = ts + p.tz_s
            w = DAILY_RHYTHM[(local // 3600 - p.shift_h) % 24]
            if (local // 86400 + 3) % 7 >= 5:
                w *= WEEKEND_FACTOR
            if rand() < w:
                return p
        return None

    def _victim(self, t: float, *, history: bool) -> Profile | None:
        """A free user (any time of day) for an attack; with ``history``, one with a past success."""
        for _ in range(30):
            idx = self._pick_index()
            if self._busy.get(idx, 0.0) > t:
                continue
            if history and not self.oracle.has_history(idx):
                continue
            return self.population.profile(idx)
        return None

    def _phone(self, p: Profile) -> Device:
        gen = self._phone_gen[p.idx]
        if gen == 0:
            return p.device(0)
        dev = self._phones.get((p.idx, gen))
        if dev is None:
            dev = self._phones[(p.idx, gen)] = p.phone(gen)
        return dev

    def _usual(self, p: Profile, t: float) -> tuple[Device, str, bool]:
        """(device, ip, at_office) of an everyday login of ``p`` at ``t``."""
        rng = self._rng
        i = bisect_right(p.device_cum, rng.random() * p.device_cum[-1])
        device = self._phone(p) if i == 0 else p.device(i)
        local = int(t) + p.tz_s
        at_work = p.office_ip is not None and (local // 86400 + 3) % 7 < 5 and 9 <= (local // 3600) % 24 < 18
        r = rng.random()
        if device.device_type == "web":
            return (device, p.office_ip, True) if at_work and p.office_ip else (device, p.home_ip, False)
        if at_work and p.office_ip and r < 0.6:
            return device, p.office_ip, True
        if r < 0.55:
            return device, p.home_ip, False
        pool = self._pools[COUNTRIES[p.country].code].residential
        return device, pool.address(rng.getrandbits(40)), False

    def _auth(self, device: Device, at_work: bool) -> str:
        r = self._rng.random()
        if device.device_type == "web":
            if at_work:
                return "sso"
            return "password" if r < 0.8 else "mfa"
        return "token" if r < 0.5 else ("password" if r < 0.9 else "mfa")

    def _push(self, t: float, login: _Login) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, login))

    def _attack_id(self, prefix: str) -> str:
        self._attack_seq += 1
        return f"{prefix}-{self.seed}-{self._attack_seq:06d}"

    def _country(self, cum: list[float], exclude: set[int] | None = None) -> int:
        """A country index drawn by the weights behind ``cum``; -1 when ``exclude`` leaves none."""
        rng = self._rng
        for _ in range(20):
            ci = bisect_right(cum, rng.random() * cum[-1])
            if not exclude or ci not in exclude:
                return ci
        left = [c for c in range(len(COUNTRIES)) if exclude and c not in exclude]
        return rng.choice(left) if left else -1

    def _attacker_locale(self, ci: int) -> str:
        if COUNTRIES[ci].code == US:
            return US_STATES[bisect_right(self._state_cum, self._rng.random() * self._state_cum[-1])][0]
        return COUNTRIES[ci].code

    def _foreign_device(self) -> tuple[str, str]:
        rng = self._rng
        return generator_device_id(rng.getrandbits(40)), ("web" if rng.random() < 0.6 else "android")

    # --- episodes -------------------------------------------------------------------------------------
    def _everyday(self, t: float) -> _Login | None:
        p = self._pick_user(t)
        if p is None:
            return None
        device, ip, at_work = self._usual(p, t)
        return _Login(
            p.idx,
            p.user_id,
            device,
            ip,
            p.country,
            p.locale,
            True,
            self._auth(device, at_work),
            SHARED_IP if at_work else BENIGN,
        )

    def _forgetful(self, t: float) -> None:
        p = self._pick_user(t)
        if p is None:
            return
        rng = self._rng
        device, ip, _ = self._usual(p, t)
        failures = rng.randint(1, max(1, min(3, self.rules.brute_force_failures - 2)))
        for _ in range(failures):
            self._push(
                t, _Login(p.idx, p.user_id, device, ip, p.country, p.locale, False, "password", FORGETFUL)
            )
            t += rng.uniform(5, 40)
        self._push(t, _Login(p.idx, p.user_id, device, ip, p.country, p.locale, True, "password", FORGETFUL))
        self._busy[p.idx] = t

    def _new_phone(self, t: float) -> None:
        p = self._pick_user(t)
        if p is None or self._phone_gen[p.idx] >= MAX_PHONE_GENERATION:
            return
        self._phone_gen[p.idx] += 1
        device = self._phone(p)
        ip = p.home_ip
        if self._rng.random() < 0.4:
            ip = self._pools[COUNTRIES[p.country].code].residential.address(self._rng.getrandbits(40))
        self._push(t, _Login(p.idx, p.user_id, device, ip, p.country, p.locale, True, "password", NEW_PHONE))
        self._busy[p.idx] = t + 1

    def _benign_travel(self, t: float) -> None:
        p = self._pick_user(t)
        if p is None:
            return
        rng = self._rng
        dest = self._country(self._travel_cum, {p.country})
        dist = self.oracle.distance_km(p.country, dest)
        cruise = min(FLIGHT_KMH, 0.8 * self.rules.travel_max_speed_kmh)  # always a plausible speed
        flight_s = (dist / cruise + FLIGHT_OVERHEAD_H + rng.uniform(0, 2)) * 3600
        arrive = t + flight_s
        stay = rng.uniform(2, 10) * 86400
        pool = self._pools[COUNTRIES[dest].code].residential
        hotel = pool.address(rng.getrandbits(40))
        times = sorted(
            [arrive + rng.uniform(0, 3 * 3600)] + [arrive + rng.uniform(0, stay) for _ in range(3)]
        )
        times = times[: rng.randint(2, 4)]
        for at in times:
            device = self._phone(p) if rng.random() < 0.8 else p.device(p.n_devices - 1)
            ip = hotel if rng.random() < 0.5 else pool.address(rng.getrandbits(40))
            auth = "token" if device.device_type != "web" else "password"
            self._push(at, _Login(p.idx, p.user_id, device, ip, dest, p.locale, True, auth, BENIGN_TRAVEL))
        back = arrive + stay + flight_s
        device = self._phone(p)
        self._push(
            back,
            _Login(p.idx, p.user_id, device, p.home_ip, p.country, p.locale, True, "token", BENIGN_TRAVEL),
        )
        self._busy[p.idx] = back

    def _brute_force(self, t: float) -> None:
        rng = self._rng
        idx = rng.randrange(self.users)
        victim = self.population.profile(idx)
        ci = self._country(self._attack_cum)
        ip = self._pools[COUNTRIES[ci].code].hosting.address(rng.getrandbits(40))
        device_id, device_type = self._foreign_device()
        agent = rng.choice(_ATTACK_AGENTS)
        locale = self._attacker_locale(ci)
        attack = self._attack_id("bf")
        k = self.rules.brute_force_failures
        for _ in range(rng.randint(k + 5, k + 35)):
            self._push(
                t,
                _Login(
                    idx, victim.user_id, None, ip, ci, locale, False, "password", BRUTE_FORCE, attack,
                    device_id=device_id, device_type=device_type, app_version="2.1.0", user_agent=agent,
                ),
            )  # fmt: skip
            t += rng.uniform(1, 12)

    def _credential_stuffing(self, t: float) -> None:
        rng = self._rng
        ci = self._country(self._attack_cum)
        pool = self._pools[COUNTRIES[ci].code].hosting
        block = pool.block(rng.getrandbits(40))
        hosts = [rng.randrange(254)] if rng.random() < 0.5 else rng.sample(range(254), rng.randint(2, 16))
        locale = self._attacker_locale(ci)
        agent = rng.choice(_ATTACK_AGENTS)
        attack = self._attack_id("cs")
        m = self.rules.stuffing_accounts
        tried: set[int] = set()
        for _ in range(rng.randint(2 * m, 6 * m)):
            if rng.random() < 0.7:
                idx = rng.randrange(self.users)
                user, user_id = idx, self.population.user_id(idx)
            else:  # a leaked account that does not exist here
                idx = self.users + rng.getrandbits(40)
                user, user_id = -1, self.population.user_id(idx)
            if idx in tried:
                continue
            tried.add(idx)
            device_id, device_type = self._foreign_device()
            success = user >= 0 and rng.random() < 0.03
            self._push(
                t,
                _Login(
                    user, user_id, None, pool.in_block(block, rng.choice(hosts)), ci, locale, success,
                    "password", CREDENTIAL_STUFFING, attack,
                    device_id=device_id, device_type=device_type, app_version="2.1.0", user_agent=agent,
                ),
            )  # fmt: skip
            t += rng.uniform(0.2, 3.0)

    def _account_takeover(self, t: float) -> None:
        victim = self._victim(t, history=True)
        if victim is None:
            return
        rng = self._rng
        known = {c for c in range(len(COUNTRIES)) if self.oracle.knows_country(victim.idx, c)}
        ci = self._country(self._attack_cum, known | {victim.country})
        if ci < 0:
            return  # the victim has logged in from every country already
        ip = self._pools[COUNTRIES[ci].code].hosting.address(rng.getrandbits(40))
        device_id, device_type = self._foreign_device()
        agent = rng.choice(_ATTACK_AGENTS[3:])
        attack = self._attack_id("ato")
        locale = victim.locale

        def login(success: bool, auth: str) -> _Login:
            return _Login(
                victim.idx, victim.user_id, None, ip, ci, locale, success, auth, ACCOUNT_TAKEOVER, attack,
                device_id=device_id, device_type=device_type, app_version="2.1.0", user_agent=agent,
            )  # fmt: skip

        for _ in range(rng.randint(1, max(1, self.rules.brute_force_failures - 1))):
            self._push(t, login(False, "password"))
            t += rng.uniform(10, 90)
        t += rng.uniform(10, 60)
        self._push(t, login(True, "password"))
        for _ in range(rng.randint(0, 2)):
            t += rng.uniform(60, 1200)
            self._push(t, login(True, "token"))
        self._busy[victim.idx] = t

    def _impossible_travel(self, t: float) -> None:
        victim = self._victim(t, history=True)
        if victim is None:
            return
        rng = self._rng
        rules = self.rules
        far_enough = max(2000.0, 2 * rules.travel_min_distance_km)
        near = {c for c in range(len(COUNTRIES)) if self.oracle.distance_km(victim.country, c) < far_enough}
        ci = self._country(self._attack_cum, near)
        if ci < 0:
            return
        dist = self.oracle.distance_km(victim.country, ci)
        attack = self._attack_id("it")
        device = self._phone(victim)
        self._push(
            t,
            _Login(
                victim.idx, victim.user_id, device, victim.home_ip, victim.country, victim.locale, True,
                "token", IMPOSSIBLE_TRAVEL, attack,
            ),
        )  # fmt: skip
        longest = min(6 * 3600.0, dist / (1.5 * rules.travel_max_speed_kmh) * 3600)
        t += rng.uniform(min(300.0, longest / 2), longest)
        ip = self._pools[COUNTRIES[ci].code].hosting.address(rng.getrandbits(40))
        self._push(
            t,
            _Login(
                victim.idx, victim.user_id, device, ip, ci, victim.locale, True, "token", IMPOSSIBLE_TRAVEL,
                attack,
            ),
        )  # fmt: skip
        self._busy[victim.idx] = t

    # --- the driver -----------------------------------------------------------------------------------
    def _emit(self, t: float, lg: _Login) -> SimEvent:
        ts = int(t)
        dev = lg.device
        if dev is not None:
            version = app_version_at(t, dev.lag_s)
            device_id, device_type, slot = dev.device_id, dev.device_type, dev.slot
            agent = dev.user_agent(version)
        else:
            version, device_id, device_type, slot = lg.app_version, lg.device_id, lg.device_type, -1
            agent = lg.user_agent
        truth = self.oracle.label(ts, lg.user, lg.user_id, slot, device_id, lg.ip, lg.country, lg.success)
        rng = self._rng
        bits = f"{rng.getrandbits(128):032x}"
        event = {
            "event_id": f"{bits[:8]}-{bits[8:12]}-4{bits[13:16]}-a{bits[17:20]}-{bits[20:]}",
            "user_id": lg.user_id,
            "app_version": version,
            "ip": lg.ip,
            "locale": lg.locale,
            "device_id": device_id,
            "timestamp": ts,
            "device_type": device_type,
            "outcome": "success" if lg.success else "failure",
            "auth_method": lg.auth,
            "user_agent": agent,
        }
        return SimEvent(lg.user_id, event, lg.scenario, lg.attack_id, truth, t, _CODES[lg.country])

    def events(self) -> Iterator[SimEvent]:
        rng = self._rng
        heap = self._heap
        pop = heapq.heappop
        names, cum = self._step_names, self._step_cum
        starters = {
            BRUTE_FORCE: self._brute_force,
            CREDENTIAL_STUFFING: self._credential_stuffing,
            IMPOSSIBLE_TRAVEL: self._impossible_travel,
            ACCOUNT_TAKEOVER: self._account_takeover,
            BENIGN_TRAVEL: self._benign_travel,
            NEW_PHONE: self._new_phone,
            FORGETFUL: self._forgetful,
        }
        mean_gap = 1.0 / self._step_rate
        uniform = rng.random
        log = math.log
        t = float(self.start_time or 0.0)
        steps = 0
        while True:
            t -= log(1.0 - uniform()) * mean_gap  # exponential inter-arrival
            while heap and heap[0][0] <= t:
                at, _, queued = pop(heap)
                yield self._emit(at, queued)
            name = names[bisect_right(cum, rng.random() * cum[-1])]
            if name == BENIGN:
                login = self._everyday(t)
                if login is not None:
                    yield self._emit(t, login)
            else:
                starters[name](t)
            steps += 1
            if steps % 65536 == 0:
                self._busy = {k: v for k, v in self._busy.items() if v > t}
