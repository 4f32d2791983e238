"""Validation of raw login event bytes against the shared contract (``login_event.v1.json``).

``Validator.check`` is the hot path: it never raises for any input and returns either the decoded event
with its timestamp as epoch seconds, or an ``Invalid`` naming one of ``ERROR_TYPES`` (the DLQ reason).
Types, string lengths, enums and the timestamp pattern come from the schema; the timestamp window and
the size limit come from the settings. A ``null`` optional field counts as absent.

Two decoders derive from the one schema: a msgspec ``Struct`` built from it decodes and type-checks a
valid event in C (the fast path); whatever it rejects goes through a step-by-step check on orjson's
parse, which names the error precisely (and has the last word: the fast path only accelerates).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, Protocol, Union

import msgspec
import orjson
from packaging.version import InvalidVersion, Version
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from login_common.contract import field_enums, field_limits, field_types, required_fields, schema
from login_consumer.addresses import parse_ip


class InputSettings(BaseSettings):
    """What an input event must be, else it is dead-lettered (``validate.py``)."""

    max_event_bytes: int = Field(
        65_536, ge=256, le=10_485_760, description="Larger input messages are dead-lettered (too_large)."
    )

    timestamp_max_age_seconds: int = Field(
        30 * 86_400, ge=0, description="Events older than this (by their timestamp) are invalid."
    )

    timestamp_max_ahead_seconds: int = Field(
        300, ge=0, description="Events further in the future than this are invalid."
    )

    min_app_version: str = Field(
        "2.3.0", min_length=1, description="Oldest supported app version (PEP 440, e.g. 2.3.0)."
    )

    @field_validator("min_app_version")
    @classmethod
    def _version(cls, value: str) -> str:
        try:
            Version(value)
        except InvalidVersion:
            raise ValueError(f"{value!r} is not a PEP 440 version") from None
        return value


# Every reason an input can be dead-lettered for (the ``reason`` label of login_consumer_events_dlq_total).
ERROR_TYPES: Final = (
    "empty",
    "too_large",
    "not_utf8",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "invalid_ip",
    "invalid_timestamp",
    "timestamp_out_of_range",
    "processing_error",
)

_JSON_NAMES: Final = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dict: "object",
    list: "array",
    type(None): "null",
}


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an input cannot be processed: a short machine-readable type and a human detail (``trace``: the
    trace context its dead letter carries instead of the input's, when a stage traced it: tracing.py)."""

    error_type: str
    detail: str
    trace: tuple[tuple[str, str | bytes | None], ...] = ()


def _field_specs() -> tuple[tuple[str, frozenset[type], int, int, frozenset[str] | None], ...]:
    """(name, exact JSON types, min length, max length, enum) per field, derived from the schema."""
    limits = field_limits()
    enums = field_enums()
    specs = []
    for name, types in field_types().items():
        low, high = limits.get(name, (0, 1 << 30))
        # JSON decoding yields exact types, so a set look-up rejects bool where integer is expected.
        specs.append((name, frozenset(types), low, high, enums.get(name)))
    return tuple(specs)


def _timestamp_pattern() -> re.Pattern[str]:
    for variant in schema()["properties"]["timestamp"].get("oneOf", []):
        if variant.get("type") == "string" and "pattern" in variant:
            return re.compile(variant["pattern"])
    return re.compile(r"^\s*-?[0-9]+(\.[0-9]+)?\s*$")


_REQUIRED: Final = required_fields()
_SPECS: Final = _field_specs()
_TS_PATTERN: Final = _timestamp_pattern()


class Event(Protocol):
    """A decoded login event (the msgspec Struct derived from the schema); absent fields are None."""

    user_id: str
    ip: str
    timestamp: int | str
    app_version: str | None
    locale: str | None
    device_id: str | None
    device_type: str | None
    event_id: str | None
    outcome: str | None
    auth_method: str | None
    user_agent: str | None


_MSGSPEC_TYPES: Final = {"integer": int, "number": float, "boolean": bool}


def _msgspec_type(spec: dict[str, Any]) -> Any:
    """The msgspec type of one JSON Schema property (the subset the contract uses)."""
    if "enum" in spec:
        return Literal[tuple(spec["enum"])]
    if "oneOf" in spec:
        return Union[tuple(_msgspec_type(v) for v in spec["oneOf"])]  # noqa: UP007 - built at run time
    if spec["type"] == "string":
        meta = {
            key: spec[json_key]
            for key, json_key in (
                ("min_length", "minLength"),
                ("max_length", "maxLength"),
                ("pattern", "pattern"),
            )
            if json_key in spec
        }
        return Annotated[str, msgspec.Meta(**meta)] if meta else str
    return _MSGSPEC_TYPES[spec["type"]]


def event_struct() -> type[msgspec.Struct]:
    """A msgspec Struct type equivalent to the schema: required fields first, the others default to None."""
    properties = schema()["properties"]
    required = [(name, _msgspec_type(properties[name])) for name in _REQUIRED]
    optional = [
        (name, _msgspec_type(spec) | None, None) for name, spec in properties.items() if name not in _REQUIRED
    ]
    return msgspec.defstruct("LoginEvent", [*required, *optional])


_EVENT: Final[Any] = event_struct()
_EVENT_FIELDS: Final[tuple[str, ...]] = _EVENT.__struct_fields__
_DECODER: Final[msgspec.json.Decoder[Any]] = msgspec.json.Decoder(_EVENT)
_FAST_FAILURES: Final = (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError)


def _type_names(types: frozenset[type]) -> str:
    return " or ".join(sorted(_JSON_NAMES.get(t, t.__name__) for t in types))


def _short(value: object, limit: int = 64) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Validator:
    """Decode and validate raw message values. One instance per consumer; not thread-safe."""

    def __init__(
        self,
        *,
        max_bytes: int = 65_536,
        max_age_seconds: int = 30 * 86_400,
        max_ahead_seconds: int = 300,
        ip_cache_size: int = 100_000,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self.max_ahead_seconds = max_ahead_seconds
        self._ip_cache_size = ip_cache_size
        self._ips: dict[str, bool] = {}

    def window(self, now: float) -> tuple[int, int]:
        """The accepted timestamp range (inclusive) for a batch processed at ``now``."""
        return int(now) - self.max_age_seconds, int(now) + self.max_ahead_seconds

    def _ip_ok(self, ip: str) -> bool:
        ok = self._ips.get(ip)
        if ok is None:
            ok = parse_ip(ip) is not None
            if len(self._ips) >= self._ip_cache_size:
                self._ips.clear()
            if self._ip_cache_size:
                self._ips[ip] = ok
        return ok

    def check(self, raw: bytes | None, low: int, high: int) -> tuple[Event, int] | Invalid:
        """The event and its epoch-second timestamp, or why it is invalid (``low``/``high``: ``window``)."""
        if not raw:
            return Invalid("empty", "message value is empty" if raw is not None else "message value is null")
        if len(raw) > self.max_bytes:
            return Invalid("too_large", f"message is {len(raw)} bytes; the limit is {self.max_bytes}")
        try:
            event: Event = _DECODER.decode(raw)
        except _FAST_FAILURES:
            return self._check_slowly(raw, low, high)
        # the common cases of _check_values, inlined: an int or a string of ASCII digits
        stamp = event.timestamp
        if type(stamp) is str and stamp.isdigit() and stamp.isascii():
            stamp = int(stamp)
        if type(stamp) is int and low <= stamp <= high and event.user_id.strip():
            ip = event.ip
            ok = self._ips.get(ip)
            if ok is None:
                ok = self._ip_ok(ip)
            if ok:
                return event, stamp
        return self._check_values(event, low, high)

    def _check_values(self, event: Event, low: int, high: int) -> tuple[Event, int] | Invalid:
        """What the types cannot say: a blank user_id, the IP's syntax, the timestamp's window."""
        if not event.user_id.strip():
            return Invalid("invalid_value", "field 'user_id' is blank")
        ip = event.ip
        if not self._ip_ok(ip):
            return Invalid("invalid_ip", f"ip {_short(ip)} is not an IPv4 or IPv6 address")
        stamp = event.timestamp
        if type(stamp) is int:
            ts: int = stamp
        else:
            text = str(stamp).strip()
            if not _TS_PATTERN.fullmatch(text):
                return Invalid("invalid_timestamp", f"timestamp {_short(stamp)} is not a number of seconds")
            ts = int(float(text)) if "." in text else int(text)
        if ts < low or ts > high:
            return Invalid(
                "timestamp_out_of_range",
                f"timestamp {ts} is outside {low}..{high} "
                f"(at most {self.max_age_seconds}s old, {self.max_ahead_seconds}s ahead)",
            )
        return event, ts

    def _check_slowly(self, raw: bytes, low: int, high: int) -> tuple[Event, int] | Invalid:
        """Field by field on a generic parse, to name what is wrong."""
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return self._undecodable(raw, exc)
        if type(parsed) is not dict:
            return Invalid("not_object", f"JSON value is {_JSON_NAMES.get(type(parsed), '?')}, not an object")
        for name in _REQUIRED:
            if parsed.get(name) is None:
                return Invalid("missing_field", f"required field {name!r} is missing or null")
        for name, types, low_len, high_len, enum in _SPECS:
            value = parsed.get(name)
            if value is None:
                continue
            kind = type(value)
            if kind not in types:
                got = _JSON_NAMES.get(kind, kind.__name__)
                return Invalid("wrong_type", f"field {name!r} is {got}; expected {_type_names(types)}")
            if kind is str:
                size = len(value)
                if size > high_len or size < low_len:
                    return Invalid(
                        "invalid_value",
                        f"field {name!r} has length {size}; allowed {low_len}..{high_len}",
                    )
                if enum is not None and value not in enum:
                    return Invalid(
                        "invalid_value",
                        f"field {name!r} is {_short(value)}; expected one of {', '.join(sorted(enum))}",
                    )
        stamp = parsed["timestamp"]
        if type(stamp) is str and not _TS_PATTERN.fullmatch(stamp):
            return Invalid("invalid_timestamp", f"timestamp {_short(stamp)} is not a number of seconds")
        # Valid after all (e.g. nesting deeper than msgspec follows in an unknown field).
        event: Event = _EVENT(**{name: parsed.get(name) for name in _EVENT_FIELDS})
        return self._check_values(event, low, high)

    @staticmethod
    def _undecodable(raw: bytes, exc: orjson.JSONDecodeError) -> Invalid:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Invalid("not_utf8", f"not UTF-8: {bad.reason} at byte {bad.start}")
        return Invalid("not_json", f"not JSON: {str(exc)[:200]}")


def parse(raw: bytes | None, now: float | None = None) -> dict[str, Any] | Invalid:
    """Validate one message value with the default limits; the event as a dict of its contract fields."""
    validator = Validator()
    low, high = validator.window(time.time() if now is None else now)
    result = validator.check(raw, low, high)
    if isinstance(result, Invalid):
        return result
    return {name: getattr(result[0], name) for name in _EVENT_FIELDS}
