"""The detectors of each stage, and the one place that chooses them from the settings."""

from __future__ import annotations

from login_consumer.config import ConsumerSettings
from login_consumer.detect import CREDENTIAL_STUFFING, DetectorConfig, Detectors, NoDetectors, StateSource
from login_consumer.detectors.networks import NetworkDetector
from login_consumer.detectors.users import UserDetectors
from login_consumer.privacy import evidence_privacy
from login_consumer.stores.changelog import Changelog

__all__ = ["NetworkDetector", "UserDetectors", "build_detectors", "build_network_detector"]

_USER_DETECTORS = {"brute_force", "impossible_travel", "new_device", "new_country"}


def build_detectors(settings: ConsumerSettings) -> Detectors:
    """The user stage's detectors: none, or the stateful ones (with their changelog)."""
    config = DetectorConfig.from_settings(settings)
    if not _USER_DETECTORS & set(config.enabled):
        return NoDetectors()
    source: StateSource | None = Changelog(settings) if settings.state_changelog else None
    return UserDetectors(config, source)


def build_network_detector(settings: ConsumerSettings) -> NetworkDetector | None:
    """The network stage's detector (credential_stuffing), or None when it is off (no network stage)."""
    config = DetectorConfig.from_settings(settings)
    if CREDENTIAL_STUFFING not in config.enabled:
        return None
    source: StateSource | None = None
    if settings.state_changelog:
        source = Changelog(settings, settings.network_state_topic(), settings.repartition_topic())
    return NetworkDetector(config, source, privacy=evidence_privacy(settings))
