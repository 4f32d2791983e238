"""OUTPUT_PRIVACY: what of a login's IP address and device id leaves the consumer.

``none`` (default) writes them as received. ``hash`` replaces each with a keyed HMAC-SHA256 (hex, 32
characters; the key from PRIVACY_KEY or PRIVACY_KEY_FILE): equal inputs give equal outputs, so joins and
counts still work, but nobody without the key can recover or test an address. ``truncate`` keeps the
network only (IPv4 /24 -> ``81.2.69.0``, IPv6 /64 -> ``2001:db8:1:2::``) and the first 8 characters of
the device id.

Applied to each processed event just before it is serialized: the ``ip`` and ``device_id`` fields, every
address or network and the device id inside the detections' evidence texts, and so also the flagged-IP
metric fed from them. The network stage adds its credential_stuffing detection to a document the user
stage protected already: its evidence goes through ``evidence_privacy`` (the same rewrite) when made, so
the whole output document is protected, evidence of both stages included. Detection is unaffected: the
detectors ran on the real values before, and their state (kept internally and in the changelog topic,
readable only by the consumer's user) keeps them.
The dead-letter topic keeps the input bytes unchanged, as replay needs.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from login_common.security import read_secret_file

Mode = Literal["none", "hash", "truncate"]
MIN_KEY_LENGTH: Final = 16
DEVICE_PREFIX: Final = 8
HASH_HEX: Final = 32
# an IPv4 or IPv6 address, optionally a network (/prefix), inside free text
_ADDRESS: Final = re.compile(
    r"(?<![\w.:])(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?:/\d{1,3})?"
)


class PrivacySettings(BaseSettings):
    """OUTPUT_PRIVACY, PRIVACY_KEY, PRIVACY_KEY_FILE (mixed into the consumer's settings)."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, validate_default=True
    )

    output_privacy: Mode = Field(
        "none",
        description=(
            "IP and device id in processed-logins: none (as received), hash (keyed HMAC) or truncate "
            "(IPv4 /24, IPv6 /64, first 8 characters of the device id)."
        ),
    )
    privacy_key: SecretStr = Field(
        SecretStr(""), description=f"HMAC key of OUTPUT_PRIVACY=hash (at least {MIN_KEY_LENGTH} characters)."
    )
    privacy_key_file: str = Field("", description="File holding PRIVACY_KEY (e.g. a mounted Secret key).")

    @model_validator(mode="after")
    def _key(self) -> PrivacySettings:
        given = bool(self.privacy_key.get_secret_value())
        if given and self.privacy_key_file:
            raise ValueError("PRIVACY_KEY and PRIVACY_KEY_FILE are both set: keep one")
        if self.output_privacy != "hash":
            if given or self.privacy_key_file:
                name = "PRIVACY_KEY" if given else "PRIVACY_KEY_FILE"
                raise ValueError(f"{name} is set but OUTPUT_PRIVACY={self.output_privacy} does not use it")
            return self
        key = self.privacy_secret()
        if not key:
            raise ValueError("OUTPUT_PRIVACY=hash needs PRIVACY_KEY or PRIVACY_KEY_FILE")
        if len(key) < MIN_KEY_LENGTH:
            name = "PRIVACY_KEY" if given else "PRIVACY_KEY_FILE"
            raise ValueError(f"{name}: the key must have at least {MIN_KEY_LENGTH} characters")
        return self

    def privacy_secret(self) -> str:
        if self.privacy_key_file:
            return read_secret_file(self.privacy_key_file, "PRIVACY_KEY_FILE")
        return self.privacy_key.get_secret_value()


class Privacy:
    """Rewrites one processed event (a dict) in place; see the module docstring."""

    def __init__(self, mode: Mode, key: str = "") -> None:
        self.mode = mode
        self._key = key.encode()
        self._cache: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: PrivacySettings) -> Callable[[dict[str, Any]], None] | None:
        """The function to apply to each event, or None when OUTPUT_PRIVACY=none."""
        if settings.output_privacy == "none":
            return None
        key = settings.privacy_secret() if settings.output_privacy == "hash" else ""
        return cls(settings.output_privacy, key).apply

    def apply(self, doc: dict[str, Any]) -> None:
        ip = doc.get("ip")
        if isinstance(ip, str):
            doc["ip"] = self.address(ip)
        device = doc.get("device_id")
        if isinstance(device, str):
            doc["device_id"] = self.device(device)
        for detection in doc.get("detections") or ():
            detection["evidence"] = [self.text(line, device) for line in detection.get("evidence", ())]

    def address(self, value: str) -> str:
        """An address or network (``a.b.c.0/24``) in its protected form."""
        cached = self._cache.get(value)
        if cached is None:
            cached = self._hash(value) if self.mode == "hash" else _truncate(value)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[value] = cached
        return cached

    def device(self, value: str) -> str:
        return self._hash(value) if self.mode == "hash" else value[:DEVICE_PREFIX]

    def text(self, line: str, device: Any) -> str:
        """Evidence text with every address, network and the event's device id protected."""
        if isinstance(device, str) and device and device in line:
            line = line.replace(device, self.device(device))
        return _ADDRESS.sub(lambda m: self._maybe(m.group(0)), line)

    def _maybe(self, found: str) -> str:
        try:
            ipaddress.ip_network(found, strict=False)
        except ValueError:
            return found  # a time like 12:30:00, not an address
        return self.address(found)

    def _hash(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:HASH_HEX]


def evidence_privacy(settings: PrivacySettings) -> Callable[[str], str] | None:
    """What protects an evidence line added after ``Privacy.apply`` ran on the rest of the document (the
    network stage's credential_stuffing evidence), or None when OUTPUT_PRIVACY=none."""
    if settings.output_privacy == "none":
        return None
    key = settings.privacy_secret() if settings.output_privacy == "hash" else ""
    privacy = Privacy(settings.output_privacy, key)
    return lambda line: privacy.text(line, None)


def _truncate(value: str) -> str:
    """IPv4 -> its /24, IPv6 -> its /64, as an address (a network keeps its form with the wider prefix)."""
    address, _, prefix = value.partition("/")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return value
    bits = 24 if ip.version == 4 else 64
    net = ipaddress.ip_network((ip, bits), strict=False).network_address
    if prefix:
        return f"{net}/{min(bits, int(prefix))}"
    return str(net)
