"""Configuration from environment variables: one pydantic-settings model per service.

``load_settings`` turns pydantic's validation errors into a ``ConfigError`` whose message names the
environment variable, the value it had and what it accepts, so start-up fails with a clear line.
"""

from __future__ import annotations

import os
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from login_common.errors import ConfigError
from login_common.security import MASK, SECRET_FIELDS, KafkaSecurity

TOPIC_NAME = r"^[A-Za-z0-9._-]+$"  # what Kafka accepts (org.apache.kafka.common.internals.Topic)
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class CommonSettings(KafkaSecurity):
    """Settings every service reads. Each field is the environment variable of the same name, upper-cased.

    Kafka client security (SECURITY_PROTOCOL, SASL_*, SSL_*) comes from ``KafkaSecurity``.
    """

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, validate_default=True
    )

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        min_length=1,
        description="Kafka bootstrap servers, comma-separated host:port list.",
    )
    input_topic: str = Field(
        "user-login",
        min_length=1,
        max_length=249,
        pattern=TOPIC_NAME,
        description="Topic of raw login events (Kafka topic names: letters, digits, '.', '_', '-').",
    )
    log_format: LogFormat = Field(
        "auto", description="Log output: json, console, or auto (console on a TTY, else json)."
    )
    log_level: LogLevel = Field("INFO", description="Minimum log level.")

    def kafka_common(self) -> dict[str, Any]:
        """librdkafka settings shared by every client of this service."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.client_security()}

    def safe_dump(self) -> dict[str, Any]:
        """Every setting for the start-up log, secrets masked (``***`` when set, ``""`` when not)."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if name in SECRET_FIELDS or isinstance(value, SecretStr):
                secret = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
                out[name] = MASK if secret else ""
            else:
                out[name] = value
        return out


S = TypeVar("S", bound=BaseSettings)


def env_name(model: type[BaseSettings], field: str) -> str:
    info = model.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias.upper()
    prefix = str(model.model_config.get("env_prefix", "") or "")
    return f"{prefix}{field}".upper()


def accepted(model: type[BaseSettings], field: str) -> str:
    info = model.model_fields.get(field)
    if info is None:
        return ""
    parts = [info.description or ""]
    annotation = info.annotation
    args = getattr(annotation, "__args__", None)
    if args and all(isinstance(a, str) for a in args):
        parts.append("one of: " + ", ".join(args))
    bounds = []
    for meta in info.metadata:
        for key in ("ge", "gt", "le", "lt", "min_length", "max_length"):
            value = getattr(meta, key, None)
            if value is not None:
                bounds.append(f"{key}={value}")
    if bounds:
        parts.append("constraints: " + ", ".join(bounds))
    return "; ".join(p for p in parts if p)


def load_settings(model: type[S], **overrides: Any) -> S:
    """Build ``model`` from the environment (and overrides), or raise ``ConfigError`` naming the variable."""
    try:
        return model(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            if not err["loc"]:  # a model validator: its message names the variables itself
                lines.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            field = str(err["loc"][0])
            name = env_name(model, field)
            value = overrides.get(field, os.environ.get(name, err.get("input")))
            if field in SECRET_FIELDS:
                value = MASK
            lines.append(
                f"{name}={value!r}: {err['msg']}. Accepted: {accepted(model, field) or 'see --help'}"
            )
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def env_help(model: type[BaseSettings]) -> str:
    """Text for ``--help``: every environment variable, its default and what it accepts."""
    rows = ["environment variables:"]
    for field, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True)
        rows.append(f"  {env_name(model, field):<28} default: {default!s}")
        rows.append(f"  {'':<28} {accepted(model, field)}")
    return "\n".join(rows)
