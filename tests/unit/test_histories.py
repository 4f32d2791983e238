"""The compact user-history store: record round trip, legacy records, bounds, O(1) per operation."""

from __future__ import annotations

import orjson
import pytest

from login_consumer.stores import histories as h

TTL = 8 * 1_000  # generation width 1,000 s


def test_record_round_trip() -> None:
    devices = [h.device_key("dev-a"), h.device_key("dev-b")]
    record = h.pack(1_700_000_000, "GB", devices, ["GB", "FR"])
    assert h.unpack(record) == (1_700_000_000, "GB", devices, ["GB", "FR"])
    assert len(record) == h.HEAD_SIZE + 2 * 8 + 2 * 2
    assert h.last_ts_of(record) == 1_700_000_000
    assert h.last_country_of(record) == b"GB"
    assert h.unpack(h.pack(5, None, [], [])) == (5, None, [], [])


def test_record_queries() -> None:
    record = h.pack(10, "FR", [h.device_key("a"), h.device_key("b")], ["FR", "DE"])
    assert h.has_device(record, h.device_key("a"))
    assert h.has_device(record, h.device_key("b"))
    assert not h.has_device(record, h.device_key("c"))
    assert h.has_country(record, b"DE")
    assert not h.has_country(record, b"RF")  # spans two codes ("FR" + "DE" holds "RD", not aligned)
    assert not h.has_country(record, b"RD")
    moved = h.with_last_ts(record, 99)
    assert h.unpack(moved) == (99, "FR", [h.device_key("a"), h.device_key("b")], ["FR", "DE"])


def test_device_match_must_be_aligned() -> None:
    """A device key found across two stored keys is not a match."""
    one, two = b"\x01" * 8, b"\x02" * 8
    record = h.pack(1, None, [one, two], [])
    assert not h.has_device(record, b"\x01" * 4 + b"\x02" * 4)
    assert h.has_device(record, two)


@pytest.mark.parametrize(
    "bad", [b"", b"\x01" + bytes(7), h.pack(1, None, [b"x" * 8], [])[:-1], b"\x02" + bytes(6)]
)
def test_unpack_rejects_what_is_not_a_record(bad: bytes) -> None:
    with pytest.raises(ValueError, match="record"):
        h.unpack(bad)


def test_keys_are_stable_and_compact() -> None:
    assert h.user_key("user-1") == h.user_key("user-1")
    assert h.user_key("user-1") != h.user_key("user-2")
    assert h.user_key("user-1") < 1 << 60
    assert h.key_of(h.changelog_key(h.user_key("user-1"))) == h.user_key("user-1")
    with pytest.raises(ValueError, match="key"):
        h.key_of(b"Huser-1")


def test_legacy_record_converts() -> None:
    """A record of the previous format (H<user> -> JSON) becomes the same history in this one."""
    value = orjson.loads(orjson.dumps([1_700_000_000, "GB", ["dev-a", "dev-b"], ["GB", "US"]]))
    key, record = h.from_legacy("user-1", value)
    assert key == h.user_key("user-1")
    assert h.unpack(record) == (
        1_700_000_000,
        "GB",
        [h.device_key("dev-a"), h.device_key("dev-b")],
        ["GB", "US"],
    )
    with pytest.raises(ValueError, match="lists"):
        h.from_legacy("u", [1, None, "dev", []])


def test_store_get_put_and_moves() -> None:
    store = h.HistoryStore(TTL)
    store.put(1, b"a", 100)
    store.put(2, b"b", 1_500)
    store.put(1, b"a2", 2_500)  # moves to the newest generation
    assert len(store) == 2
    assert store.get(1) == b"a2"
    assert store.get(2) == b"b"
    assert store.get(3) is None
    assert sorted(store.items()) == [(1, b"a2"), (2, b"b")]


def test_store_expires_whole_generations_by_event_time() -> None:
    store = h.HistoryStore(TTL)
    for key in range(10):
        store.put(key, b"x", key * 500)  # generations 0..4
    assert list(store.expire(1_000)) == [0, 1]  # generation 0 ends at 1,000
    assert list(store.expire(1_999)) == []
    assert sorted(store.expire(3_000)) == [2, 3, 4, 5]
    assert len(store) == 4
    assert store.get(1) is None
    assert store.get(9) == b"x"


def test_store_evicts_the_oldest_generation_first() -> None:
    store = h.HistoryStore(TTL)
    for key in range(6):
        store.put(key, b"x", key * 1_000)
    store.put(0, b"y", 6_000)  # updated: now the newest
    assert list(store.evict(2)) == [1, 2]
    assert len(store) == 4
    assert store.get(0) == b"y"


def test_store_operations_are_constant_in_dict_work() -> None:
    """Dict probes per operation (counted by the key class) do not grow with the number of users."""

    class Key(int):
        calls = 0

        def __hash__(self) -> int:
            Key.calls += 1
            return int.__hash__(self)

        def __eq__(self, other: object) -> bool:
            Key.calls += 1
            return int.__eq__(self, other)

    per_op = []
    for users in (1_000, 50_000):
        store = h.HistoryStore(TTL)
        Key.calls = 0
        for n in range(users):
            key = Key(n)
            store.get(key)
            store.put(key, b"r", n * TTL // users)  # spread over all generations
        for n in range(0, users, 2):
            store.get(Key(n))
        evicted = sum(1 for _ in store.evict(users // 2))
        evicted += sum(1 for _ in store.expire(10 * TTL))
        assert evicted == users
        per_op.append(Key.calls / users)
    # get and put try at most every generation: a constant, whatever the number of users
    assert per_op[1] <= per_op[0] * 1.2 + 1, per_op
    assert per_op[1] <= 4 * (h.GENERATIONS + 2), per_op
