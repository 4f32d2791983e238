"""The detectors' names, which stage runs each, and their default risks; ``DETECTORS`` and
``DETECTOR_RISKS`` read through the one list parser (``login_consumer.names``).

A name is a metric label value (``login_consumer_detections_total{detector}``), an output ``reasons``
entry and a word of the ``DETECTORS`` setting: short, stable, snake_case. Adding a detector starts here
(docs/architecture.md, "Where to change what"). This module imports only the parser, so the settings
model can use it without importing the detectors.
"""

from __future__ import annotations

from typing import Final

from login_consumer.names import parse_names, parse_values

BRUTE_FORCE: Final = "brute_force"
CREDENTIAL_STUFFING: Final = "credential_stuffing"
IMPOSSIBLE_TRAVEL: Final = "impossible_travel"
NEW_DEVICE: Final = "new_device"
NEW_COUNTRY: Final = "new_country"
DETECTOR_NAMES: Final = (BRUTE_FORCE, CREDENTIAL_STUFFING, IMPOSSIBLE_TRAVEL, NEW_DEVICE, NEW_COUNTRY)
# the user-keyed stage's detectors (detectors/users.py); the others run on the network stage
USER_DETECTORS: Final = frozenset({BRUTE_FORCE, IMPOSSIBLE_TRAVEL, NEW_DEVICE, NEW_COUNTRY})
NETWORK_DETECTORS: Final = frozenset({CREDENTIAL_STUFFING})
DEFAULT_RISKS: Final[dict[str, int]] = {
    BRUTE_FORCE: 40,
    CREDENTIAL_STUFFING: 40,
    IMPOSSIBLE_TRAVEL: 50,
    NEW_DEVICE: 15,
    NEW_COUNTRY: 20,
}


def parse_detectors(text: str) -> tuple[str, ...]:
    """``DETECTORS``: comma-separated names, ``all`` or ``none``; raise ValueError naming a bad one."""
    return parse_names(text, DETECTOR_NAMES, kind="detector")


def parse_risks(text: str) -> dict[str, int]:
    """``DETECTOR_RISKS``: ``name=risk,...`` (0-100) laid over DEFAULT_RISKS."""
    return {**DEFAULT_RISKS, **parse_values(text, DETECTOR_NAMES, value="risk")}
