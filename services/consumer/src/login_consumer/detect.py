"""What detectors are, shared by both stages: detections, the detector protocols, names and settings.

The user-keyed stage (``stages/user.py``) calls ``Detectors.detect`` once per batch with the enriched
documents, in input order, after enrichment and before risk scoring; the default implementation is
``detectors/users.py`` (brute_force, impossible_travel, new_device, new_country). credential_stuffing runs
on the network-keyed stage (``detectors/networks.py``), where one network's events meet whatever the
number of consumer processes. Detections name their detector, give human-readable evidence and a risk
contribution (added to the event's score, capped at 100); they land in the output's ``detections`` list,
their names in ``reasons``, and in ``login_consumer_detections_total{detector}``.

A detector must not raise for bad data and must not mutate the documents (parts of them are shared
between events through the enrichment caches); if ``detect`` raises, the batch is still processed without
detections and ``login_consumer_errors_total{type="processing"}`` counts it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

if TYPE_CHECKING:
    from login_consumer.config import ConsumerSettings


@dataclass(frozen=True, slots=True)
class Detection:
    """One detector firing for one event."""

    detector: str  # a short, stable snake_case name: it is a metric label value
    evidence: tuple[str, ...] = ()  # why, for humans: "5 failures in 60s from 3 IPs"
    risk: int = 0  # 0-100, added to the event's risk score
    # What a detection about more than the event is about, and how big it is: credential_stuffing sets the
    # network and its failing accounts (login_consumer_stuffing_network_accounts, the alert per network).
    scope: str = ""
    count: int = 0


@dataclass(frozen=True, slots=True)
class PartitionRef:
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class DetectBatch:
    """One batch as detectors see it.

    ``events[i]`` is the enriched document of the i-th valid event (the fields of processed_login v1
    except the risk fields, which are filled afterwards), read-only; ``partitions[i]`` and ``offsets[i]``
    say where it came from. ``now`` is the batch's wall-clock time (epoch seconds).
    """

    events: Sequence[dict[str, Any]]
    partitions: Sequence[int]
    offsets: Sequence[int]
    now: float


NO_DETECTIONS: Final[Mapping[int, Sequence[Detection]]] = {}


@runtime_checkable
class Detectors(Protocol):
    def detect(self, batch: DetectBatch) -> Mapping[int, Sequence[Detection]]:
        """Detections by event index in ``batch.events``; events without any are left out."""
        ...

    def on_assign(self, partitions: Sequence[PartitionRef]) -> None:
        """Partitions were assigned to this consumer: restore their state before their events arrive."""
        ...

    def on_revoke(self, partitions: Sequence[PartitionRef], *, lost: bool) -> None:
        """Partitions are going away (their offsets are committed first unless ``lost``)."""
        ...

    def state_sizes(self) -> Mapping[str, int]:
        """Entries per state store, e.g. ``{"failures_by_user": 1234}``."""
        ...


@runtime_checkable
class StateChangelog(Protocol):
    """Detectors whose state is written to a changelog topic with each batch (before its commit)."""

    def changes(self) -> Sequence[tuple[str, int, bytes, bytes | None]]:
        """(topic, partition, key, value or None for a tombstone) of the state changed since the last call."""
        ...

    def rewind(self, partitions: Sequence[PartitionRef]) -> None:
        """The last batch of these partitions was not delivered and will be processed again."""
        ...


class NoDetectors:
    """Detects nothing and keeps no state (``DETECTORS=none``)."""

    def detect(self, batch: DetectBatch) -> Mapping[int, Sequence[Detection]]:
        return NO_DETECTIONS

    def on_assign(self, partitions: Sequence[PartitionRef]) -> None:
        return None

    def on_revoke(self, partitions: Sequence[PartitionRef], *, lost: bool) -> None:
        return None

    def state_sizes(self) -> Mapping[str, int]:
        return {}


# --------------------------------------------------------------------------- the stateful detectors

BRUTE_FORCE: Final = "brute_force"
CREDENTIAL_STUFFING: Final = "credential_stuffing"
IMPOSSIBLE_TRAVEL: Final = "impossible_travel"
NEW_DEVICE: Final = "new_device"
NEW_COUNTRY: Final = "new_country"
DETECTOR_NAMES: Final = (BRUTE_FORCE, CREDENTIAL_STUFFING, IMPOSSIBLE_TRAVEL, NEW_DEVICE, NEW_COUNTRY)
DEFAULT_RISKS: Final[dict[str, int]] = {
    BRUTE_FORCE: 40,
    CREDENTIAL_STUFFING: 40,
    IMPOSSIBLE_TRAVEL: 50,
    NEW_DEVICE: 15,
    NEW_COUNTRY: 20,
}


def parse_detectors(text: str) -> tuple[str, ...]:
    """``DETECTORS``: comma-separated names, ``all`` or ``none``; raise ValueError naming a bad one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names in (["all"], []):
        return DETECTOR_NAMES if names else ()
    if names == ["none"]:
        return ()
    unknown = [name for name in names if name not in DETECTOR_NAMES]
    if unknown:
        raise ValueError(f"unknown detector(s) {', '.join(unknown)}; known: {', '.join(DETECTOR_NAMES)}")
    return tuple(name for name in DETECTOR_NAMES if name in names)


def parse_risks(text: str) -> dict[str, int]:
    """``DETECTOR_RISKS``: ``name=risk,...`` (0-100) overriding DEFAULT_RISKS."""
    out = dict(DEFAULT_RISKS)
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in DEFAULT_RISKS:
            raise ValueError(f"{item!r}: expected name=risk with name one of {', '.join(DETECTOR_NAMES)}")
        try:
            risk = int(value.strip())
        except ValueError:
            raise ValueError(f"{item!r}: risk must be an integer 0-100") from None
        if not 0 <= risk <= 100:
            raise ValueError(f"{item!r}: risk must be an integer 0-100")
        out[name] = risk
    return out


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Thresholds and bounds; the defaults equal the producer's truth rules (TRUTH_* settings)."""

    enabled: tuple[str, ...] = DETECTOR_NAMES
    brute_force_failures: int = 5
    brute_force_window: int = 300
    stuffing_accounts: int = 10
    stuffing_window: int = 600
    stuffing_prefix: int = 24  # IPv4 network: the /24, or 32 = the address itself; IPv6: always the /64
    travel_max_speed_kmh: float = 1000.0
    travel_min_distance_km: float = 500.0
    grace: int = 300
    user_ttl: int = 30 * 86_400
    max_users: int = 2_000_000
    max_failure_keys: int = 100_000
    max_networks: int = 50_000
    state_time_slack: int = 60
    risks: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RISKS))

    @classmethod
    def from_settings(cls, settings: ConsumerSettings) -> DetectorConfig:
        return cls(
            enabled=parse_detectors(settings.detectors),
            brute_force_failures=settings.brute_force_failures,
            brute_force_window=settings.brute_force_window_seconds,
            stuffing_accounts=settings.stuffing_accounts,
            stuffing_window=settings.stuffing_window_seconds,
            stuffing_prefix=settings.stuffing_prefix,
            travel_max_speed_kmh=settings.travel_max_speed_kmh,
            travel_min_distance_km=settings.travel_min_distance_km,
            grace=settings.detector_grace_seconds,
            user_ttl=settings.user_state_ttl_seconds,
            max_users=settings.max_state_users,
            max_failure_keys=settings.max_state_failure_keys,
            max_networks=settings.max_state_networks,
            state_time_slack=settings.state_time_slack_seconds,
            risks=parse_risks(settings.detector_risks),
        )


class StateSource(Protocol):
    """Where partitions' state is restored from (the changelog topic)."""

    topic: str

    def read(self, partitions: Sequence[int]) -> Mapping[int, Sequence[tuple[bytes, bytes | None]]]:
        """Each partition's records, oldest first."""
        ...


def network_of(ip: str, prefix: int = 24) -> str | None:
    """The network an address belongs to for credential stuffing: IPv4 /24 (or the address), IPv6 /64;
    None for text that is neither (such an event completes without the network stage)."""
    if ":" not in ip:
        if ip.count(".") != 3:
            return None
        if prefix == 24:
            return ip.rpartition(".")[0] + ".0/24"
        return ip + "/32"
    try:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    except ValueError:
        return None
