"""Risk: each factor named and weighted from config, summed, capped, levelled; detections add theirs."""

from __future__ import annotations

from typing import Any

import pytest

from login_common.errors import ConfigError
from login_common.settings import load_settings
from login_consumer.config import ConsumerSettings
from login_consumer.detectors.base import Detection
from login_consumer.risk import DEFAULT_WEIGHTS, FACTORS, RiskModel, is_automation, parse_weights

MODEL = RiskModel()

PLACES = [
    # ip class, ip country, ip continent, locale country, locale continent -> factors
    ("public", "US", "NA", "US", "NA", ()),
    ("public", "US", "NA", None, None, ()),
    ("public", "GB", "EU", "US", "NA", ("country_mismatch", "continent_mismatch")),
    ("public", "CA", "NA", "US", "NA", ("country_mismatch",)),
    ("public", None, None, "US", "NA", ("geo_unknown",)),
    ("private", None, None, "US", "NA", ("ip_not_public",)),
    ("reserved", None, None, None, None, ("ip_not_public",)),
    ("loopback", None, None, "FR", "EU", ("ip_not_public",)),
]


@pytest.mark.parametrize(("ip_class", "country", "continent", "l_country", "l_continent", "names"), PLACES)
def test_place_factors(  # noqa: PLR0917 - one argument per table column
    ip_class: str,
    country: str | None,
    continent: str | None,
    l_country: str | None,
    l_continent: str | None,
    names: tuple[str, ...],
) -> None:
    fired, weight = MODEL.place_factors(ip_class, country, continent, l_country, l_continent)
    assert fired == names
    assert weight == sum(DEFAULT_WEIGHTS[n] for n in names)


def _app(version: str | None, valid: bool, supported: bool | None) -> dict[str, Any]:
    return {"version": version, "valid": valid, "supported": supported}


CLIENTS = [
    ("android", _app("2.3.0", True, True), ()),
    ("ios", _app("2.2.0", True, False), ("outdated_app",)),
    ("web", _app("junk", False, None), ("invalid_app_version",)),
    ("android", _app(None, False, None), ("missing_app_version",)),
    ("unknown", _app("2.3.0", True, True), ("missing_device_type",)),
    ("other", _app("2.3.0", True, True), ("unknown_platform",)),
    ("unknown", _app(None, False, None), ("missing_app_version", "missing_device_type")),
]


@pytest.mark.parametrize(("platform", "app", "names"), CLIENTS)
def test_client_factors(platform: str, app: dict[str, Any], names: tuple[str, ...]) -> None:
    fired, weight = MODEL.client_factors({"platform": platform}, app)
    assert fired == names
    assert weight == sum(DEFAULT_WEIGHTS[n] for n in names)


EVENTS = [
    # night, device_id, outcome, user agent -> event factors
    (False, "d", "success", None, ()),
    (True, "d", "success", None, ("night_login",)),
    (False, None, None, None, ("missing_device_id",)),
    (False, "d", "failure", None, ("failed_login",)),
    (False, "d", None, "curl/8.4.0", ("automation_user_agent",)),
    (False, "d", None, "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0", ("automation_user_agent",)),
    (False, "d", None, "python-requests/2.31", ("automation_user_agent",)),
    (False, "d", None, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", ()),
    (
        True,
        None,
        "failure",
        "Googlebot/2.1 (+bot)",
        ("night_login", "missing_device_id", "failed_login", "automation_user_agent"),
    ),
]


@pytest.mark.parametrize(("night", "device_id", "outcome", "agent", "names"), EVENTS)
def test_event_factors(
    night: bool, device_id: str | None, outcome: str | None, agent: str | None, names: tuple[str, ...]
) -> None:
    doc = {"device_id": device_id, "outcome": outcome}
    score, level, reasons, found = MODEL.assess(((), 0), ((), 0), night, doc, agent)
    assert tuple(reasons) == names
    assert score == min(100, sum(DEFAULT_WEIGHTS[n] for n in names))
    assert level == MODEL.level(score)
    assert found == []


def test_reasons_order_and_sum() -> None:
    place = MODEL.place_factors("public", "GB", "EU", "US", "NA")
    client = MODEL.client_factors({"platform": "ios"}, _app("2.2.0", True, False))
    score, level, reasons, _ = MODEL.assess(place, client, False, {"device_id": "d", "outcome": None}, None)
    assert reasons == ["country_mismatch", "continent_mismatch", "outdated_app"]
    assert score == 25 + 15 + 15
    assert level == "medium"


@pytest.mark.parametrize(
    ("score", "level"), [(0, "low"), (29, "low"), (30, "medium"), (59, "medium"), (60, "high"), (100, "high")]
)
def test_levels(score: int, level: str) -> None:
    assert MODEL.level(score) == level


def test_detections_add_risk_and_reasons_and_the_score_is_capped() -> None:
    place = MODEL.place_factors("private", None, None, None, None)  # 20
    dets = [
        Detection("brute_force", ("6 failures in 60s",), 50),
        Detection("new_device", ("first login from device d9",), 40),
    ]
    score, level, reasons, found = MODEL.assess(
        place, ((), 0), False, {"device_id": "d", "outcome": None}, None, detections=dets
    )
    assert score == 100
    assert level == "high"
    assert reasons == ["ip_not_public", "brute_force", "new_device"]
    assert found == [
        {"detector": "brute_force", "evidence": ["6 failures in 60s"], "risk": 50},
        {"detector": "new_device", "evidence": ["first login from device d9"], "risk": 40},
    ]


def test_weights_come_from_config_and_zero_mutes_a_factor() -> None:
    model = RiskModel({"ip_not_public": 0, "failed_login": 70}, medium=20, high=50)
    place = model.place_factors("private", None, None, None, None)
    assert place == ((), 0)
    score, level, reasons, _ = model.assess(
        place, ((), 0), True, {"device_id": "d", "outcome": "failure"}, None
    )
    assert reasons == ["night_login", "failed_login"]
    assert score == 80
    assert level == "high"
    assert (
        RiskModel({"night_login": 0}).assess(
            ((), 0), ((), 0), True, {"device_id": "d", "outcome": None}, None
        )[2]
        == []
    )


def test_every_factor_has_a_weight_and_a_description() -> None:
    assert set(FACTORS) == set(DEFAULT_WEIGHTS)
    assert all(0 <= w <= 100 and text for w, text in FACTORS.values())


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("", {}),
        ("failed_login=30", {"failed_login": 30}),
        (" night_login = 0 , outdated_app=100 ", {"night_login": 0, "outdated_app": 100}),
    ],
)
def test_parse_weights(text: str, parsed: dict[str, int]) -> None:
    assert parse_weights(text) == parsed


@pytest.mark.parametrize(
    "text", ["nope=3", "failed_login", "failed_login=x", "failed_login=101", "failed_login=-1"]
)
def test_parse_weights_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=text.split("=", maxsplit=1)[0]):
        parse_weights(text)


def test_bad_weights_fail_at_start_up_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_WEIGHTS", "failed_login=300")
    with pytest.raises(ConfigError, match="RISK_WEIGHTS"):
        load_settings(ConsumerSettings)
    monkeypatch.setenv("RISK_WEIGHTS", "failed_login=35,night_login=0")
    settings = load_settings(ConsumerSettings)
    assert settings.weights()["failed_login"] == 35
    assert settings.weights()["night_login"] == 0
    assert settings.weights()["outdated_app"] == DEFAULT_WEIGHTS["outdated_app"]


def test_thresholds_must_be_ordered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_MEDIUM_THRESHOLD", "70")
    monkeypatch.setenv("RISK_HIGH_THRESHOLD", "60")
    with pytest.raises(ConfigError, match="RISK_MEDIUM_THRESHOLD"):
        load_settings(ConsumerSettings)


@pytest.mark.parametrize(
    ("agent", "bot"),
    [
        ("curl/7.88.1", True),
        ("Wget/1.21", True),
        ("okhttp/4.12", True),
        ("Mozilla/5.0 (Windows NT 10.0)", False),
    ],
)
def test_automation_user_agents(agent: str, bot: bool) -> None:
    assert is_automation(agent) is bot
