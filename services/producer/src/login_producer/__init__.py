"""login-producer: simulated login traffic for the login-stream pipeline."""

__version__ = "0.1.0"
