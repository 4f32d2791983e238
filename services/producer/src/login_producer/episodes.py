"""The everyday login and the benign look-alikes of attacks, mixed into ``Simulation`` (``simulate.py``).

``_everyday``: one login of a user the daily rhythm accepts, from a usual device and IP (at the office:
``shared_ip``). The look-alikes are what a detector must *not* flag: ``forgetful`` (a few failures, then
the usual success), ``new_phone`` (a first login from a new phone at home), ``benign_travel`` (a trip at a
plausible speed). Each queues its logins at their own times (``_push``) and marks the user busy until done.
"""

from __future__ import annotations

from login_producer.population import MAX_PHONE_GENERATION
from login_producer.scenarios import (
    BENIGN,
    BENIGN_TRAVEL,
    FLIGHT_KMH,
    FLIGHT_OVERHEAD_H,
    FORGETFUL,
    NEW_PHONE,
    SHARED_IP,
    Login,
    SimulationParts,
)
from login_producer.world import COUNTRIES


class Lookalikes:
    def _everyday(self: SimulationParts, t: float) -> Login | None:
        p = self._pick_user(t)
        if p is None:
            return None
        device, ip, at_work = self._usual(p, t)
        return Login(
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

    def _forgetful(self: SimulationParts, t: float) -> None:
        p = self._pick_user(t)
        if p is None:
            return
        rng = self._rng
        device, ip, _ = self._usual(p, t)
        failures = rng.randint(1, max(1, min(3, self.rules.brute_force_failures - 2)))
        for _ in range(failures):
            self._push(
                t, Login(p.idx, p.user_id, device, ip, p.country, p.locale, False, "password", FORGETFUL)
            )
            t += rng.uniform(5, 40)
        self._push(t, Login(p.idx, p.user_id, device, ip, p.country, p.locale, True, "password", FORGETFUL))
        self._busy[p.idx] = t

    def _new_phone(self: SimulationParts, t: float) -> None:
        p = self._pick_user(t)
        if p is None or self._phone_gen[p.idx] >= MAX_PHONE_GENERATION:
            return
        self._phone_gen[p.idx] += 1
        device = self._phone(p)
        ip = p.home_ip
        if self._rng.random() < 0.4:
            ip = self._pools[COUNTRIES[p.country].code].residential.address(self._rng.getrandbits(40))
        self._push(t, Login(p.idx, p.user_id, device, ip, p.country, p.locale, True, "password", NEW_PHONE))
        self._busy[p.idx] = t + 1

    def _benign_travel(self: SimulationParts, t: float) -> None:
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
            self._push(at, Login(p.idx, p.user_id, device, ip, dest, p.locale, True, auth, BENIGN_TRAVEL))
        back = arrive + stay + flight_s
        device = self._phone(p)
        self._push(
            back,
            Login(p.idx, p.user_id, device, p.home_ip, p.country, p.locale, True, "token", BENIGN_TRAVEL),
        )
        self._busy[p.idx] = back
