"""structlog set-up: JSON lines in containers, a readable console on a TTY."""

from __future__ import annotations

import logging
import sys
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
