"""Enrichment, table by table: locale, IP class and geography, time, platform, app version, document."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import jsonschema
import orjson
import pytest
from packaging.version import Version

from login_common.contract import processed_schema
from login_consumer.addresses import CLASSES, classify, parse_ip
from login_consumer.enrich import (
    CountryTable,
    Enricher,
    countries,
    country_timezones,
    event_id_of,
    geoip,
    read_app_version,
    read_device,
    read_locale,
    time_features,
    us_states,
)
from login_consumer.validate import Invalid, Validator

NOW = 1_700_000_000  # 2023-11-14T22:13:20Z, a Tuesday


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    return Enricher(min_app_version="2.3.0", cache_size=1000, consumer_version="9.9.9")


def _enrich(enricher: Enricher, **fields: Any) -> dict[str, Any]:
    event = {"user_id": "u1", "ip": "8.8.8.8", "timestamp": NOW, **fields}
    raw = orjson.dumps({k: v for k, v in event.items() if v is not ...})
    validator = Validator()
    result = validator.check(raw, *validator.window(NOW))
    assert not isinstance(result, Invalid), result
    doc, _place, _moment, _client = enricher.enrich(result[0], result[1], raw, "2023-11-14T22:13:21.000Z")
    return doc


# --------------------------------------------------------------------------- locale

LOCALES = [
    # raw, kind, country, subdivision, census region, timezone
    ("RI", "us_state", "US", "US-RI", "Northeast", "America/New_York"),
    ("MD", "us_state", "US", "US-MD", "South", "America/New_York"),
    ("TX", "us_state", "US", "US-TX", "South", "America/Chicago"),
    ("md", "us_state", "US", "US-MD", "South", "America/New_York"),
    (" ri ", "us_state", "US", "US-RI", "Northeast", "America/New_York"),
    ("IL", "us_state", "US", "US-IL", "Midwest", "America/Chicago"),
    ("WA", "us_state", "US", "US-WA", "West", "America/Los_Angeles"),
    ("AZ", "us_state", "US", "US-AZ", "West", "America/Phoenix"),
    ("DC", "us_state", "US", "US-DC", "South", "America/New_York"),
    ("CA", "us_state", "US", "US-CA", "West", "America/Los_Angeles"),  # California, not Canada
    ("DE", "us_state", "US", "US-DE", "South", "America/New_York"),  # Delaware, not Germany
    ("IN", "us_state", "US", "US-IN", "Midwest", "America/Indiana/Indianapolis"),  # Indiana, not India
    ("US", "country", "US", None, None, None),  # several timezones: none derived
    ("FR", "country", "FR", None, None, "Europe/Paris"),
    ("fr", "country", "FR", None, None, "Europe/Paris"),
    ("JP", "country", "JP", None, None, "Asia/Tokyo"),
    ("PR", "country", "PR", None, None, "America/Puerto_Rico"),  # a US outlying area: its own code
    ("en_GB", "country", "GB", None, None, "Europe/London"),
    ("de-AT", "country", "AT", None, None, "Europe/Vienna"),
    ("pt_BR.UTF-8", "country", "BR", None, None, None),
    ("en_CA", "country", "CA", None, None, None),  # a region after a language is a country
    ("XX", "unknown", None, None, None, None),
    ("", "unknown", None, None, None, None),
    ("Rhode Island", "unknown", None, None, None, None),
    ("12", "unknown", None, None, None, None),
]


@pytest.mark.parametrize(("raw", "kind", "country", "subdivision", "region", "tz"), LOCALES)
def test_locale(  # noqa: PLR0917 - one argument per table column
    raw: str, kind: str, country: str | None, subdivision: str | None, region: str | None, tz: str | None
) -> None:
    info = read_locale(raw)
    assert info.doc["code"] == raw
    assert info.doc["kind"] == kind
    assert info.doc["country_code"] == country
    assert info.doc["subdivision_code"] == subdivision
    assert info.doc["census_region"] == region
    assert info.timezone == tz


def test_state_names_come_from_pycountry() -> None:
    states = us_states()
    assert len(states) == 51  # 50 states and DC
    assert states["RI"][0] == "Rhode Island"
    assert read_locale("TX").doc["subdivision_name"] == "Texas"
    regions = {region for _, region, _ in states.values()}
    assert regions == {"Northeast", "Midwest", "South", "West"}


def test_country_reference_data() -> None:
    table = countries()
    assert table["US"].name == "United States"
    assert table["KR"].name == "South Korea"  # pycountry's common name
    assert table["FR"].continent_code == "EU"
    assert table["FR"].continent_name == "Europe"
    assert (table["BR"].continent_code, table["AU"].continent_code) == ("SA", "OC")
    zones = country_timezones()
    assert zones["DE"] == "Europe/Berlin"  # Busingen keeps Berlin's time
    assert not {"US", "RU", "AU"} & set(zones)


# --------------------------------------------------------------------------- IP class and geography

IP_CLASSES = [
    ("8.8.8.8", 4, "public"),
    ("199.172.111.135", 4, "public"),
    ("10.1.2.3", 4, "private"),
    ("172.16.0.1", 4, "private"),
    ("172.31.255.255", 4, "private"),
    ("172.32.0.1", 4, "public"),
    ("192.168.1.1", 4, "private"),
    ("100.64.0.1", 4, "shared"),
    ("127.0.0.1", 4, "loopback"),
    ("169.254.10.10", 4, "link_local"),
    ("224.0.0.1", 4, "multicast"),
    ("239.255.255.250", 4, "multicast"),
    ("240.0.0.1", 4, "reserved"),
    ("255.255.255.255", 4, "reserved"),
    ("0.0.0.0", 4, "unspecified"),
    ("0.1.2.3", 4, "reserved"),
    ("192.0.2.1", 4, "reserved"),
    ("198.18.0.5", 4, "reserved"),
    ("203.0.113.9", 4, "reserved"),
    ("::", 6, "unspecified"),
    ("::1", 6, "loopback"),
    ("fe80::1", 6, "link_local"),
    ("fd00::1", 6, "private"),
    ("ff02::1", 6, "multicast"),
    ("2001:db8::1", 6, "reserved"),
    ("2001:4860:4860::8888", 6, "public"),
    ("::ffff:10.0.0.1", 6, "private"),
    ("::ffff:8.8.8.8", 6, "public"),
]


@pytest.mark.parametrize(("ip", "version", "kind"), IP_CLASSES)
def test_ip_class(enricher: Enricher, ip: str, version: int, kind: str) -> None:
    parsed = parse_ip(ip)
    assert parsed is not None
    assert classify(*parsed)[0] == kind
    info = enricher.read_ip(ip)
    assert (info.version, info.ip_class) == (version, kind)
    assert kind in CLASSES
    if kind != "public":
        assert info.geo is None


@pytest.mark.parametrize("ip", ["256.0.0.1", "01.2.3.4", "1.2.3", "", "a.b.c.d", "1.2.3.4\x00", "::g"])
def test_parse_ip_rejects(ip: str) -> None:
    assert parse_ip(ip) is None


GEO = [
    ("8.8.8.8", "US", "United States", "NA", "North America"),
    ("81.2.69.142", "GB", "United Kingdom", "EU", "Europe"),
    ("1.1.1.1", "AU", "Australia", "OC", "Oceania"),
    ("200.1.2.3", "VE", "Venezuela", "SA", "South America"),
    ("2001:4860:4860::8888", "US", "United States", "NA", "North America"),
    ("::ffff:81.2.69.142", "GB", "United Kingdom", "EU", "Europe"),
]


@pytest.mark.parametrize(("ip", "code", "name", "continent", "continent_name"), GEO)
def test_geography(  # noqa: PLR0917 - one argument per table column
    enricher: Enricher, ip: str, code: str, name: str, continent: str, continent_name: str
) -> None:
    geo = enricher.read_ip(ip).geo
    assert geo == {
        "country_code": code,
        "country_name": name,
        "continent_code": continent,
        "continent_name": continent_name,
    }


# --------------------------------------------------------------------------- time

TIMES = [
    # ts, tz, event_time, hour, weekday, weekend, segment, local time, local hour, local segment
    (NOW, None, "2023-11-14T22:13:20Z", 22, 1, False, "evening", None, None, None),
    (
        NOW,
        "America/New_York",
        "2023-11-14T22:13:20Z",
        22,
        1,
        False,
        "evening",
        "2023-11-14T17:13:20-05:00",
        17,
        "afternoon",
    ),
    (  # summer time
        1_689_400_800,
        "America/New_York",
        "2023-07-15T06:00:00Z",
        6,
        5,
        True,
        "morning",
        "2023-07-15T02:00:00-04:00",
        2,
        "night",
    ),
    (  # the local date is already the next day
        NOW,
        "Asia/Tokyo",
        "2023-11-14T22:13:20Z",
        22,
        1,
        False,
        "evening",
        "2023-11-15T07:13:20+09:00",
        7,
        "morning",
    ),
    (1_700_352_000, None, "2023-11-19T00:00:00Z", 0, 6, True, "night", None, None, None),  # a Sunday
    (0, None, "1970-01-01T00:00:00Z", 0, 3, False, "night", None, None, None),
]


@pytest.mark.parametrize(
    ("ts", "tz", "event_time", "hour", "weekday", "weekend", "segment", "local", "local_hour", "local_seg"),
    TIMES,
)
def test_time_features(  # noqa: PLR0917 - one argument per table column
    ts: int,
    tz: str | None,
    event_time: str,
    hour: int,
    weekday: int,
    weekend: bool,
    segment: str,
    local: str | None,
    local_hour: int | None,
    local_seg: str | None,
) -> None:
    info = time_features(ts, tz, "locale" if tz else None)
    assert info.event_time == event_time
    doc = info.doc
    assert (doc["hour"], doc["weekday"], doc["weekend"], doc["day_segment"]) == (
        hour,
        weekday,
        weekend,
        segment,
    )
    assert info.key == (weekday, hour)
    if local is None:
        assert doc["local"] is None
        assert info.night is False
    else:
        assert doc["local"]["time"] == local
        assert doc["local"]["timezone"] == tz
        assert doc["local"]["hour"] == local_hour
        assert doc["local"]["day_segment"] == local_seg
        assert info.night == (local_hour is not None and local_hour < 6)


LOCAL_SOURCES = [
    # ip, locale, timezone, source
    ("81.2.69.142", "RI", "Europe/London", "ip"),  # the IP's country has one zone: where the user is
    ("8.8.8.8", "RI", "America/New_York", "locale"),  # IP in the US (many zones): the state's zone
    ("10.0.0.1", "TX", "America/Chicago", "locale"),  # no geography for a private IP: the locale's
    ("200.1.2.3", "RI", "America/Caracas", "ip"),
    ("2001:4860:4860::8888", "FR", None, None),  # US IP, French locale: no zone can be trusted
    ("10.0.0.1", None, None, None),
    ("10.0.0.1", "US", None, None),
]


@pytest.mark.parametrize(("ip", "locale", "tz", "source"), LOCAL_SOURCES)
def test_local_timezone_source(
    enricher: Enricher, ip: str, locale: str | None, tz: str | None, source: str | None
) -> None:
    doc = _enrich(enricher, ip=ip, locale=locale if locale is not None else ...)
    local = doc["time"]["local"]
    if tz is None:
        assert local is None
    else:
        assert (local["timezone"], local["source"]) == (tz, source)


# --------------------------------------------------------------------------- platform and app version

DEVICES = [
    ("android", "android", "mobile"),
    ("Android", "android", "mobile"),
    ("iOS", "ios", "mobile"),
    ("IOS", "ios", "mobile"),
    ("ios", "ios", "mobile"),
    ("iPhone", "ios", "mobile"),
    ("web", "web", "web"),
    ("Web", "web", "web"),
    ("Windows", "windows", "desktop"),
    ("macOS", "macos", "desktop"),
    ("linux", "linux", "desktop"),
    ("toaster", "other", "other"),
    (None, "unknown", "unknown"),
    ("", "unknown", "unknown"),
    ("  ", "unknown", "unknown"),
]


@pytest.mark.parametrize(("device_type", "platform", "family"), DEVICES)
def test_platform(device_type: str | None, platform: str, family: str) -> None:
    assert read_device(device_type) == {"type": device_type, "platform": platform, "family": family}


VERSIONS = [
    # raw, parsed, major.minor, valid, supported (minimum 2.3.0)
    ("2.3.0", "2.3.0", "2.3", True, True),
    ("2.4.1", "2.4.1", "2.4", True, True),
    ("2.2.9", "2.2.9", "2.2", True, False),
    ("10.0", "10.0", "10.0", True, True),
    ("2", "2", "2.0", True, False),
    ("v2.3.1", "2.3.1", "2.3", True, True),
    ("2.3.0rc1", "2.3.0rc1", "2.3", True, False),  # a pre-release comes before the release
    (" 3.0.0 ", "3.0.0", "3.0", True, True),
    ("banana", None, None, False, None),
    ("2.3.x", None, None, False, None),
    (None, None, None, False, None),
]


@pytest.mark.parametrize(("raw", "parsed", "major_minor", "valid", "supported"), VERSIONS)
def test_app_version(
    raw: str | None, parsed: str | None, major_minor: str | None, valid: bool, supported: bool | None
) -> None:
    assert read_app_version(raw, Version("2.3.0")) == {
        "version": raw,
        "parsed": parsed,
        "major_minor": major_minor,
        "valid": valid,
        "supported": supported,
    }


# --------------------------------------------------------------------------- the document


def test_document_of_a_generator_event(enricher: Enricher) -> None:
    doc = _enrich(
        enricher,
        user_id="424cdd21",
        app_version="2.3.0",
        ip="199.172.111.135",
        locale="RI",
        device_id="593-47-5928",
        timestamp=str(NOW),
        device_type="iOS",
    )
    assert len(doc["event_id"]) == 32  # no event_id in the input: a digest of its bytes
    assert set(doc["event_id"]) <= set("0123456789abcdef")
    assert doc["timestamp"] == NOW
    assert doc["locale"]["census_region"] == "Northeast"
    assert doc["device"] == {"type": "iOS", "platform": "ios", "family": "mobile"}
    assert doc["consumer_version"] == "9.9.9"
    assert doc["schema_version"] == 1


def test_event_id_of() -> None:
    import hashlib

    assert event_id_of(b"x") == hashlib.blake2b(b"x", digest_size=16).hexdigest()


def test_event_id_is_the_inputs_or_a_stable_hash(enricher: Enricher) -> None:
    assert _enrich(enricher, event_id="abc")["event_id"] == "abc"
    first = _enrich(enricher, device_id="d1")["event_id"]
    assert first == _enrich(enricher, device_id="d1")["event_id"]
    assert first != _enrich(enricher, device_id="d2")["event_id"]


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"locale": "RI", "device_type": "android", "app_version": "2.2.0", "device_id": "x"},
        {"ip": "10.0.0.1", "locale": "zz", "outcome": "failure", "auth_method": "sso"},
        {"ip": "2001:db8::1", "app_version": "nope", "device_type": "fridge"},
        {"ip": "81.2.69.142", "locale": "en_GB", "user_agent": "curl/8"},
    ],
)
def test_document_matches_the_output_schema(enricher: Enricher, fields: dict[str, Any]) -> None:
    doc = _enrich(enricher, **fields)
    doc.update(risk_score=10, risk_level="low", reasons=["x"], detections=[])
    jsonschema.Draft202012Validator(processed_schema()).validate(orjson.loads(orjson.dumps(doc)))


def test_caches_are_bounded() -> None:
    small = Enricher(cache_size=50)
    validator = Validator()
    for n in range(300):
        raw = orjson.dumps({"user_id": "u", "ip": f"8.8.{n // 250}.{n % 250}", "timestamp": NOW + n})
        result = validator.check(raw, *validator.window(NOW))
        assert not isinstance(result, Invalid)
        small.enrich(result[0], result[1], raw, "t")
    assert all(size <= 50 for size in small.cache_sizes().values())


def test_country_table_agrees_with_geoip2fast_lookup() -> None:
    """The integer search on the reader's tables gives what ``GeoIP2Fast.lookup`` gives."""
    reader = geoip()
    table = CountryTable(reader)
    assert table.direct
    rng = random.Random(5)
    addresses = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(20_000)]
    addresses += [str(ipaddress.IPv6Address((0x2000 << 112) | rng.getrandbits(116))) for _ in range(2_000)]
    addresses += ["8.8.8.8", "0.0.0.0", "255.255.255.255", "10.1.2.3", "2001:4860:4860::8888"]
    known = 0
    for text in addresses:
        found = reader.lookup(text)
        code = found.country_code
        expected = None
        if not found.is_private and isinstance(code, str) and len(code) == 2 and code.isalpha():
            expected = (code, found.country_name)
            known += 1
        assert table.country(int(ipaddress.ip_address(text)), text) == expected, text
    assert known > 10_000  # most of the IPv4 space is somewhere


def test_ips_of_one_kind_share_their_facts(enricher: Enricher) -> None:
    """One IpInfo per (version, class, country): places are cached per kind of IP, not per address."""
    assert enricher.read_ip("8.8.8.8") is enricher.read_ip("8.8.4.4")
    assert enricher.read_ip("10.0.0.1") is enricher.read_ip("192.168.7.7")
    assert enricher.read_ip("8.8.8.8") is not enricher.read_ip("81.2.69.142")
