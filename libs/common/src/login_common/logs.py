"""structlog set-up: JSON lines in containers, a readable console on a TTY; ``Warnings``, rate-limited."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog


def configure_logging(fmt: str = "auto", level: str = "INFO", *, tracing: bool = False) -> None:
    """Configure structlog (and stdlib logging, for libraries) once per process; ``tracing``: each line also
    gets the current span's ``trace_id`` and ``span_id`` (login_common.tracing.add_trace_ids)."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if tracing:
        from login_common.tracing import add_trace_ids

        shared.append(add_trace_ids)
    renderer: Any
    if use_console:
        renderer = structlog.dev.ConsoleRenderer()
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


class Warnings:
    """Warnings of one kind at most every ``every`` seconds: Kafka errors repeat many times a second while
    a broker is down or a right is missing, and a log flooded with one line hides the next kind."""

    def __init__(self, log: Any, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.every = every
        self._clock = clock
        self._last: dict[str, float] = {}

    def __call__(self, event: str, **fields: Any) -> None:
        now = self._clock()
        if now - self._last.get(event, -1e9) >= self.every:
            self._last[event] = now
            self.log.warning(event, **fields)
