"""login-consumer: validate, enrich, score and route login events."""

__version__ = "0.1.0"
