"""Validation of raw input bytes: every quirk of the generator accepted, every kind of junk named."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from login_common.contract import field_types, required_fields, schema
from login_consumer.validate import ERROR_TYPES, Invalid, Validator, event_struct, parse

NOW = 1_700_000_000
VALIDATOR = Validator(max_bytes=4096)
LOW, HIGH = VALIDATOR.window(NOW)


def _event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae",
        "app_version": "2.3.0",
        "ip": "199.172.111.135",
        "locale": "RI",
        "device_id": "593-47-5928",
        "timestamp": NOW - 10,
        "device_type": "android",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def _bytes(**fields: Any) -> bytes:
    return orjson.dumps(_event(**fields))


VALID: list[tuple[str, bytes, int]] = [
    ("generator's seven fields", _bytes(), NOW - 10),
    ("device_type missing (the ~5% quirk)", _bytes(device_type=...), NOW - 10),
    ("timestamp as a numeric string", _bytes(timestamp=str(NOW - 10)), NOW - 10),
    ("timestamp string with spaces", _bytes(timestamp=f" {NOW - 10} "), NOW - 10),
    ("timestamp string with a fraction", _bytes(timestamp=f"{NOW - 10}.75"), NOW - 10),
    ("device_type iOS (mixed case)", _bytes(device_type="iOS"), NOW - 10),
    ("device_type Android", _bytes(device_type="Android"), NOW - 10),
    ("reserved IP (the whole IPv4 range occurs)", _bytes(ip="240.1.2.3"), NOW - 10),
    ("private IP", _bytes(ip="10.0.0.1"), NOW - 10),
    ("IPv6", _bytes(ip="2001:db8::1"), NOW - 10),
    ("IPv4-mapped IPv6", _bytes(ip="::ffff:8.8.8.8"), NOW - 10),
    ("only the required fields", orjson.dumps({"user_id": "u", "ip": "1.2.3.4", "timestamp": NOW}), NOW),
    (
        "our producer's extra fields",
        _bytes(event_id="e-1", outcome="failure", auth_method="sso", user_agent="Mozilla/5.0"),
        NOW - 10,
    ),
    ("a null optional field counts as absent", _bytes(device_type=None, locale=None), NOW - 10),
    ("unknown fields are ignored", _bytes(extra={"nested": [1, {"x": None}]}, other=3.5), NOW - 10),
    ("30 days old is still valid", _bytes(timestamp=NOW - 30 * 86_400), NOW - 30 * 86_400),
    ("5 minutes ahead is still valid", _bytes(timestamp=NOW + 300), NOW + 300),
    ("whitespace around the JSON", b"  \n" + _bytes() + b"\n ", NOW - 10),
    (
        "deep nesting in an unknown field (past the fast decoder's limit)",
        orjson.dumps(_event())[:-1] + b',"junk":' + b"[" * 900 + b"]" * 900 + b"}",
        NOW - 10,
    ),
    ("unicode user id", _bytes(user_id="użytkownik-ß-👤"), NOW - 10),
]


@pytest.mark.parametrize(("raw", "ts"), [pytest.param(raw, ts, id=name) for name, raw, ts in VALID])
def test_accepts(raw: bytes, ts: int) -> None:
    result = VALIDATOR.check(raw, LOW, HIGH)
    assert not isinstance(result, Invalid), result
    event, got_ts = result
    assert got_ts == ts
    assert isinstance(event.user_id, str)


INVALID: list[tuple[str, bytes | None, str]] = [
    ("null value (tombstone)", None, "empty"),
    ("empty bytes", b"", "empty"),
    ("too large", _bytes(user_agent="x" * 1000, junk="y" * 4000), "too_large"),
    ("not UTF-8", b"\xff\xfe\x00garbage", "not_utf8"),
    ("latin-1 in a string", b'{"user_id": "caf\xe9", "ip": "1.2.3.4", "timestamp": 1}', "not_utf8"),
    ("not JSON", b"user_id=u&ip=1.2.3.4", "not_json"),
    ("truncated JSON", _bytes()[:-5], "not_json"),
    ("trailing garbage", _bytes() + b"}", "not_json"),
    ("NaN is not JSON", b'{"user_id": "u", "ip": "1.2.3.4", "timestamp": NaN}', "not_json"),
    ("lone surrogate escape", b'{"user_id": "\\ud800", "ip": "1.2.3.4", "timestamp": 1}', "not_json"),
    ("byte order mark", b"\xef\xbb\xbf" + _bytes(), "not_json"),
    ("only whitespace", b"   ", "not_json"),
    ("nesting beyond any limit", b"[" * 1500 + b"]" * 1500, "not_json"),
    ("JSON array", b"[1, 2, 3]", "not_object"),
    ("JSON string", b'"hello"', "not_object"),
    ("JSON number", b"42", "not_object"),
    ("JSON null", b"null", "not_object"),
    ("user_id missing", _bytes(user_id=...), "missing_field"),
    ("user_id null", _bytes(user_id=None), "missing_field"),
    ("ip missing", _bytes(ip=...), "missing_field"),
    ("timestamp missing", _bytes(timestamp=...), "missing_field"),
    ("user_id a number", _bytes(user_id=42), "wrong_type"),
    ("user_id an object", _bytes(user_id={"id": 1}), "wrong_type"),
    ("ip a number", _bytes(ip=3232235777), "wrong_type"),
    ("timestamp a bool", _bytes(timestamp=True), "wrong_type"),
    ("timestamp a float", _bytes(timestamp=1700000000.5), "wrong_type"),
    ("device_type a list", _bytes(device_type=["android"]), "wrong_type"),
    ("locale a number", _bytes(locale=44), "wrong_type"),
    ("app_version nested junk", _bytes(app_version={"a": [1, {"b": None}]}), "wrong_type"),
    ("user_id empty", _bytes(user_id=""), "invalid_value"),
    ("user_id blank", _bytes(user_id="   "), "invalid_value"),
    ("user_id too long", _bytes(user_id="u" * 257), "invalid_value"),
    ("outcome not in the enum", _bytes(outcome="maybe"), "invalid_value"),
    ("huge device_type", _bytes(device_type="x" * 65), "invalid_value"),
    ("ip not an address", _bytes(ip="999.1.1.1"), "invalid_ip"),
    ("ip with leading zeros", _bytes(ip="01.2.3.4"), "invalid_ip"),
    ("ip a hostname", _bytes(ip="localhost"), "invalid_ip"),
    ("ip with a port", _bytes(ip="1.2.3.4:80"), "invalid_ip"),
    ("ip bad IPv6", _bytes(ip="2001:db8:::1"), "invalid_ip"),
    ("timestamp a word", _bytes(timestamp="soon"), "invalid_timestamp"),
    ("timestamp in exponent form", _bytes(timestamp="1.7e9"), "invalid_timestamp"),
    ("timestamp with a plus sign", _bytes(timestamp="+1700000000"), "invalid_timestamp"),
    ("timestamp with underscores", _bytes(timestamp="1_700_000_000"), "invalid_timestamp"),
    ("timestamp in non-ASCII digits", _bytes(timestamp="\u0661\u0667\u0660\u0660"), "invalid_timestamp"),
    ("timestamp far in the future", _bytes(timestamp=NOW + 301), "timestamp_out_of_range"),
    ("timestamp far in the past", _bytes(timestamp=NOW - 30 * 86_400 - 1), "timestamp_out_of_range"),
    ("timestamp in milliseconds", _bytes(timestamp=(NOW - 10) * 1000), "timestamp_out_of_range"),
    ("timestamp negative", _bytes(timestamp="-5"), "timestamp_out_of_range"),
    (
        "timestamp beyond 64 bits",
        _bytes(timestamp=...)[:-1] + b',"timestamp":1' + b"0" * 30 + b"}",
        "timestamp_out_of_range",
    ),
]
# orjson reads integers beyond 64 bits as floats, so the step-by-step checker calls these wrong_type
_BIG_INT = INVALID[-1][1]


@pytest.mark.parametrize(
    ("raw", "error_type"), [pytest.param(raw, kind, id=name) for name, raw, kind in INVALID]
)
def test_rejects_with_a_named_reason(raw: bytes | None, error_type: str) -> None:
    result = VALIDATOR.check(raw, LOW, HIGH)
    assert isinstance(result, Invalid), f"accepted: {result!r}"
    assert result.error_type == error_type, result
    assert result.error_type in ERROR_TYPES
    assert result.detail


def test_the_invalid_table_covers_every_input_error_type() -> None:
    covered = {kind for _, _, kind in INVALID}
    assert covered == set(ERROR_TYPES) - {"processing_error"}
    assert len(INVALID) >= 20


@pytest.mark.parametrize("raw", [raw for _, raw, _ in INVALID if raw] + [raw for _, raw, _ in VALID])
def test_slow_path_agrees_with_fast_path(raw: bytes) -> None:
    """The step-by-step checker alone reaches the same verdict as the msgspec fast path."""
    fast = VALIDATOR.check(raw, LOW, HIGH)
    if len(raw) > VALIDATOR.max_bytes or raw == _BIG_INT:
        return
    slow = VALIDATOR._check_slowly(raw, LOW, HIGH)
    if isinstance(fast, Invalid):
        assert isinstance(slow, Invalid)
        assert slow.error_type == fast.error_type
    else:
        assert not isinstance(slow, Invalid)
        assert slow[1] == fast[1]


def test_struct_is_derived_from_the_schema() -> None:
    struct = event_struct()
    assert set(struct.__struct_fields__) == set(schema()["properties"])
    assert struct.__struct_fields__[: len(required_fields())] == required_fields()
    assert set(field_types()) == set(struct.__struct_fields__)


def test_parse_convenience() -> None:
    event = parse(_bytes(), now=NOW)
    assert isinstance(event, dict)
    assert event["device_type"] == "android"
    assert event["outcome"] is None
    assert isinstance(parse(b"nope", now=NOW), Invalid)


def test_window_follows_settings() -> None:
    strict = Validator(max_age_seconds=60, max_ahead_seconds=0)
    low, high = strict.window(NOW)
    assert (low, high) == (NOW - 60, NOW)
    result = strict.check(_bytes(timestamp=NOW - 61), low, high)
    assert isinstance(result, Invalid)
    assert result.error_type == "timestamp_out_of_range"


def test_never_raises_on_random_bytes() -> None:
    import random

    rng = random.Random(5)
    pieces = [
        b"{",
        b"}",
        b"[",
        b"]",
        b'"',
        b":",
        b",",
        b"user_id",
        b"ip",
        b"timestamp",
        b"\xff",
        b"1",
        b"null",
    ]
    for _ in range(3000):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 30)))
        VALIDATOR.check(raw, LOW, HIGH)  # must not raise
