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

Where things are: this module holds the driver (step weights, the clock, the queue, emitting events) and
the helpers the episodes share (picking users, their devices and IPs); the everyday login and the benign
look-alikes are in ``episodes.py``, the attacks in ``attacks.py``, the scenario names and what an episode
may use of the simulation in ``scenarios.py`` (the episodes are mixed into ``Simulation``).
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
from login_producer.attacks import Attacks
from login_producer.episodes import Lookalikes
from login_producer.errors import SimulationError
from login_producer.ippool import CountryPools, build_pools
from login_producer.population import (
    Device,
    Population,
    Profile,
    app_version_at,
)
from login_producer.scenarios import (
    ACCOUNT_TAKEOVER,
    ATTACKS,
    BENIGN,
    BENIGN_TRAVEL,
    BRUTE_FORCE,
    CREDENTIAL_STUFFING,
    FORGETFUL,
    IMPOSSIBLE_TRAVEL,
    LOOKALIKES,
    NEW_PHONE,
    SCENARIOS,
    SHARED_IP,
    Login,
)
from login_producer.truth import TruthOracle, TruthRules
from login_producer.world import (
    COUNTRIES,
    DAILY_RHYTHM,
    RHYTHM_MEAN,
    US_STATES,
    WEEKEND_FACTOR,
)

# The scenario names are defined with the episodes (scenarios.py) and exported from here too.
__all__ = [
    "ACCOUNT_TAKEOVER",
    "ATTACKS",
    "BENIGN",
    "BENIGN_TRAVEL",
    "BRUTE_FORCE",
    "CREDENTIAL_STUFFING",
    "DEFAULT_SIM_START",
    "FORGETFUL",
    "IMPOSSIBLE_TRAVEL",
    "LOOKALIKES",
    "NEW_PHONE",
    "SCENARIOS",
    "SHARED_IP",
    "ScenarioMix",
    "SimEvent",
    "Simulation",
]

_CODES: Final = tuple(c.code for c in COUNTRIES)

# Default start of the simulated clock when rate = 0: Monday 2025-01-06 00:00:00 UTC.
DEFAULT_SIM_START: Final = 1_736_121_600
ACTIVITY_SKEW: Final = 1.5  # user index = n * U**skew: low indexes are the heavy users


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


def plan_steps(
    rules: TruthRules, mix: ScenarioMix, rate: float, logins_per_day: float
) -> tuple[list[str], list[float], float]:
    """Per-step scenario probabilities such that each scenario's share of *events* is its ratio: (the
    scenarios that can start, their cumulative probabilities, steps per second). ``rate`` 0 is simulated
    time, where the benign logins' natural rate (``logins_per_day`` of the whole population) sets the pace."""
    k, m = rules.brute_force_failures, rules.stuffing_accounts
    lengths = {  # events per episode
        BENIGN: 1.0,
        BRUTE_FORCE: k + 20.0,
        CREDENTIAL_STUFFING: 4.0 * m,
        IMPOSSIBLE_TRAVEL: 2.0,
        ACCOUNT_TAKEOVER: (1 + max(1, k - 1)) / 2 + 2.0,
        BENIGN_TRAVEL: 4.0,
        NEW_PHONE: 1.0,
        FORGETFUL: (1 + max(1, min(3, k - 2))) / 2 + 1.0,
    }
    ratios = mix.ratios()
    ratios[BENIGN] = 1.0 - sum(ratios.values())
    simulated = rate <= 0
    # In simulated time a rejected candidate (rhythm thinning) consumes a step; in wall-clock mode the
    # candidate is redrawn, so every step yields its events.
    accept = {s: (RHYTHM_MEAN if simulated and s in (BENIGN, *LOOKALIKES) else 1.0) for s in lengths}
    weights = {s: ratios[s] / (lengths[s] * accept[s]) for s in lengths}
    total = sum(weights.values())
    names = [s for s in lengths if weights[s] > 0]
    cum = list(accumulate(weights[s] / total for s in names))
    if simulated:
        return names, cum, logins_per_day / 86400 / (weights[BENIGN] / total * RHYTHM_MEAN)
    per_step = sum(weights[s] / total * lengths[s] * accept[s] for s in lengths)
    return names, cum, rate / per_step


@dataclass
class Simulation(Lookalikes, Attacks):
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
        self._heap: list[tuple[float, int, Login]] = []
        # simulated time: a rejected candidate costs its step; wall clock: redraw up to 20 times
        self._tries = 1 if self.rate <= 0 else 20
        self._seq = 0
        self._attack_seq = 0
        self._attack_cum = list(accumulate(c.attack_weight for c in COUNTRIES))
        self._travel_cum = list(accumulate(c.travel_weight for c in COUNTRIES))
        self._state_cum = list(accumulate(w for _, _, w in US_STATES))
        self._step_names, self._step_cum, self._step_rate = plan_steps(
            self.rules, self.mix, self.rate, self.users * self.logins_per_user_day
        )

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

    def _push(self, t: float, login: Login) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, login))

    def _country(self, cum: list[float], exclude: set[int] | None = None) -> int:
        """A country index drawn by the weights behind ``cum``; -1 when ``exclude`` leaves none."""
        rng = self._rng
        for _ in range(20):
            ci = bisect_right(cum, rng.random() * cum[-1])
            if not exclude or ci not in exclude:
                return ci
        left = [c for c in range(len(COUNTRIES)) if exclude and c not in exclude]
        return rng.choice(left) if left else -1

    # --- the driver -----------------------------------------------------------------------------------
    def _emit(self, t: float, lg: Login) -> SimEvent:
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
