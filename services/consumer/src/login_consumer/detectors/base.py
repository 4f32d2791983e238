"""What detectors are, shared by both stages: detections, the detector protocols and their settings.

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

The names live in ``detectors/names.py``; ``ConsumerSettings.detector_config()`` builds the
``DetectorConfig`` from the settings (this module does not know the settings model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from login_consumer.detectors.names import DEFAULT_RISKS, DETECTOR_NAMES
from login_consumer.records import PartitionRef, StateRecord


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

    def changes(self) -> Sequence[StateRecord]:
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
