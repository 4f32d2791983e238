"""Crafted login traffic that the simulator's benign stream does not contain.

Written straight to the input topic next to the producer's stream so that the risk panels (detections,
flagged users and IPs, high risk levels) and the dead-letter panels have real data: a brute force on one
account, credential stuffing from one IP, an impossible-travel pair, and malformed messages. Nothing is
faked in the metrics: the consumer counts what it sees.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Producer

# Public addresses whose country the consumer's GeoIP database knows.
IP_US = "8.8.8.8"
IP_GB = "81.2.69.160"
IP_JP = "133.242.0.1"
IP_BR = "200.160.2.3"
IP_RU = "5.255.255.5"
IP_DE = "185.220.101.1"
BOT_AGENT = "python-requests/2.32"


def _event(user: str, ip: str, ts: float, outcome: str = "success", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "user_id": user,
        "ip": ip,
        "timestamp": int(ts),
        "app_version": "2.4.0",
        "locale": "RI",
        "device_id": f"dev-{user}",
        "device_type": "web",
        "outcome": outcome,
        "auth_method": "password",
        **extra,
    }


def attack_round(tag: str, now: float | None = None) -> Iterator[tuple[str, bytes]]:
    """One round of suspicious and malformed messages as (key, value) pairs; ``tag`` keeps ids unique."""
    now = time.time() if now is None else now
    # Locale RI (United States) with a foreign IP and failed passwords scores high even without detectors.
    # Brute force: many failed passwords on one account from one address, then a success.
    victim = f"bf-victim-{tag}"
    for i in range(30):
        yield victim, json.dumps(_event(victim, IP_RU, now - 30 + i, "failure")).encode()
    yield victim, json.dumps(_event(victim, IP_RU, now)).encode()
    # Credential stuffing: one address, many accounts, mostly failures.
    for i in range(40):
        user = f"cs-user-{tag}-{i}"
        outcome = "success" if i % 10 == 0 else "failure"
        event = _event(user, IP_DE, now - 20 + i * 0.5, outcome, device_id="stuffer", user_agent=BOT_AGENT)
        yield user, json.dumps(event).encode()
    # Impossible travel: the same account in the US and in Japan within two minutes, new device.
    traveller = f"traveller-{tag}"
    yield traveller, json.dumps(_event(traveller, IP_US, now - 120)).encode()
    yield (
        traveller,
        json.dumps(_event(traveller, IP_JP, now, device_id=f"new-{tag}", device_type="android")).encode(),
    )
    yield traveller, json.dumps(_event(traveller, IP_BR, now + 1, device_id=f"other-{tag}")).encode()
    yield traveller, json.dumps(_event(traveller, IP_GB, now + 2, device_id=f"third-{tag}")).encode()
    # Malformed: each kind must end up on the dead-letter topic.
    yield f"bad-{tag}", b"{not json"
    yield f"bad-{tag}", json.dumps({"ip": IP_US, "timestamp": int(now)}).encode()
    yield f"bad-{tag}", json.dumps(_event(f"bad-{tag}", "999.1.2.3", now)).encode()
    yield f"bad-{tag}", json.dumps(_event(f"bad-{tag}", IP_US, now) | {"timestamp": "yesterday"}).encode()


def inject(bootstrap: str, topic: str, rounds: int, interval: float, stop_check: Any = None) -> int:
    """Write ``rounds`` attack rounds ``interval`` seconds apart; returns the number of messages."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    sent = 0
    try:
        for r in range(rounds):
            if stop_check is not None and stop_check():
                break
            for key, value in attack_round(f"{r}-{uuid.uuid4().hex[:6]}"):
                producer.produce(topic, value=value, key=key.encode())
                sent += 1
            producer.flush(10)
            time.sleep(interval)
    finally:
        producer.flush(10)
    return sent
