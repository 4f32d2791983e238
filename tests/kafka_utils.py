"""Helpers for tests that read from and run against the real broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, Message

from login_common.kafka import Brokers, client_config


def drain(
    bootstrap: Brokers,
    topic: str,
    *,
    expected: int | None = None,
    timeout: float = 60.0,
    idle: float = 3.0,
    isolation: str = "read_uncommitted",
) -> list[Message]:
    """Read ``topic`` from the beginning until ``expected`` messages arrived (or ``idle`` s of silence).

    ``bootstrap`` is an address or a whole client configuration (a secured broker's, say).
    """
    consumer = Consumer(
        {
            **client_config(bootstrap),
            "group.id": f"drain-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.5)
            good = [m for m in batch if m.error() is None]
            if good:
                out.extend(good)
                last = time.monotonic()
            if expected is not None and len(out) >= expected:
                # keep reading briefly to catch unexpected extras
                if time.monotonic() - last > 1.0:
                    break
            elif expected is None and out and time.monotonic() - last > idle:
                break
    finally:
        consumer.close()
    return out


@contextmanager
def running(target: Callable[[threading.Event], object], name: str = "worker") -> Iterator[threading.Event]:
    """Run ``target(stop)`` in a thread; on exit set ``stop`` and join (re-raising its error)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def wrapper() -> None:
        try:
            target(stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    thread = threading.Thread(target=wrapper, name=name, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(30)
        if errors:
            raise errors[0]
