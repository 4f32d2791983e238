"""Simulated login traffic.

``Simulation`` yields ``SimEvent``s: the event as it goes on the wire plus its ground truth (scenario and
attack id), which travels in headers (Kafka) or label fields (files) and never in the event itself.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from login_common.contract import FETCH_FIELDS

BENIGN = "benign"

_STATES = ("RI", "MD", "TX", "CA", "NY", "WA", "FL", "IL", "MA", "CO")
_DEVICE_TYPES = ("android", "iOS", "web")
_APP_VERSIONS = ("2.2.0", "2.3.0", "2.3.1", "2.4.0")


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One simulated login and its ground truth."""

    key: str
    event: dict[str, Any]
    scenario: str = BENIGN
    attack_id: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)

    def fetch_view(self) -> dict[str, Any]:
        """The event reduced to the common generator's seven fields (no labels, no extras)."""
        return {k: self.event[k] for k in FETCH_FIELDS if k in self.event}


@dataclass
class Simulation:
    seed: int = 42
    users: int = 1000
    start_time: float | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def events(self) -> Iterator[SimEvent]:
        rng = self._rng
        n = 0
        base = int(self.start_time if self.start_time is not None else time.time())
        while True:
            uid = f"user-{rng.randrange(self.users):07d}"
            event: dict[str, Any] = {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "user_id": uid,
                "app_version": rng.choice(_APP_VERSIONS),
                "ip": ".".join(
                    str(o)
                    for o in (
                        rng.randint(1, 223),
                        rng.randint(0, 255),
                        rng.randint(0, 255),
                        rng.randint(1, 254),
                    )
                ),
                "locale": rng.choice(_STATES),
                "device_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "timestamp": base + n // 100,
                "device_type": rng.choice(_DEVICE_TYPES),
                "outcome": "success",
                "auth_method": "password",
            }
            n += 1
            yield SimEvent(key=uid, event=event)
