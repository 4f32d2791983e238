"""login_bench/traffic.py: workload H has the shape the bench promises, and the consumer accepts it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import jsonschema
import orjson

from login_common.contract import schema
from login_consumer.validate import Invalid, Validator

ROOT = Path(__file__).resolve().parents[2]
END = 1_800_000_000
COUNT = 10_000


from login_bench import traffic  # noqa: E402

RECORDS = list(traffic.h_workload(COUNT, end=END, seed=3))
EVENTS = [orjson.loads(value) for _, value in RECORDS]
GENERATOR_FIELDS = {"user_id", "app_version", "ip", "locale", "device_id", "timestamp", "device_type"}


def test_count_and_determinism() -> None:
    assert len(RECORDS) == COUNT
    again = list(traffic.h_workload(1_000, end=END, seed=3))
    assert again == list(traffic.h_workload(1_000, end=END, seed=3))
    assert again != list(traffic.h_workload(1_000, end=END, seed=4))


def test_every_event_has_a_fresh_user_and_device_and_an_ipv4() -> None:
    assert len({e["user_id"] for e in EVENTS}) == COUNT
    assert len({e["device_id"] for e in EVENTS}) == COUNT
    assert all(
        len(e["device_id"]) == 11 and e["device_id"][3] == "-" and e["device_id"][6] == "-" for e in EVENTS
    )
    ips = [e["ip"] for e in EVENTS]
    assert all(len(ip.split(".")) == 4 and all(0 <= int(o) <= 255 for o in ip.split(".")) for ip in ips)
    assert len(set(ips)) > COUNT * 0.99  # random over the whole range: next to no repeats
    assert {ip.split(".")[0] for ip in ips} >= {"0", "10", "127", "192", "224", "255"}  # reserved ones too
    assert all(key == e["user_id"].encode() for (key, _), e in zip(RECORDS, EVENTS, strict=True))


def test_device_ids_stay_distinct_far_past_the_birthday_bound() -> None:
    # 100,000 random ids of 10**9 would collide ~5 times; these never do
    ids = {traffic.device_id(i, 123_456) for i in range(100_000)}
    assert len(ids) == 100_000


def test_generator_format_with_its_quirks() -> None:
    assert all(set(e) <= GENERATOR_FIELDS for e in EVENTS)
    missing = sum("device_type" not in e for e in EVENTS) / COUNT
    assert 0.04 <= missing <= 0.06
    kinds = Counter(type(e["timestamp"]).__name__ for e in EVENTS)
    assert kinds["int"] > COUNT * 0.4
    assert kinds["str"] > COUNT * 0.4
    assert all(str(e["timestamp"]).isdigit() for e in EVENTS)
    types = {e.get("device_type") for e in EVENTS} - {None}
    assert {"android", "Android", "iOS", "ios"} <= types  # mixed case
    states = sum(e["locale"] in traffic.US_STATES for e in EVENTS) / COUNT
    assert 0.85 <= states <= 0.95


def test_event_time_has_bursts_and_out_of_order_and_late_events() -> None:
    times = [int(e["timestamp"]) for e in EVENTS]
    assert max(times) <= END
    high = times[0]
    behind = []
    for t in times:
        if t < high:
            behind.append(high - t)
        high = max(high, t)
    late = sum(b > 300 for b in behind) / COUNT  # past the detectors' 5-minute grace period
    disordered = sum(b <= 60 for b in behind) / COUNT
    assert 0.002 <= late <= 0.01
    assert 0.01 <= disordered <= 0.03
    per_second = Counter(times)
    busiest = max(per_second.values())
    typical = sorted(per_second.values())[len(per_second) // 2]
    assert busiest >= 8 * typical  # bursts


def test_every_event_is_valid_for_the_contract_and_the_consumer() -> None:
    contract = schema()
    validator = jsonschema.validators.validator_for(contract)(contract)
    check = Validator()  # the consumer's defaults: up to 30 days old, 5 minutes ahead
    low, high = check.window(END + 10)
    for (_, value), event in zip(RECORDS[:1_000], EVENTS[:1_000], strict=True):
        assert not list(validator.iter_errors(event)), event
        assert not isinstance(check.check(value, low, high), Invalid), event
