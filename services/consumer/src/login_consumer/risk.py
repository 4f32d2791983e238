"""Explainable per-event risk: named factors, each with a configurable weight, summed and capped at 100.

Every factor that fires is listed by name in the output's ``reasons`` (factors weighted 0 are left out);
detections of the stateful detectors (``detectors/``) add their own risk and their detector name. The
level follows two thresholds (RISK_MEDIUM_THRESHOLD, RISK_HIGH_THRESHOLD).

The factors fall in three groups, so that most of the work is done once per distinct value:

* place (``place_factors``): from the IP and the locale; the enricher caches it per (ip, locale);
* client (``client_factors``): from device_type and app_version; cached per pair;
* event (in ``assess``): local night-time, device_id, outcome and user agent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from login_consumer.detectors.base import Detection
from login_consumer.names import parse_values

# name -> (default weight, what it means). The order is the order of ``reasons``.
FACTORS: Final[dict[str, tuple[int, str]]] = {
    "ip_not_public": (20, "the IP is private, shared (CGNAT), loopback, link-local, multicast or reserved"),
    "geo_unknown": (10, "a public IP the geo dataset does not know"),
    "country_mismatch": (25, "the IP's country differs from the locale's country"),
    "continent_mismatch": (15, "the IP's continent differs from the locale's continent too"),
    "missing_app_version": (5, "no app_version"),
    "invalid_app_version": (15, "app_version is not a version"),
    "outdated_app": (15, "app_version below MIN_APP_VERSION"),
    "missing_device_type": (5, "no device_type"),
    "unknown_platform": (10, "device_type is not a known platform"),
    "night_login": (10, "local time between 00:00 and 05:59 (only when a timezone is known)"),
    "missing_device_id": (10, "no device_id"),
    "failed_login": (20, "outcome is failure"),
    "automation_user_agent": (30, "user_agent looks like a script, headless browser or bot"),
}
DEFAULT_WEIGHTS: Final[dict[str, int]] = {name: weight for name, (weight, _) in FACTORS.items()}
LEVELS: Final = ("low", "medium", "high")

# (factor names, their summed weight)
Factors = tuple[tuple[str, ...], int]
NO_FACTORS: Final[Factors] = ((), 0)

_AUTOMATION = re.compile(
    r"curl|wget|python-requests|python-urllib|aiohttp|httpx|go-http-client|java/|okhttp|libwww|"
    r"headless|phantomjs|selenium|puppeteer|playwright|scrapy|\bbot\b|crawler|spider",
    re.IGNORECASE,
)


def parse_weights(text: str) -> dict[str, int]:
    """Parse ``name=weight,name=weight`` (the overrides only); raise ValueError naming an unknown factor
    or a bad weight."""
    return parse_values(text, FACTORS, value="weight")


def is_automation(user_agent: str) -> bool:
    return _AUTOMATION.search(user_agent) is not None


class RiskModel:
    """Factor weights and level thresholds; cheap per event (the static groups come precomputed)."""

    def __init__(self, weights: dict[str, int] | None = None, medium: int = 30, high: int = 60) -> None:
        unknown = set(weights or {}) - set(FACTORS)
        if unknown:
            raise ValueError(f"unknown risk factors: {', '.join(sorted(unknown))}")
        if not 0 < medium < high:
            raise ValueError(f"thresholds must satisfy 0 < medium ({medium}) < high ({high})")
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        self.medium = medium
        self.high = high
        w = self.weights
        self._night = w["night_login"]
        self._no_device_id = w["missing_device_id"]
        self._failed = w["failed_login"]
        self._automation = w["automation_user_agent"]
        self._ua_cache: dict[str, bool] = {}

    def level(self, score: int) -> str:
        if score >= self.high:
            return "high"
        if score >= self.medium:
            return "medium"
        return "low"

    def _factors(self, names: list[str]) -> Factors:
        fired = tuple(name for name in names if self.weights[name] > 0)
        return fired, sum(self.weights[name] for name in fired)

    def place_factors(
        self,
        ip_class: str,
        ip_country: str | None,
        ip_continent: str | None,
        locale_country: str | None,
        locale_continent: str | None,
    ) -> Factors:
        """Factors of the network and the place: ip_not_public, geo_unknown, country/continent_mismatch."""
        names: list[str] = []
        if ip_class != "public":
            names.append("ip_not_public")
        elif ip_country is None:
            names.append("geo_unknown")
        if ip_country is not None and locale_country is not None and ip_country != locale_country:
            names.append("country_mismatch")
            if ip_continent is not None and locale_continent is not None and ip_continent != locale_continent:
                names.append("continent_mismatch")
        return self._factors(names)

    def client_factors(self, device: dict[str, Any], app: dict[str, Any]) -> Factors:
        """Factors of the client: app version missing/invalid/outdated, device type missing/unknown."""
        names: list[str] = []
        if app["version"] is None:
            names.append("missing_app_version")
        elif not app["valid"]:
            names.append("invalid_app_version")
        elif not app["supported"]:
            names.append("outdated_app")
        platform = device["platform"]
        if platform == "unknown":
            names.append("missing_device_type")
        elif platform == "other":
            names.append("unknown_platform")
        return self._factors(names)

    def _is_automation(self, user_agent: str) -> bool:
        bot = self._ua_cache.get(user_agent)
        if bot is None:
            if len(self._ua_cache) >= 10_000:
                self._ua_cache.clear()
            bot = self._ua_cache[user_agent] = is_automation(user_agent)
        return bot

    def assess(
        self,
        place: Factors,
        client: Factors,
        night: bool,
        doc: dict[str, Any],
        user_agent: str | None,
        *,
        detections: Sequence[Detection] | None = None,
    ) -> tuple[int, str, list[str], list[dict[str, Any]]]:
        """(score 0-100, level, reasons, detections as output objects) for one enriched document."""
        reasons = [*place[0], *client[0]]
        total = place[1] + client[1]
        if night and self._night:
            reasons.append("night_login")
            total += self._night
        if doc["device_id"] is None and self._no_device_id:
            reasons.append("missing_device_id")
            total += self._no_device_id
        if doc["outcome"] == "failure" and self._failed:
            reasons.append("failed_login")
            total += self._failed
        if user_agent and self._automation and self._is_automation(user_agent):
            reasons.append("automation_user_agent")
            total += self._automation
        found: list[dict[str, Any]] = []
        if detections:
            for det in detections:
                total += det.risk
                reasons.append(det.detector)
                found.append({"detector": det.detector, "evidence": list(det.evidence), "risk": det.risk})
        score = total if total < 100 else 100
        if score >= self.high:
            return score, "high", reasons, found
        if score >= self.medium:
            return score, "medium", reasons, found
        return score, "low", reasons, found
