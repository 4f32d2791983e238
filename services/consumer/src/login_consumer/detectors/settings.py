"""The detectors' settings: which run, their thresholds, windows, risks and state bounds.

A part of the consumer's one settings model (``ConsumerSettings`` inherits it, as it does the privacy
settings), kept with the detectors so that a detector's settings are changed where the detector is.
``DETECTORS`` and ``DETECTOR_RISKS`` are parsed once, when the settings are loaded (``detector_names``,
``risks``); ``detector_config()`` hands the detectors their ``DetectorConfig``. The defaults equal the
producer's TRUTH_* defaults (docs/detection.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PrivateAttr, model_validator
from pydantic_settings import BaseSettings

from login_consumer.detectors.base import DetectorConfig
from login_consumer.detectors.names import DEFAULT_RISKS, parse_detectors, parse_risks


class DetectorSettings(BaseSettings):
    _detector_names: tuple[str, ...] = PrivateAttr(())
    _risks: dict[str, int] = PrivateAttr(default_factory=dict)

    detectors: str = Field(
        "all",
        description=(
            "Stateful detectors to run: 'all', 'none' or a comma-separated subset of brute_force, "
            "credential_stuffing, impossible_travel, new_device, new_country."
        ),
    )
    brute_force_failures: int = Field(
        5, ge=1, le=10_000, description="brute_force: failures of one account from one IP within the window."
    )
    brute_force_window_seconds: int = Field(
        300, ge=1, le=86_400, description="brute_force: sliding event-time window (seconds)."
    )
    stuffing_accounts: int = Field(
        10, ge=1, le=100_000, description="credential_stuffing: distinct accounts failing from one network."
    )
    stuffing_window_seconds: int = Field(
        600, ge=1, le=86_400, description="credential_stuffing: sliding event-time window (seconds)."
    )
    stuffing_prefix: Literal[24, 32] = Field(
        24,
        description="credential_stuffing: IPv4 network prefix, 24 (the /24) or 32 (the address); IPv6: /64.",
    )
    travel_max_speed_kmh: float = Field(
        1000.0, gt=0, description="impossible_travel: faster than this between two successes is impossible."
    )
    travel_min_distance_km: float = Field(
        500.0, ge=0, description="impossible_travel: closer than this is never impossible."
    )
    detector_risks: str = Field(
        "",
        description=(
            "Risk added per detection, overrides 'name=risk,...' (0-100); defaults brute_force=40, "
            "credential_stuffing=40, impossible_travel=50, new_device=15, new_country=20."
        ),
    )
    detector_grace_seconds: int = Field(
        300,
        ge=0,
        le=86_400,
        description=(
            "Events up to this far behind their partition's latest event time update the detector state; "
            "later ones are scored as-is, flagged late, and change nothing."
        ),
    )
    user_state_ttl_seconds: int = Field(
        30 * 86_400, ge=60, description="A user's device/country history is forgotten after this idle time."
    )
    max_state_users: int = Field(
        2_000_000, ge=1, description="Most user histories kept (least recently active go first)."
    )
    max_state_failure_keys: int = Field(
        100_000, ge=1, description="Most (user, IP) brute-force windows kept."
    )
    max_state_networks: int = Field(
        50_000, ge=1, description="Most network credential-stuffing windows kept."
    )
    state_time_slack_seconds: int = Field(
        60,
        ge=0,
        le=3_600,
        description=(
            "A login that changes nothing but a user's last-success time is written to the changelog only "
            "once that time is this far ahead of the last record (0 = always)."
        ),
    )

    @model_validator(mode="after")
    def _detector_lists(self) -> DetectorSettings:
        """Parse DETECTORS and DETECTOR_RISKS, once; a bad entry is named with its variable."""
        try:
            self._detector_names = parse_detectors(self.detectors)
        except ValueError as exc:
            raise ValueError(f"DETECTORS={self.detectors!r}: {exc}") from None
        try:
            self._risks = parse_risks(self.detector_risks)
        except ValueError as exc:
            raise ValueError(f"DETECTOR_RISKS={self.detector_risks!r}: {exc}") from None
        return self

    @property
    def detector_names(self) -> tuple[str, ...]:
        """``DETECTORS``, parsed: the enabled detectors, in their canonical order."""
        return self._detector_names

    @property
    def risks(self) -> dict[str, int]:
        """``DETECTOR_RISKS`` over the default risks: the risk each detector adds."""
        return dict(self._risks or DEFAULT_RISKS)

    def detector_config(self) -> DetectorConfig:
        """The detectors' thresholds and bounds from these settings."""
        return DetectorConfig(
            enabled=self.detector_names,
            brute_force_failures=self.brute_force_failures,
            brute_force_window=self.brute_force_window_seconds,
            stuffing_accounts=self.stuffing_accounts,
            stuffing_window=self.stuffing_window_seconds,
            stuffing_prefix=self.stuffing_prefix,
            travel_max_speed_kmh=self.travel_max_speed_kmh,
            travel_min_distance_km=self.travel_min_distance_km,
            grace=self.detector_grace_seconds,
            user_ttl=self.user_state_ttl_seconds,
            max_users=self.max_state_users,
            max_failure_keys=self.max_state_failure_keys,
            max_networks=self.max_state_networks,
            state_time_slack=self.state_time_slack_seconds,
            risks=self.risks,
        )
