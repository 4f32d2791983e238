"""Detector state survives a restart, a rebalance and a failed batch through its changelog records.

The changelog here is an in-memory list per partition fed with exactly the records the consumer loop
would produce (``changes()``); tests/integration/test_detect_state.py does the same through the broker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from login_consumer.detectors.base import DetectorConfig, StateChangelog
from login_consumer.detectors.users import UserDetectors
from login_consumer.in_process import AllDetectors
from login_consumer.records import PartitionRef
from login_consumer.stores import histories
from tests.unit.test_detect import T0, Feed, ev, fail

TOPIC = "user-login"


class MemoryChangelog:
    """A compacted topic's contents, partition by partition (no compaction: restore must cope)."""

    def __init__(self, topic: str = "g-detector-state") -> None:
        self.topic = topic
        self.network: MemoryChangelog | None = None  # the network stage's changelog beside this one
        self.records: dict[int, list[tuple[bytes, bytes | None]]] = {}

    def read(self, partitions: Sequence[int]) -> Mapping[int, Sequence[tuple[bytes, bytes | None]]]:
        return {p: list(self.records.get(p, [])) for p in partitions}

    def write(self, changes: Sequence[tuple[str, int, bytes, bytes | None]]) -> None:
        for topic, partition, key, value in changes:
            if topic != self.topic:
                continue
            self.records.setdefault(partition, []).append((key, value))

    def latest(self, partition: int) -> dict[bytes, bytes | None]:
        return dict(self.records.get(partition, []))


class Consumer:
    """Detectors with their changelog, as the consumer loop drives them (detect, then write changes)."""

    def __init__(
        self,
        log: MemoryChangelog,
        partitions: Sequence[int] = (0,),
        netlog: MemoryChangelog | None = None,
        **config: Any,
    ) -> None:
        self.log = log
        # the network stage's changelog lives beside the user stage's (one per test log)
        if netlog is None:
            if log.network is None:
                log.network = MemoryChangelog("g-network-state")
            netlog = log.network
        self.netlog = netlog
        self.detectors = AllDetectors(DetectorConfig(**config), log, self.netlog)
        self.detectors.on_assign([PartitionRef(TOPIC, p) for p in partitions])
        self.feed = Feed(self.detectors)
        for p in partitions:  # continue the partitions' offsets after what the changelog says was applied
            self.feed.offsets[p] = self.detectors.users.state.partition(p).applied + 1

    def names(
        self, events: Sequence[dict[str, Any]], partitions: Sequence[int] | None = None
    ) -> list[set[str]]:
        got = self.feed.names(events, partitions)
        changes = self.detectors.changes()
        self.log.write(changes)
        self.netlog.write(changes)
        return got


def hkey(user: str) -> bytes:
    """The changelog key of a user's history."""
    return histories.changelog_key(histories.user_key(user))


def test_detectors_write_a_changelog() -> None:
    assert isinstance(UserDetectors(), StateChangelog)
    log = MemoryChangelog()
    consumer = Consumer(log)
    consumer.names([ev("u1", T0, device="a"), fail("u2", T0 + 1, ip="192.0.2.9")])
    assert set(log.latest(0)) == {hkey("u1"), b"F192.0.2.9 u2", b"W"}
    assert set(consumer.netlog.latest(0)) == {b"N192.0.2.0/24 u2", b"W"}
    assert consumer.netlog.latest(0)[b"N192.0.2.0/24 u2"] == b"1736121601"
    assert log.latest(0)[hkey("u1")] == histories.pack(T0, "US", [histories.device_key("a")], ["US"])
    assert log.latest(0)[b"W"] == b'{"watermark":1736121601,"offset":1}'
    consumer.names([ev("u3", T0 + 2)])
    assert [k for k, _ in log.records[0][3:]] == [hkey("u3"), b"W"]  # only what changed


def test_no_changelog_no_records() -> None:
    detectors = AllDetectors()
    Feed(detectors).names([ev("u1", T0)])
    assert detectors.changes() == []


def test_a_restart_continues_brute_force_new_device_and_stuffing() -> None:
    log = MemoryChangelog()
    before = Consumer(log, partitions=(0, 1))
    before.names(
        [ev("u1", T0, device="phone")]
        + [fail("u1", T0 + 10 + n, ip="198.51.100.1") for n in range(4)]
        + [fail(f"s{n}", T0 + 20 + n, ip="192.0.2.1") for n in range(9)],
        partitions=[0] * 5 + [n % 2 for n in range(9)],
    )
    after = Consumer(log, partitions=(0, 1))  # a new process: everything comes from the changelog
    assert after.detectors.users.restored_entries > 0
    got = after.names(
        [
            fail("u1", T0 + 30, ip="198.51.100.1"),  # the 5th failure in the window
            ev("u1", T0 + 40, device="phone"),  # known
            ev("u1", T0 + 50, device="laptop"),  # new
            fail("s9", T0 + 60, ip="192.0.2.1"),  # the 10th account
        ],
        partitions=[0, 0, 0, 1],
    )
    assert got == [{"brute_force"}, set(), {"new_device"}, {"credential_stuffing"}]
    fresh = Consumer(MemoryChangelog(), partitions=(0, 1))  # without the changelog: nothing
    assert fresh.names([fail("u1", T0 + 30, ip="198.51.100.1"), ev("u1", T0 + 50, device="laptop")]) == [
        set(),
        set(),
    ]


def test_a_rebalance_moves_a_partitions_state_to_its_new_owner() -> None:
    log = MemoryChangelog()
    first = Consumer(log, partitions=(0, 1))
    first.names([ev("a", T0, device="a1"), ev("b", T0, device="b1")], partitions=[0, 1])
    # partition 1 goes to a second consumer: the first forgets it, the second restores it
    first.detectors.on_revoke([PartitionRef(TOPIC, 1)], lost=False)
    assert first.detectors.state_sizes()["user_history"] == 1
    second = Consumer(log, partitions=(1,))
    assert second.detectors.state_sizes()["user_history"] == 1
    assert second.names([ev("b", T0 + 60, device="b1"), ev("b", T0 + 70, device="b2")], [1, 1]) == [
        set(),
        {"new_device"},
    ]
    assert first.names([ev("a", T0 + 80, device="a2")]) == [{"new_device"}]
    # ... and back: the first consumer restores what the second wrote
    first.detectors.on_assign([PartitionRef(TOPIC, 1)])
    first.feed.offsets[1] = first.detectors.users.state.partition(1).applied + 1
    assert first.names([ev("b", T0 + 90, device="b2")], [1]) == [set()]


def test_restore_keeps_the_watermark_so_late_events_stay_late() -> None:
    log = MemoryChangelog()
    Consumer(log, grace=60).names([ev("u1", T0 + 1000, device="a")])
    after = Consumer(log, grace=60)
    after.names([ev("u1", T0, device="b")])
    assert after.detectors.users.late_events == 1


def test_replayed_events_are_scored_but_not_applied_twice() -> None:
    log = MemoryChangelog()
    before = Consumer(log)
    before.names([fail("u1", T0 + n, ip="198.51.100.1") for n in range(3)])  # offsets 0..2
    after = AllDetectors(DetectorConfig(), log)
    after.on_assign([PartitionRef(TOPIC, 0)])
    feed = Feed(after)  # offsets from 0 again: the committed offset lagged the changelog
    # (the replayed events are given other timestamps here to show they change nothing)
    got = feed.batch([fail("u1", T0 + n, ip="198.51.100.1") for n in range(4, 7)])
    assert after.users.replayed_events == 3
    assert got[2] == []  # counted as 3 (itself included), not 6
    assert feed.names([fail("u1", T0 + 3, ip="198.51.100.1")]) == [set()]  # 4 in the window
    assert feed.names([fail("u1", T0 + 4, ip="198.51.100.1")]) == [{"brute_force"}]


def test_rewind_restores_the_partition_from_the_changelog() -> None:
    log = MemoryChangelog()
    consumer = Consumer(log)
    consumer.names([ev("u1", T0, device="a")])
    consumer.feed.names([ev("u1", T0 + 10, device="b")])  # processed, but its batch failed
    consumer.detectors.changes()  # ... and its records never reached the topic (an aborted transaction)
    consumer.detectors.rewind([PartitionRef(TOPIC, 0)])
    consumer.feed.offsets[0] = 1
    assert consumer.names([ev("u1", T0 + 10, device="b")]) == [{"new_device"}]  # detected again


def test_evictions_write_tombstones_and_restore_ignores_what_they_delete() -> None:
    log = MemoryChangelog()
    consumer = Consumer(log, user_ttl=3600, grace=0)
    consumer.names([ev("u1", T0, device="a"), fail("u2", T0, ip="192.0.2.1")])
    consumer.names([ev("u3", T0 + 3600 + 450)])  # u1's TTL and generation (ttl / 8) are past
    latest = log.latest(0)
    assert latest[hkey("u1")] is None
    assert latest[b"F192.0.2.1 u2"] is None
    assert consumer.netlog.latest(0)[b"N192.0.2.0/24 u2"] is None
    after = Consumer(log, user_ttl=3600, grace=0)
    assert after.detectors.state_sizes() == {"user_history": 1, "user_ip_failures": 0, "network_failures": 0}


def test_history_expiry_follows_the_last_success_to_one_generation() -> None:
    """A user active all along stays; one never seen again goes one TTL (+ a generation) later."""
    ttl = 8 * 3600  # generations of an hour
    feed = Feed(user_ttl=ttl)
    feed.names([ev("old", T0), ev("busy", T0)])
    for n in range(1, 24):  # busy logs in every 20 minutes for a TTL, old never again
        feed.names([ev("busy", T0 + n * 1200)])
    assert feed.detectors.state_sizes()["user_history"] == 2
    feed.names([ev("busy", T0 + ttl + 3600)])
    assert feed.detectors.state_sizes()["user_history"] == 1
    assert feed.one(ev("busy", T0 + ttl + 3601, device="new")) == {"new_device"}  # busy kept


def test_a_previous_format_record_is_read_and_rewritten() -> None:
    """``H<user>`` JSON records (before the compact store) restore, and are rewritten in the new format
    with a tombstone for the old key."""
    log = MemoryChangelog()
    log.records[0] = [(b"Hu1", b'[1736121600,"US",["a"],["US"]]')]
    consumer = Consumer(log)
    assert consumer.detectors.state_sizes()["user_history"] == 1
    assert consumer.names([ev("u1", T0 + 10, device="a")]) == [set()]  # device a is known
    latest = log.latest(0)
    assert latest[b"Hu1"] is None
    assert histories.unpack(latest[hkey("u1")] or b"")[2] == [histories.device_key("a")]
    assert Consumer(log).names([ev("u1", T0 + 20, device="b")]) == [{"new_device"}]


def test_corrupt_records_are_skipped() -> None:
    log = MemoryChangelog()
    log.records[0] = [
        (b"Hu1", b"not json"),
        (b"Hu2", b'[1,"US",["a"],["US"]]'),
        (b"Zwhat", b"1"),
        (hkey("u3"), b"\x09 not a record"),
    ]
    consumer = Consumer(log)
    assert consumer.detectors.state_sizes()["user_history"] == 1


def test_a_login_that_only_moves_time_is_written_once_the_record_is_slack_seconds_behind() -> None:
    log = MemoryChangelog()
    consumer = Consumer(log, state_time_slack=60)
    consumer.names([ev("u1", T0, device="a")])
    consumer.names([ev("u1", T0 + 30, device="a")])  # known device, same country: nothing new
    assert [k for k, _ in log.records[0]].count(hkey("u1")) == 1
    consumer.names([ev("u1", T0 + 61, device="a")])
    assert [k for k, _ in log.records[0]].count(hkey("u1")) == 2
    consumer.names([ev("u1", T0 + 62, device="b")])  # a new device: written at once
    assert [k for k, _ in log.records[0]].count(hkey("u1")) == 3
    # after a restore the last success is at most `slack` seconds old... here exact
    devices = [histories.device_key("a"), histories.device_key("b")]
    assert log.latest(0)[hkey("u1")] == histories.pack(T0 + 62, "US", devices, ["US"])
