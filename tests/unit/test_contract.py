"""The shared contract: one schema, from which the hot-path type table is derived."""

from __future__ import annotations

import jsonschema
import pytest

from login_common.contract import FETCH_FIELDS, field_types, required_fields, schema


def test_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_required_and_types_derive_from_schema() -> None:
    assert set(required_fields()) == {"user_id", "ip", "timestamp"}
    types = field_types()
    assert types["timestamp"] == (int, str)
    assert types["user_id"] == (str,)
    assert set(FETCH_FIELDS) <= set(types)


@pytest.mark.parametrize(
    ("event", "ok"),
    [
        ({"user_id": "u", "ip": "1.2.3.4", "timestamp": 1700000000}, True),
        ({"user_id": "u", "ip": "1.2.3.4", "timestamp": "1700000000"}, True),
        ({"user_id": "u", "ip": "1.2.3.4", "timestamp": "soon"}, False),
        ({"user_id": "", "ip": "1.2.3.4", "timestamp": 1}, False),
        ({"ip": "1.2.3.4", "timestamp": 1}, False),
        ({"user_id": "u", "ip": "1.2.3.4", "timestamp": 1, "outcome": "maybe"}, False),
        ({"user_id": "u", "ip": "1.2.3.4", "timestamp": 1, "extra": {"x": 1}}, True),
    ],
)
def test_schema_accepts_and_rejects(event: dict[str, object], ok: bool) -> None:
    valid = jsonschema.Draft202012Validator(schema()).is_valid(event)
    assert valid is ok
