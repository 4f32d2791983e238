"""Detector state on the real broker: written to the changelog topic, restored after a restart and a
rebalance, so a brute-force burst or a new device that spans the change is still detected."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.integration

NOW = int(time.time())


def event(
    user: str, ago: int, *, outcome: str = "success", device: str = "111-11-1111", ip: str = "81.2.69.160"
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "user_id": user,
        "ip": ip,
        "timestamp": NOW - ago,
        "device_id": device,
        "device_type": "android",
        "app_version": "2.4.0",
        "locale": "GB",
        "outcome": outcome,
        "auth_method": "password",
    }


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_restart_keeps_brute_force_and_new_device_going(
    kafka: str, pipeline: Callable[..., Pipeline], guarantee: str
) -> None:
    pipe = pipeline("detect-restart", processing_guarantee=guarantee)
    attacker = "203.0.113.9"
    with pipe.consumer("first"):
        pipe.send(
            [(0, event("alice", 600, device="aaa-00-0001"))]
            + [(0, event("alice", 100 - n, outcome="failure", ip=attacker)) for n in range(4)]
        )
        assert all(not d for d in pipe.detections().values())
    # a new process: its memory is empty, the changelog is not
    with pipe.consumer("second") as second:
        fifth, known, new = pipe.send(
            [
                (0, event("alice", 90, outcome="failure", ip=attacker)),
                (0, event("alice", 60, device="aaa-00-0001")),
                (0, event("alice", 30, device="bbb-00-0002")),
            ]
        )
        found = pipe.detections()
        assert second.detectors.state_sizes()["user_history"] == 1
    assert found[fifth] == ["brute_force"]
    assert found[known] == []
    assert found[new] == ["new_device"]

    admin = AdminClient({"bootstrap.servers": kafka})
    changelog = pipe.settings.changelog_topic()
    meta = admin.list_topics(changelog, timeout=10).topics[changelog]
    assert len(meta.partitions) == 2
    config = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, changelog)])
    entries = next(iter(config.values())).result(timeout=10)
    assert entries["cleanup.policy"].value == "compact"


def test_a_rebalance_hands_each_partitions_state_to_its_new_owner(
    pipeline: Callable[..., Pipeline],
) -> None:
    pipe = pipeline("detect-rebalance")
    with pipe.consumer("first") as first:
        pipe.send(
            [(0, event("ann", 600, device="ann-00-0001")), (1, event("bob", 600, device="bob-00-0001"))]
        )
        pipe.detections()
        assert first.detectors.state_sizes()["user_history"] == 2
        with pipe.consumer("second") as second:
            deadline = time.monotonic() + 30  # wait for the group to split the two partitions
            while time.monotonic() < deadline and not (
                len(first.group.inputs()) == 1 and len(second.group.inputs()) == 1
            ):
                time.sleep(0.2)
            assert len(first.group.inputs()) == len(second.group.inputs()) == 1
            ids = pipe.send(
                [
                    (0, event("ann", 60, device="ann-00-0002")),
                    (0, event("ann", 50, device="ann-00-0001")),
                    (1, event("bob", 60, device="bob-00-0002")),
                    (1, event("bob", 50, device="bob-00-0001")),
                ]
            )
            found = pipe.detections()
            # each consumer holds (and restored) only its own partition's users
            assert first.detectors.state_sizes()["user_history"] == 1
            assert second.detectors.state_sizes()["user_history"] == 1
    # (without the restored history the new devices would be first successes, the old ones new)
    assert [found[i] for i in ids] == [["new_device"], [], ["new_device"], []]
