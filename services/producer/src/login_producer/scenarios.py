"""What the simulation is made of, shared by its parts (``simulate.py``, ``episodes.py``, ``attacks.py``):
the scenario names (the ``x-sim-scenario`` header), a login waiting to be emitted (``Login``) and what an
episode may use of the simulation (``SimulationParts``: its random source, population, truth oracle,
queue and helpers). The episodes are mixed into ``Simulation`` and typed against that protocol, so each
file is read on its own and the simulation's random draws happen in the same order as before the split
(the same seed gives the same events, byte for byte).
"""

from __future__ import annotations

import random
from typing import Final, Protocol

from login_producer.ippool import CountryPools
from login_producer.population import Device, Population, Profile
from login_producer.truth import TruthOracle, TruthRules

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

ATTACKS: Final = (BRUTE_FORCE, CREDENTIAL_STUFFING, IMPOSSIBLE_TRAVEL, ACCOUNT_TAKEOVER)
LOOKALIKES: Final = (FORGETFUL, NEW_PHONE, BENIGN_TRAVEL)
SCENARIOS: Final = (BENIGN, SHARED_IP, *LOOKALIKES, *ATTACKS)
FLIGHT_KMH: Final = 800.0
FLIGHT_OVERHEAD_H: Final = 2.0


class Login:
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


class SimulationParts(Protocol):
    """What the episodes use of ``Simulation`` (``simulate.py``)."""

    seed: int
    users: int
    rules: TruthRules
    population: Population
    oracle: TruthOracle
    _rng: random.Random
    _pools: dict[str, CountryPools]
    _busy: dict[int, float]
    _phone_gen: bytearray
    _attack_seq: int
    _attack_cum: list[float]
    _travel_cum: list[float]
    _state_cum: list[float]

    def _push(self, t: float, login: Login) -> None: ...
    def _pick_user(self, t: float) -> Profile | None: ...
    def _victim(self, t: float, *, history: bool) -> Profile | None: ...
    def _phone(self, p: Profile) -> Device: ...
    def _usual(self, p: Profile, t: float) -> tuple[Device, str, bool]: ...
    def _auth(self, device: Device, at_work: bool) -> str: ...
    def _country(self, cum: list[float], exclude: set[int] | None = None) -> int: ...
    def _attack_id(self, prefix: str) -> str: ...
    def _attacker_locale(self, ci: int) -> str: ...
    def _foreign_device(self) -> tuple[str, str]: ...
