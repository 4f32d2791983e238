"""Shared pieces of login-stream: the event contract, settings, logging, Kafka and HTTP plumbing."""

__all__ = ["__version__"]
__version__ = "0.1.0"
