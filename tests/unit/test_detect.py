"""Stateful detectors, table-driven: thresholds, windows, late and out-of-order events, eviction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from login_common.errors import ConfigError
from login_common.geo import COUNTRY_POINTS, great_circle_km
from login_common.settings import load_settings
from login_consumer.config import ConsumerSettings
from login_consumer.detectors.base import DetectBatch, DetectorConfig, Detectors, NoDetectors
from login_consumer.detectors.names import DEFAULT_RISKS, DETECTOR_NAMES, parse_detectors, parse_risks
from login_consumer.detectors.networks import NetEvent, NetworkDetector
from login_consumer.detectors.users import UserDetectors
from login_consumer.in_process import AllDetectors
from login_consumer.stages.keys import network_of
from login_consumer.wiring import build_detectors
from login_producer.config import ProducerSettings

T0 = 1_736_121_600  # 2025-01-06T00:00:00Z


def ev(
    user: str = "u1",
    ts: int = T0,
    *,
    outcome: str | None = "success",
    ip: str = "203.0.113.7",
    device: str | None = "111-11-1111",
    country: str | None = "US",
) -> dict[str, Any]:
    """An enriched document with the fields the detectors read."""
    return {
        "event_id": f"{user}-{ts}-{outcome}-{ip}",
        "user_id": user,
        "timestamp": ts,
        "ip": ip,
        "outcome": outcome,
        "device_id": device,
        "geo": None if country is None else {"country_code": country},
    }


def fail(user: str = "u1", ts: int = T0, ip: str = "203.0.113.7", **kw: Any) -> dict[str, Any]:
    return ev(user, ts, outcome="failure", ip=ip, **kw)


class Feed:
    """Feeds events to detectors one batch at a time, numbering offsets per partition."""

    def __init__(self, detectors: AllDetectors | None = None, **config: Any) -> None:
        self.detectors = detectors or AllDetectors(DetectorConfig(**config))
        self.offsets: dict[int, int] = {}

    def batch(self, events: Sequence[dict[str, Any]], partitions: Sequence[int] | None = None) -> list[Any]:
        parts = list(partitions) if partitions is not None else [0] * len(events)
        offsets = []
        for p in parts:
            offsets.append(self.offsets.get(p, 0))
            self.offsets[p] = offsets[-1] + 1
        found = self.detectors.detect(DetectBatch(events, parts, offsets, 0.0))
        return [found.get(i, []) for i in range(len(events))]

    def names(
        self, events: Sequence[dict[str, Any]], partitions: Sequence[int] | None = None
    ) -> list[set[str]]:
        return [{d.detector for d in dets} for dets in self.batch(events, partitions)]

    def one(self, event: dict[str, Any], partition: int = 0) -> set[str]:
        return self.names([event], [partition])[0]


# --------------------------------------------------------------------------- configuration


def test_protocol_and_names() -> None:
    assert isinstance(AllDetectors(), Detectors)
    assert DETECTOR_NAMES == (
        "brute_force",
        "credential_stuffing",
        "impossible_travel",
        "new_device",
        "new_country",
    )


def test_default_thresholds_equal_the_producers_truth_rules() -> None:
    consumer = load_settings(ConsumerSettings)
    producer = load_settings(ProducerSettings)
    assert consumer.brute_force_failures == producer.truth_brute_force_failures
    assert consumer.brute_force_window_seconds == producer.truth_brute_force_window_s
    assert consumer.stuffing_accounts == producer.truth_stuffing_accounts
    assert consumer.stuffing_window_seconds == producer.truth_stuffing_window_s
    assert consumer.stuffing_prefix == producer.truth_stuffing_prefix
    assert consumer.travel_max_speed_kmh == producer.truth_travel_max_speed_kmh
    assert consumer.travel_min_distance_km == producer.truth_travel_min_distance_km
    config = consumer.detector_config()
    assert config == replace(DetectorConfig(), risks=config.risks)
    assert dict(config.risks) == DEFAULT_RISKS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all", DETECTOR_NAMES),
        ("", ()),
        ("none", ()),
        ("new_country, brute_force", ("brute_force", "new_country")),
    ],
)
def test_parse_detectors(text: str, expected: tuple[str, ...]) -> None:
    assert parse_detectors(text) == expected


def test_bad_detector_settings_fail_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTORS", "brute_force,telepathy")
    with pytest.raises(ConfigError, match=r"DETECTORS='brute_force,telepathy'.*telepathy"):
        load_settings(ConsumerSettings)
    monkeypatch.setenv("DETECTOR_RISKS", "new_device=x")
    monkeypatch.delenv("DETECTORS")
    with pytest.raises(ConfigError, match="DETECTOR_RISKS"):
        load_settings(ConsumerSettings)
    with pytest.raises(ValueError, match="telepathy"):
        parse_detectors("telepathy")
    with pytest.raises(ValueError, match="0-100"):
        parse_risks("brute_force=101")
    assert parse_risks("new_device=1")["new_device"] == 1


def test_build_detectors_follows_the_settings() -> None:
    assert isinstance(build_detectors(load_settings(ConsumerSettings, detectors="none")), NoDetectors)
    built = build_detectors(load_settings(ConsumerSettings, detectors="new_device", state_changelog=False))
    assert isinstance(built, UserDetectors)
    assert built.config.enabled == ("new_device",)
    assert built.source is None
    with_log = build_detectors(load_settings(ConsumerSettings, group_id="g1"))
    assert isinstance(with_log, UserDetectors)
    assert with_log.source is not None
    assert with_log.source.topic == "g1-detector-state"


@pytest.mark.parametrize(
    ("ip", "prefix", "network"),
    [
        ("203.0.113.7", 24, "203.0.113.0/24"),
        ("203.0.113.7", 32, "203.0.113.7/32"),
        ("2001:db8:1:2:3:4:5:6", 24, "2001:db8:1:2::/64"),
        ("not-an-address", 24, None),
        ("2001:db8::zz", 24, None),
    ],
)
def test_network_of(ip: str, prefix: int, network: str | None) -> None:
    assert network_of(ip, prefix) == network


# --------------------------------------------------------------------------- brute_force


@pytest.mark.parametrize(
    ("offsets", "expected", "config"),
    [
        # the k-th failure in (t - 300, t] and every later one
        ([0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 1, 1], {}),
        # spread over more than the window: never 5 at once
        ([0, 100, 200, 300, 400, 500], [0, 0, 0, 0, 0, 0], {}),
        # a failure exactly W seconds earlier is outside (t - W, t]
        ([0, 1, 2, 3, 300], [0, 0, 0, 0, 0], {}),
        ([0, 1, 2, 3, 299], [0, 0, 0, 0, 1], {}),
        # thresholds from config
        ([0, 10, 20], [0, 0, 1], {"brute_force_failures": 3}),
        ([0, 10, 20], [0, 0, 0], {"brute_force_failures": 3, "brute_force_window": 20}),
    ],
)
def test_brute_force_window_and_threshold(
    offsets: list[int], expected: list[int], config: dict[str, Any]
) -> None:
    feed = Feed(**config)
    got = feed.names([fail(ts=T0 + o) for o in offsets])
    assert [int("brute_force" in names) for names in got] == expected


def test_brute_force_is_per_account_and_ip_and_counts_failures_only() -> None:
    feed = Feed()
    events = [
        fail("u1", T0, ip="198.51.100.1"),
        fail("u1", T0 + 1, ip="198.51.100.2"),  # another IP
        fail("u2", T0 + 2, ip="198.51.100.1"),  # another account
        ev("u1", T0 + 3, ip="198.51.100.1"),  # a success
        fail("u1", T0 + 4, ip="198.51.100.1"),
        fail("u1", T0 + 5, ip="198.51.100.1"),
        fail("u1", T0 + 6, ip="198.51.100.1"),
        fail("u1", T0 + 7, ip="198.51.100.1"),
    ]
    got = feed.batch(events)
    assert [bool(d) and d[0].detector == "brute_force" for d in got] == [False] * 7 + [True]
    brute = got[-1][0]
    assert brute.evidence == ("5 failed logins for this account from 198.51.100.1 within 300s (threshold 5)",)
    assert brute.risk == DEFAULT_RISKS["brute_force"]


def test_batches_do_not_matter() -> None:
    events = [fail(ts=T0 + i) for i in range(8)]
    whole = Feed().names(events)
    feed = Feed()
    one_by_one = [feed.one(e) for e in events]
    assert whole == one_by_one


# --------------------------------------------------------------------------- credential_stuffing


def test_credential_stuffing_needs_m_distinct_accounts_in_the_window() -> None:
    feed = Feed()
    hits = []
    for n in range(12):  # 12 accounts from 4 hosts of one /24, 10 s apart; u0 tries twice
        hits.append(feed.one(fail(f"u{n}", T0 + 10 * n, ip=f"192.0.2.{n % 4 + 1}")))
    assert [("credential_stuffing" in h) for h in hits] == [False] * 9 + [True] * 3
    assert "credential_stuffing" in feed.one(fail("u0", T0 + 125, ip="192.0.2.99"))
    # a success from the network while it is hot is flagged (a stuffing hit), from another one it is not
    assert feed.one(ev("u5", T0 + 130, ip="192.0.2.50", device=None, country=None)) == {"credential_stuffing"}
    assert feed.one(ev("u5", T0 + 131, ip="192.0.3.50", device=None, country=None)) == set()
    # (20, 620]: u0 (again at 125) and u3..u11; (30, 630]: one fewer
    hit = feed.batch([ev("u6", T0 + 620, ip="192.0.2.60", device=None, country=None)])[0]
    assert hit[0].evidence[0].startswith("10 accounts failed to log in from 192.0.2.0/24 within 600s")
    assert feed.one(ev("u6", T0 + 630, ip="192.0.2.60", device=None, country=None)) == set()


def test_credential_stuffing_repeated_account_counts_once_and_evidence() -> None:
    feed = Feed()
    for i in range(20):
        assert feed.one(fail("same", T0 + i, ip=f"192.0.2.{i}")) <= {"brute_force"}
    dets = feed.batch([fail(f"acc{n}", T0 + 30 + n, ip="192.0.2.200") for n in range(9)])
    last = next(d for d in dets[-1] if d.detector == "credential_stuffing")
    assert last.evidence == ("10 accounts failed to log in from 192.0.2.0/24 within 600s (threshold 10)",)


def test_credential_stuffing_prefix_32_separates_hosts() -> None:
    feed = Feed(stuffing_prefix=32)
    got = feed.names([fail(f"u{n}", T0 + n, ip=f"192.0.2.{n % 4}") for n in range(20)])
    assert all("credential_stuffing" not in names for names in got)
    feed = Feed(stuffing_prefix=32, stuffing_accounts=5)
    got = feed.names([fail(f"u{n}", T0 + n, ip="192.0.2.1") for n in range(5)])
    assert "credential_stuffing" in got[-1]


def test_credential_stuffing_sees_every_partition() -> None:
    feed = Feed()
    events = [fail(f"u{n}", T0 + n, ip="192.0.2.1") for n in range(10)]
    got = feed.names(events, partitions=[n % 3 for n in range(10)])
    assert "credential_stuffing" in got[-1]


# --------------------------------------------------------------------------- impossible_travel


def km(a: str, b: str) -> float:
    return great_circle_km(COUNTRY_POINTS[a], COUNTRY_POINTS[b])


@pytest.mark.parametrize(
    ("first", "second", "seconds", "flagged"),
    [
        ("US", "FR", 600, True),  # 6,200 km in 10 minutes
        ("US", "FR", 20 * 3600, False),  # 310 km/h
        ("US", "FR", int(km("US", "FR") / 1000 * 3600) - 60, True),  # just above 1,000 km/h
        ("US", "FR", int(km("US", "FR") / 1000 * 3600) + 60, False),  # just below
        ("BE", "NL", 60, False),  # 170 km: under the minimum distance, however fast
        ("DE", "PL", 60, True),  # 520 km in a minute
        ("US", "JP", 0, True),  # the same second: instantly
        ("US", "US", 0, False),
        ("US", "XX", 0, False),  # a country without a reference point
    ],
)
def test_impossible_travel(first: str, second: str, seconds: int, flagged: bool) -> None:
    feed = Feed()
    assert feed.one(ev(ts=T0, country=first)) == set()
    got = feed.batch([ev(ts=T0 + seconds, country=second)])[0]
    travel = [d for d in got if d.detector == "impossible_travel"]
    assert bool(travel) is flagged
    if travel:
        assert f"{first} -> {second}: {km(first, second):.0f} km in {seconds}s" in travel[0].evidence[0]
        assert "km/h" in travel[0].evidence[0] if seconds else "at once" in travel[0].evidence[0]


def test_failures_do_not_move_a_user_and_unknown_places_are_skipped() -> None:
    feed = Feed(enabled=("impossible_travel",))
    assert feed.names(
        [
            ev(ts=T0, country="US"),
            fail(ts=T0 + 60, country="JP"),  # an attacker's failure abroad proves nothing
            ev(ts=T0 + 120, country="US"),
            ev(ts=T0 + 180, country=None),  # no geolocation: no distance, the last place stays
            ev(ts=T0 + 240, country="JP"),
        ]
    ) == [set(), set(), set(), set(), {"impossible_travel"}]


# --------------------------------------------------------------------------- new_device, new_country


def test_new_device_and_new_country_need_an_earlier_success() -> None:
    feed = Feed()
    events = [
        fail(ts=T0, device="999-99-9999", country="RU"),  # failures make nothing known
        ev(ts=T0 + 10, device="111-11-1111", country="US"),  # the first success: nothing to compare
        ev(ts=T0 + 20, device="222-22-2222", country="US"),
        ev(ts=T0 + 30, device="222-22-2222", country="US"),
        ev(ts=T0 + 40, device="999-99-9999", country="US"),
        ev(ts=T0 + 50 + 86_400, device="111-11-1111", country="GB"),
        ev(ts=T0 + 60 + 86_400, device=None, country="GB"),  # no device id: no new_device
    ]
    assert feed.names(events) == [set(), set(), {"new_device"}, set(), {"new_device"}, {"new_country"}, set()]


def test_takeover_success_is_new_device_new_country_and_travel() -> None:
    feed = Feed()
    feed.one(ev(ts=T0, device="111-11-1111", country="US"))
    dets = feed.batch([ev(ts=T0 + 3600, device="666-66-6666", country="RU")])[0]
    assert [d.detector for d in dets] == ["new_device", "new_country", "impossible_travel"]
    assert dets[0].evidence == ("device 666-66-6666 is not among the account's 1 known device(s)",)
    assert dets[1].evidence == ("country RU is new for the account (known: US)",)
    assert sum(d.risk for d in dets) == 15 + 20 + 50


def test_detectors_can_be_switched_off() -> None:
    feed = Feed(enabled=("new_country",))
    feed.one(ev(ts=T0, device="a", country="US"))
    assert feed.one(ev(ts=T0 + 60, device="b", country="RU")) == {"new_country"}
    assert feed.one(ev(ts=T0 + 120, device="b", country="RU")) == set()  # b was recorded all the same


# --------------------------------------------------------------------------- late and out-of-order events


def test_out_of_order_within_grace_updates_the_windows() -> None:
    feed = Feed()
    times = [100, 110, 105, 120, 101]  # 105 and 101 arrive out of order, within the 300 s grace
    got = feed.names([fail(ts=T0 + t) for t in times])
    # each is counted in its own window (t - 300, t]: the one at 101 sees 100 and 101 only
    assert [("brute_force" in n) for n in got] == [False] * 5
    dets = feed.batch([fail(ts=T0 + 121)])[0]
    assert dets[0].evidence[0].startswith("6 failed logins")  # all five were applied


def test_late_events_are_scored_flagged_and_change_nothing() -> None:
    feed = Feed(grace=60)
    feed.one(ev("u1", T0, device="a", country="US"))
    feed.one(ev("u2", T0 + 1000, device="z", country="US"))  # the partition's watermark: T0 + 1000
    # a success from a new device 940 s behind: flagged as new_device, marked late, not recorded
    dets = feed.batch([ev("u1", T0 + 60, device="b", country="US")])[0]
    assert [d.detector for d in dets] == ["new_device"]
    assert dets[0].evidence[1] == "late: 940s behind the watermark (grace 60s); state not updated"
    assert feed.one(ev("u1", T0 + 1001, device="b", country="US")) == {"new_device"}
    # a late failure is counted for its own score (with the failures of its window) but not kept
    feed.names([fail("u3", T0 + 1002 + n) for n in range(4)])
    feed.one(ev("u2", T0 + 1100, device="z", country="US"))  # watermark: T0 + 1100
    late = feed.batch([fail("u3", T0 + 1010)])[0]
    assert [d.detector for d in late] == ["brute_force"]
    assert late[0].evidence == (
        "5 failed logins for this account from 203.0.113.7 within 300s (threshold 5)",
        "late: 90s behind the watermark (grace 60s); state not updated",
    )
    on_time = feed.batch([fail("u3", T0 + 1101)])[0]
    assert on_time[0].evidence[0].startswith("5 failed logins")  # not 6: the late one was not kept
    assert feed.detectors.users.late_events == 2


def test_watermarks_are_per_partition() -> None:
    feed = Feed(grace=60)
    feed.one(ev("u1", T0 + 10_000), partition=0)
    assert feed.names([ev("u2", T0, device="a"), ev("u2", T0 + 10, device="b")], [1, 1]) == [
        set(),
        {"new_device"},
    ]
    assert feed.detectors.users.late_events == 0


def test_out_of_order_success_is_compared_with_the_latest_success() -> None:
    feed = Feed()
    feed.one(ev(ts=T0 + 600, country="US"))
    assert feed.one(ev(ts=T0 + 300, country="FR")) == {"new_country", "impossible_travel"}
    # the latest success is still the one at T0 + 600 in the US
    assert "impossible_travel" not in feed.one(ev(ts=T0 + 700, country="US"))


# --------------------------------------------------------------------------- bounds


def test_user_history_expires_after_its_ttl() -> None:
    """(to one generation: ttl / 8)"""
    feed = Feed(user_ttl=3600)
    feed.one(ev("u1", T0, device="a"))
    assert feed.detectors.state_sizes()["user_history"] == 1
    feed.one(ev("u2", T0 + 3600 + 450, device="a"))  # the watermark passes u1's TTL and generation
    sizes = feed.detectors.state_sizes()
    assert sizes["user_history"] == 1  # u1 went; u2 came
    assert feed.one(ev("u1", T0 + 3602, device="b")) == set()  # a first success again


def test_max_entries_evict_the_least_recently_active() -> None:
    """(users: to one generation, ttl / 8: here 100 s)"""
    feed = Feed(max_users=3, max_failure_keys=2, max_networks=2, user_ttl=800)
    feed.names([ev(f"u{n}", T0 - 500 + 100 * n, device="a") for n in range(5)])
    feed.names([fail(f"v{n}", T0 + 10 + n, ip=f"10.{n}.0.1") for n in range(5)])
    assert feed.detectors.state_sizes() == {"user_history": 3, "user_ip_failures": 2, "network_failures": 2}
    assert feed.one(ev("u0", T0 + 20, device="b")) == set()  # u0 was evicted: no history
    assert feed.one(ev("u4", T0 + 21, device="b")) == {"new_device"}  # u4 kept


def test_windows_expire_after_window_plus_grace() -> None:
    feed = Feed(grace=0)
    feed.names([fail(f"u{n}", T0 + n, ip="192.0.2.1") for n in range(10)])
    sizes = feed.detectors.state_sizes()
    assert sizes["user_ip_failures"] == 10
    assert sizes["network_failures"] == 1
    feed.one(ev("x", T0 + 10 + 600))
    assert feed.detectors.state_sizes() == {"user_history": 1, "user_ip_failures": 0, "network_failures": 0}


def test_state_is_bounded_under_a_long_attack() -> None:
    feed = Feed()
    for burst in range(20):
        feed.batch([fail(f"x{burst}-{n}", T0 + burst * 100 + n // 10, ip="192.0.2.1") for n in range(500)])
    window = feed.detectors.networks.state.partition(0).networks["192.0.2.0/24"]
    assert len(window.live) + len(window.grace) <= 500 * 9 + 500  # accounts of the last 900 s
    assert feed.detectors.state_sizes()["user_ip_failures"] <= 100_000


def test_out_of_order_failures_stay_bounded() -> None:
    feed = Feed()
    for rounds in range(5):  # the same 600 failures again and again, all within the grace period
        feed.names([fail(ts=T0 + n // 3) for n in range(600)])
        del rounds
    entry = next(iter(feed.detectors.users.state.partitions[0].failures.values()))
    assert len(entry.live) <= 256
    assert len(entry.grace) <= 256


def test_a_late_success_scores_alike_before_and_after_a_restore() -> None:
    """*hot* is not in the changelog: a restore marks every network hot. A late success was gated on it, so
    the same success was flagged by the partition's new owner and not by its old one (a late success on a
    network a later success had cooled)."""
    net = "192.0.2.0/24"

    def burst() -> list[NetEvent]:
        wave = [NetEvent(0, 0, n, net, f"u{n}", T0 + n, True) for n in range(10)]  # 10 accounts: hot
        cooled = NetEvent(0, 0, 10, net, "x", T0 + 700, False)  # in order, window empty: not hot
        ahead = NetEvent(0, 1, 0, "198.51.100.0/24", "y", T0 + 700, False)  # source 1's clock at T0+700
        return [*wave, cooled, ahead]

    late = NetEvent(0, 1, 1, net, "z", T0 + 9, False)  # 691 s behind source 1: late; its window has 10
    live = NetworkDetector()
    live.detect(burst())
    records = [(key, value) for _, key, value in live.state.changes()]
    restored = NetworkDetector()
    restored.state.restore(0, records)
    verdicts = [d.detect([late]).get(0) for d in (live, restored)]
    assert [v is not None for v in verdicts] == [True, True]
    assert verdicts[0] == verdicts[1]
    assert verdicts[0] is not None
    assert verdicts[0].evidence[1].startswith("late: 691s behind")
