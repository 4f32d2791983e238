"""Event-time alignment: released in event-time order, never ahead of a partition that is behind."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest
from confluent_kafka import Message

from login_consumer.intake.align import Aligner, event_time

TOPIC = "user-login"


def msg(partition: int, offset: int, ts: object) -> Message:
    value = b"not json" if ts is None else orjson.dumps({"user_id": "u", "timestamp": ts, "ip": "1.2.3.4"})
    return Message(topic=TOPIC, partition=partition, offset=offset, value=value)


def stamps(messages: Sequence[Message]) -> list[tuple[int, int]]:
    return [(m.partition() or 0, m.offset() or 0) for m in messages]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


ASSIGNED = [(TOPIC, 0), (TOPIC, 1)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"timestamp": 17}', 17.0),
        (b'{"a": [1, {"b": 2}], "timestamp": "1700000000"}', 1_700_000_000.0),
        (b'{"timestamp": 1.5}', 1.5),
        (b'{"timestamp": true}', None),
        (b'{"timestamp": "soon"}', None),
        (b'{"user_id": "u"}', None),
        (b"[1, 2]", None),
        (b"\xff", None),
        (b"", None),
        (None, None),
    ],
)
def test_event_time(value: bytes | None, expected: float | None) -> None:
    assert event_time(value) == expected


def test_releases_in_event_time_order_up_to_the_slowest_partition() -> None:
    aligner = Aligner()
    at_end = {(TOPIC, 0): False, (TOPIC, 1): False}
    aligner.add([msg(0, 0, 10), msg(0, 1, 50), msg(0, 2, 90)])
    aligner.add([msg(1, 0, 20), msg(1, 1, 30)])
    # partition 1 may still deliver something at 30 or later: nothing after 30 goes yet
    assert stamps(aligner.release(ASSIGNED, at_end.__getitem__)) == [(0, 0), (1, 0), (1, 1)]
    aligner.add([msg(1, 2, 60), msg(1, 3, 95)])
    assert stamps(aligner.release(ASSIGNED, at_end.__getitem__)) == [(0, 1), (1, 2), (0, 2)]
    at_end[(TOPIC, 1)] = True  # partition 0 may still deliver something at 90 or later
    assert aligner.release(ASSIGNED, at_end.__getitem__) == []
    at_end[(TOPIC, 0)] = True  # nothing more anywhere: everything goes
    assert stamps(aligner.release(ASSIGNED, at_end.__getitem__)) == [(1, 3)]
    assert aligner.buffered == 0


def test_partitions_at_their_end_hold_nothing_back() -> None:
    aligner = Aligner()
    aligner.add([msg(0, 0, 100), msg(1, 0, 5)])
    assert stamps(aligner.release(ASSIGNED, lambda tp: True)) == [(1, 0), (0, 0)]


def test_a_partition_never_heard_from_holds_back_until_max_wait() -> None:
    clock = Clock()
    aligner = Aligner(max_wait=2.0, clock=clock)
    aligner.add([msg(0, 0, 10)])
    assert aligner.release(ASSIGNED, lambda tp: False) == []
    clock.now = 1.5
    assert aligner.release(ASSIGNED, lambda tp: False) == []
    clock.now = 2.5
    assert stamps(aligner.release(ASSIGNED, lambda tp: False)) == [(0, 0)]
    assert aligner.timeouts == 1


def test_partition_order_is_kept_whatever_the_timestamps() -> None:
    aligner = Aligner()
    aligner.add([msg(0, 0, 50), msg(0, 1, 10), msg(0, 2, None), msg(0, 3, 60)])
    aligner.add([msg(1, 0, 20), msg(1, 1, 55)])
    released = stamps(aligner.release(ASSIGNED, lambda tp: True))
    assert [o for p, o in released if p == 0] == [0, 1, 2, 3]
    assert released == [(1, 0), (0, 0), (0, 1), (0, 2), (1, 1), (0, 3)]


def test_too_many_held_releases_the_oldest() -> None:
    aligner = Aligner(max_buffered=4)
    aligner.add([msg(0, n, 100 + n) for n in range(6)])
    released = aligner.release(ASSIGNED, lambda tp: tp == (TOPIC, 0))  # partition 1: silent, not at end
    assert stamps(released) == [(0, n) for n in range(4)]
    assert aligner.buffered == 2
    assert aligner.forced == 4
    assert aligner.crowded([(TOPIC, 0), (TOPIC, 1)]) == []
    aligner.add([msg(0, 6, 106), msg(0, 7, 107)])
    assert aligner.crowded([(TOPIC, 0), (TOPIC, 1)]) == [(TOPIC, 0)]


def test_drop_forgets_a_partition() -> None:
    aligner = Aligner()
    aligner.add([msg(0, 0, 10), msg(1, 0, 20)])
    aligner.drop([(TOPIC, 0)])
    assert aligner.buffered == 1
    assert aligner.holding((TOPIC, 0)) == 0
    assert stamps(aligner.release([(TOPIC, 1)], lambda tp: True)) == [(1, 0)]
    assert aligner.snapshot() == {"buffered": 0, "forced": 0, "timeouts": 0}


def test_waiting_does_not_count_while_the_client_is_busy() -> None:
    clock = Clock()
    aligner = Aligner(max_wait=2.0, clock=clock)
    aligner.add([msg(0, 0, 10)])
    clock.now = 5.0
    assert aligner.release(ASSIGNED, lambda tp: False, busy=True) == []  # partition 1 is queued behind
    clock.now = 6.0
    assert aligner.release(ASSIGNED, lambda tp: False) == []
    clock.now = 7.5
    assert stamps(aligner.release(ASSIGNED, lambda tp: False)) == [(0, 0)]


def test_a_release_is_at_most_a_batch_and_the_rest_stays_in_order() -> None:
    aligner = Aligner()
    aligner.add([msg(0, n, 10 + 2 * n) for n in range(5)])
    aligner.add([msg(1, n, 11 + 2 * n) for n in range(5)])
    first = aligner.release(ASSIGNED, lambda tp: True, limit=4)
    assert stamps(first) == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert aligner.ready
    assert aligner.buffered == 6
    rest = aligner.release(ASSIGNED, lambda tp: True, limit=100)
    assert stamps(rest) == [(0, 2), (1, 2), (0, 3), (1, 3), (0, 4), (1, 4)]
    assert not aligner.ready
