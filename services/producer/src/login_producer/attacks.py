"""The labelled attacks, mixed into ``Simulation`` (``simulate.py``): brute force (one account, many
failures from one hosting IP), credential stuffing (many accounts, one hosting network, mostly failures),
account takeover (a few failures, then success from a country the victim never used) and impossible
travel (two successes too far apart for the time between them). Attackers use foreign devices and the
agents below; each attack has its own id (``x-sim-attack-id``).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Final

from login_producer.population import generator_device_id
from login_producer.scenarios import (
    ACCOUNT_TAKEOVER,
    BRUTE_FORCE,
    CREDENTIAL_STUFFING,
    IMPOSSIBLE_TRAVEL,
    Login,
    SimulationParts,
)
from login_producer.world import COUNTRIES, US, US_STATES

_ATTACK_AGENTS: Final = (
    "python-requests/2.31.0",
    "okhttp/4.12.0",
    "curl/8.5.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "LoginApp/2.1.0 (Linux; Android 11; SM-G960F)",
)


class Attacks:
    def _attack_id(self: SimulationParts, prefix: str) -> str:
        self._attack_seq += 1
        return f"{prefix}-{self.seed}-{self._attack_seq:06d}"

    def _attacker_locale(self: SimulationParts, ci: int) -> str:
        if COUNTRIES[ci].code == US:
            return US_STATES[bisect_right(self._state_cum, self._rng.random() * self._state_cum[-1])][0]
        return COUNTRIES[ci].code

    def _foreign_device(self: SimulationParts) -> tuple[str, str]:
        rng = self._rng
        return generator_device_id(rng.getrandbits(40)), ("web" if rng.random() < 0.6 else "android")

    def _brute_force(self: SimulationParts, t: float) -> None:
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
                Login(
                    idx, victim.user_id, None, ip, ci, locale, False, "password", BRUTE_FORCE, attack,
                    device_id=device_id, device_type=device_type, app_version="2.1.0", user_agent=agent,
                ),
            )  # fmt: skip
            t += rng.uniform(1, 12)

    def _credential_stuffing(self: SimulationParts, t: float) -> None:
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
                Login(
                    user, user_id, None, pool.in_block(block, rng.choice(hosts)), ci, locale, success,
                    "password", CREDENTIAL_STUFFING, attack,
                    device_id=device_id, device_type=device_type, app_version="2.1.0", user_agent=agent,
                ),
            )  # fmt: skip
            t += rng.uniform(0.2, 3.0)

    def _account_takeover(self: SimulationParts, t: float) -> None:
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

        def login(success: bool, auth: str) -> Login:
            return Login(
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

    def _impossible_travel(self: SimulationParts, t: float) -> None:
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
            Login(
                victim.idx, victim.user_id, device, victim.home_ip, victim.country, victim.locale, True,
                "token", IMPOSSIBLE_TRAVEL, attack,
            ),
        )  # fmt: skip
        longest = min(6 * 3600.0, dist / (1.5 * rules.travel_max_speed_kmh) * 3600)
        t += rng.uniform(min(300.0, longest / 2), longest)
        ip = self._pools[COUNTRIES[ci].code].hosting.address(rng.getrandbits(40))
        self._push(
            t,
            Login(
                victim.idx, victim.user_id, device, ip, ci, victim.locale, True, "token", IMPOSSIBLE_TRAVEL,
                attack,
            ),
        )  # fmt: skip
        self._busy[victim.idx] = t
