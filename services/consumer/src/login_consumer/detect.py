"""The seam for stateful detectors (brute force, credential stuffing, impossible travel, new device/country).

The pipeline calls ``Detectors.detect`` once per batch with the enriched documents, in input order, after
enrichment and before risk scoring. It returns, sparsely, the detections per event index: each names its
detector, gives human-readable evidence and a risk contribution (added to the event's score, capped at
100). Detections land in the output's ``detections`` list, their detector names in ``reasons``, and in
``login_consumer_detections_total{detector}``. ``state_sizes`` feeds ``login_consumer_state_entries{store}``.

State is per input partition (events are keyed by ``user_id``, so a user's events share a partition):
``on_assign`` is where state for newly assigned partitions can be restored, ``on_revoke`` where it can be
flushed (``lost=True``: the partitions were taken away without a clean hand-over; do not flush).

This module ships the no-op ``NoDetectors``; ``build_detectors`` is the one place that chooses the
implementation. A detector must not raise for bad data and must not mutate the documents (parts of them
are shared between events through the enrichment caches); if ``detect`` raises, the batch is still
processed without detections and ``login_consumer_errors_total{type="processing"}`` counts it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

if TYPE_CHECKING:
    from login_consumer.config import ConsumerSettings


@dataclass(frozen=True, slots=True)
class Detection:
    """One detector firing for one event."""

    detector: str  # a short, stable snake_case name: it is a metric label value
    evidence: tuple[str, ...] = ()  # why, for humans: "5 failures in 60s from 3 IPs"
    risk: int = 0  # 0-100, added to the event's risk score


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


class NoDetectors:
    """The default: detects nothing and keeps no state."""

    def detect(self, batch: DetectBatch) -> Mapping[int, Sequence[Detection]]:
        return NO_DETECTIONS

    def on_assign(self, partitions: Sequence[PartitionRef]) -> None:
        return None

    def on_revoke(self, partitions: Sequence[PartitionRef], *, lost: bool) -> None:
        return None

    def state_sizes(self) -> Mapping[str, int]:
        return {}


def build_detectors(settings: ConsumerSettings) -> Detectors:
    """The detectors the consumer runs with (today: none)."""
    del settings
    return NoDetectors()
