"""login_common.logs: ``Warnings`` lets one line of each kind through per interval, per kind."""

from __future__ import annotations

from typing import Any

import structlog

from login_common.logs import Warnings


def test_a_warning_repeats_once_per_interval_and_kinds_do_not_hide_each_other() -> None:
    now = [100.0]
    with structlog.testing.capture_logs() as seen:
        warn = Warnings(structlog.get_logger("t"), every=10.0, clock=lambda: now[0])
        for _ in range(50):  # a broker down: the same error many times a second
            warn("kafka.error", code="_TRANSPORT")
        warn("commit.failed", error="x")  # another kind still gets through
        now[0] += 9.9
        warn("kafka.error", code="_TRANSPORT")
        now[0] += 0.1
        warn("kafka.error", code="_ALL_BROKERS_DOWN")
    events: list[tuple[Any, ...]] = [(e["event"], e.get("code"), e["log_level"]) for e in seen]
    assert events == [
        ("kafka.error", "_TRANSPORT", "warning"),
        ("commit.failed", None, "warning"),
        ("kafka.error", "_ALL_BROKERS_DOWN", "warning"),
    ]
