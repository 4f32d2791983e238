"""The login event contract, defined once and shared by producer and consumer.

The JSON Schema in ``schemas/login_event.v1.json`` is the source of truth. This module loads it and
derives from it what the hot path needs (required fields, the JSON types each field accepts), so the
producer and the consumer can never disagree on it. Header names used on every topic live here too.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Final, NotRequired, TypedDict

SCHEMA_VERSION: Final = 1
SCHEMA_RESOURCE: Final = f"schemas/login_event.v{SCHEMA_VERSION}.json"

# Kafka header names (bytes values are UTF-8).
HEADER_SCHEMA_VERSION: Final = "schema-version"
HEADER_CORRELATION_ID: Final = "correlation-id"
HEADER_CONTENT_TYPE: Final = "content-type"
# Ground truth written by the simulator; the consumer never reads these.
HEADER_SCENARIO: Final = "x-sim-scenario"
HEADER_ATTACK_ID: Final = "x-sim-attack-id"
# Comma-separated names of the detectors the simulation intends the event to trigger ("" = none).
HEADER_TRUTH: Final = "x-sim-truth"
# ISO country the simulation intends the event's IP to geolocate to.
HEADER_COUNTRY: Final = "x-sim-country"
# Dead-letter headers.
HEADER_DLQ_ERROR_TYPE: Final = "dlq-error-type"
HEADER_DLQ_ERROR_DETAIL: Final = "dlq-error-detail"
HEADER_DLQ_SOURCE_TOPIC: Final = "dlq-source-topic"
HEADER_DLQ_SOURCE_PARTITION: Final = "dlq-source-partition"
HEADER_DLQ_SOURCE_OFFSET: Final = "dlq-source-offset"
HEADER_DLQ_CONSUMER_VERSION: Final = "dlq-consumer-version"
HEADER_DLQ_TIME: Final = "dlq-time"
# Set by ``login-consumer replay-dlq`` on a re-fed message: "<dlq topic>:<partition>:<offset>".
HEADER_DLQ_REPLAYED_FROM: Final = "dlq-replayed-from"

# Names of the stateful detectors; x-sim-truth lists a subset of these (rules: docs/producer.md).
DETECTORS: Final = (
    "brute_force",
    "credential_stuffing",
    "impossible_travel",
    "new_device",
    "new_country",
)

# The seven fields of the common login data generator, in its order.
FETCH_FIELDS: Final = (
    "user_id",
    "app_version",
    "ip",
    "locale",
    "device_id",
    "timestamp",
    "device_type",
)


class LoginEvent(TypedDict):
    """A login event as it travels on ``user-login`` (schema version 1)."""

    user_id: str
    ip: str
    timestamp: int | str
    app_version: NotRequired[str]
    locale: NotRequired[str]
    device_id: NotRequired[str]
    device_type: NotRequired[str]
    event_id: NotRequired[str]
    outcome: NotRequired[str]
    auth_method: NotRequired[str]
    user_agent: NotRequired[str]


_JSON_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


@cache
def schema() -> dict[str, Any]:
    """The login event JSON Schema (a fresh parse is cached; do not mutate it)."""
    text = resources.files("login_common").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def required_fields() -> tuple[str, ...]:
    return tuple(schema()["required"])


def field_types() -> dict[str, tuple[type, ...]]:
    """Python types each known field accepts, derived from the schema's ``type``/``oneOf``."""
    out: dict[str, tuple[type, ...]] = {}
    for name, spec in schema()["properties"].items():
        variants = spec.get("oneOf", [spec])
        types: list[type] = []
        for variant in variants:
            types.extend(_JSON_TYPES[variant["type"]])
        out[name] = tuple(dict.fromkeys(types))
    return out


def field_limits() -> dict[str, tuple[int, int]]:
    """(minLength, maxLength) of each string field; the largest bound among ``oneOf`` variants."""
    out: dict[str, tuple[int, int]] = {}
    for name, spec in schema()["properties"].items():
        variants = [v for v in spec.get("oneOf", [spec]) if v["type"] == "string"]
        if variants:
            out[name] = (
                min(v.get("minLength", 0) for v in variants),
                max(v.get("maxLength", 1 << 20) for v in variants),
            )
    return out


def field_enums() -> dict[str, frozenset[str]]:
    return {name: frozenset(spec["enum"]) for name, spec in schema()["properties"].items() if "enum" in spec}


# The output of login-consumer on ``processed-logins`` (its ``schema-version`` header carries this number).
PROCESSED_SCHEMA_VERSION: Final = 1
PROCESSED_SCHEMA_RESOURCE: Final = f"schemas/processed_login.v{PROCESSED_SCHEMA_VERSION}.json"


@cache
def processed_schema() -> dict[str, Any]:
    """The processed-login JSON Schema (cached; do not mutate it)."""
    text = resources.files("login_common").joinpath(PROCESSED_SCHEMA_RESOURCE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded
