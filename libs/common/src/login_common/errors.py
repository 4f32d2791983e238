"""Exceptions shared by the login-stream services."""


class LoginStreamError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(LoginStreamError):
    """Configuration that cannot be used; the message names the setting and what it accepts."""


class KafkaUnavailableError(LoginStreamError):
    """The broker did not answer in time."""
