"""Validation of raw login event bytes against the shared contract."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from login_common.contract import field_types, required_fields

_REQUIRED = required_fields()
_TYPES = field_types()


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an input cannot be processed: a short machine-readable type and a human detail."""

    error_type: str
    detail: str


def parse(raw: bytes | None) -> dict[str, Any] | Invalid:
    """Decode and validate one message value; return the event or the reason it is invalid."""
    if not raw:
        return Invalid("empty", "message value is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid("not_utf8", str(exc)[:200])
    try:
        event = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return Invalid("not_json", str(exc)[:200])
    if not isinstance(event, dict):
        return Invalid("not_object", f"JSON value is a {type(event).__name__}, not an object")
    for name in _REQUIRED:
        if event.get(name) is None:
            return Invalid("missing_field", f"required field {name!r} is missing or null")
    for name, types in _TYPES.items():
        value = event.get(name)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            return Invalid("wrong_type", f"field {name!r} has type {type(value).__name__}")
    try:
        ipaddress.ip_address(event["ip"])
    except ValueError:
        return Invalid("invalid_ip", f"ip {str(event['ip'])[:64]!r} is not an IPv4 or IPv6 address")
    return event
