"""Kafka client security shared by both services: TLS, SASL (SCRAM) and mutual TLS settings.

``KafkaSecurity`` is a settings model (``CommonSettings`` extends it): the environment variables
``SECURITY_PROTOCOL``, ``SASL_MECHANISM``, ``SASL_USERNAME``, ``SASL_PASSWORD`` / ``SASL_PASSWORD_FILE``,
``SSL_CA_LOCATION``, ``SSL_CERTIFICATE_LOCATION``, ``SSL_KEY_LOCATION``, ``SSL_KEY_PASSWORD`` /
``SSL_KEY_PASSWORD_FILE``. Paths are files as Kubernetes mounts Secret keys (PEM certificates, a password
file holding just the password). A combination that cannot work stops start-up with a message naming the
variable. Secrets are ``SecretStr`` (masked in repr, logs and errors); ``client_security()`` is the only
place they are revealed, into the librdkafka configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]

MASK: Final = "***"
# Fields whose value is never shown (the start-up log, --help defaults, configuration errors).
SECRET_FIELDS: Final = frozenset({"sasl_password", "ssl_key_password", "privacy_key"})


def read_secret_file(path: str, variable: str) -> str:
    """The content of a secret file (one trailing newline stripped), or ValueError naming ``variable``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{variable}={path!r}: cannot read the file ({exc.strerror or exc})") from None
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    if not text:
        raise ValueError(f"{variable}={path!r}: the file is empty")
    return text


def _readable(path: str, variable: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{variable}={path!r}: no such file")
    try:
        with p.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"{variable}={path!r}: cannot read the file ({exc.strerror or exc})") from None


class KafkaSecurity(BaseSettings):
    """Security settings of every Kafka client (the base of each service's settings model)."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, validate_default=True
    )

    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="Kafka security protocol: PLAINTEXT, SSL (TLS, optionally mutual) or SASL_SSL.",
    )
    sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512", description="SASL mechanism when SECURITY_PROTOCOL=SASL_SSL."
    )
    sasl_username: str = Field("", description="SASL user name (SECURITY_PROTOCOL=SASL_SSL).")
    sasl_password: SecretStr = Field(
        SecretStr(""), description="SASL password; or use SASL_PASSWORD_FILE (never both)."
    )
    sasl_password_file: str = Field(
        "", description="File holding the SASL password (a mounted Secret key); trailing newline ignored."
    )
    ssl_ca_location: str = Field(
        "", description="PEM file of the CA certificate(s) of the broker's certificate; empty = system CAs."
    )
    ssl_certificate_location: str = Field(
        "", description="PEM client certificate for mutual TLS (with SSL_KEY_LOCATION)."
    )
    ssl_key_location: str = Field("", description="PEM private key of the client certificate (mutual TLS).")
    ssl_key_password: SecretStr = Field(
        SecretStr(""), description="Password of an encrypted SSL_KEY_LOCATION; or SSL_KEY_PASSWORD_FILE."
    )
    ssl_key_password_file: str = Field("", description="File holding the password of SSL_KEY_LOCATION.")

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _combination(self) -> KafkaSecurity:
        protocol = self.security_protocol
        sasl_set = [
            name
            for name, value in (
                ("SASL_USERNAME", self.sasl_username),
                ("SASL_PASSWORD", self.sasl_password.get_secret_value()),
                ("SASL_PASSWORD_FILE", self.sasl_password_file),
            )
            if value
        ]
        ssl_set = [
            name
            for name, value in (
                ("SSL_CA_LOCATION", self.ssl_ca_location),
                ("SSL_CERTIFICATE_LOCATION", self.ssl_certificate_location),
                ("SSL_KEY_LOCATION", self.ssl_key_location),
                ("SSL_KEY_PASSWORD", self.ssl_key_password.get_secret_value()),
                ("SSL_KEY_PASSWORD_FILE", self.ssl_key_password_file),
            )
            if value
        ]
        if protocol == "PLAINTEXT" and (sasl_set or ssl_set):
            name = (sasl_set or ssl_set)[0]
            raise ValueError(
                f"{name} is set but SECURITY_PROTOCOL=PLAINTEXT uses neither TLS nor SASL: "
                f"set SECURITY_PROTOCOL={'SASL_SSL' if sasl_set else 'SSL'} (or unset {name})"
            )
        if protocol == "SSL" and sasl_set:
            raise ValueError(
                f"{sasl_set[0]} is set but SECURITY_PROTOCOL=SSL does not use SASL: "
                "set SECURITY_PROTOCOL=SASL_SSL (or unset it)"
            )
        if protocol == "SASL_SSL":
            if not self.sasl_username:
                raise ValueError("SASL_USERNAME is empty but SECURITY_PROTOCOL=SASL_SSL needs a user name")
            has_password = bool(self.sasl_password.get_secret_value())
            if has_password and self.sasl_password_file:
                raise ValueError("SASL_PASSWORD and SASL_PASSWORD_FILE are both set: keep one")
            if not has_password and not self.sasl_password_file:
                raise ValueError(
                    "SASL_PASSWORD (or SASL_PASSWORD_FILE) is empty but SECURITY_PROTOCOL=SASL_SSL needs one"
                )
            if self.sasl_password_file:
                read_secret_file(self.sasl_password_file, "SASL_PASSWORD_FILE")
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            missing = "SSL_KEY_LOCATION" if self.ssl_certificate_location else "SSL_CERTIFICATE_LOCATION"
            given = "SSL_CERTIFICATE_LOCATION" if self.ssl_certificate_location else "SSL_KEY_LOCATION"
            raise ValueError(f"{missing} is empty but {given} is set: mutual TLS needs both")
        key_password = bool(self.ssl_key_password.get_secret_value())
        if (key_password or self.ssl_key_password_file) and not self.ssl_key_location:
            name = "SSL_KEY_PASSWORD" if key_password else "SSL_KEY_PASSWORD_FILE"
            raise ValueError(f"{name} is set but SSL_KEY_LOCATION is empty")
        if key_password and self.ssl_key_password_file:
            raise ValueError("SSL_KEY_PASSWORD and SSL_KEY_PASSWORD_FILE are both set: keep one")
        for name, path in (
            ("SSL_CA_LOCATION", self.ssl_ca_location),
            ("SSL_CERTIFICATE_LOCATION", self.ssl_certificate_location),
            ("SSL_KEY_LOCATION", self.ssl_key_location),
        ):
            if path:
                _readable(path, name)
        if self.ssl_key_password_file:
            read_secret_file(self.ssl_key_password_file, "SSL_KEY_PASSWORD_FILE")
        return self

    @property
    def mutual_tls(self) -> bool:
        return bool(self.ssl_certificate_location)

    def client_security(self) -> dict[str, Any]:
        """librdkafka properties for the chosen protocol (secrets included: never log the result)."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {"security.protocol": self.security_protocol.lower()}
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        if self.ssl_certificate_location:
            config["ssl.certificate.location"] = self.ssl_certificate_location
            config["ssl.key.location"] = self.ssl_key_location
            key_password = self.ssl_key_password.get_secret_value() or (
                read_secret_file(self.ssl_key_password_file, "SSL_KEY_PASSWORD_FILE")
                if self.ssl_key_password_file
                else ""
            )
            if key_password:
                config["ssl.key.password"] = key_password
        if self.security_protocol == "SASL_SSL":
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value() or read_secret_file(
                self.sasl_password_file, "SASL_PASSWORD_FILE"
            )
        return config
