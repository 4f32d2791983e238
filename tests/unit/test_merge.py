"""The network stage's source merge: event-time order across the sources of one repartition partition."""

from __future__ import annotations

import math
import random

from login_consumer.detectors.networks import NetEvent, NetworkDetector
from login_consumer.stages.merge import LAST_OF_SECOND, SourceMerge
from login_consumer.stages.network import read_progress
from login_consumer.stages.user import PROGRESS_CREATED_HEADER, PROGRESS_HEADER
from login_consumer.stores.networks import NOTHING_RELEASED


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_events_wait_for_every_source_then_go_in_event_time_order() -> None:
    clock = Clock()
    merge: SourceMerge[str] = SourceMerge(3, clock=clock)
    merge.add(0, 100, 0, "a100")
    merge.add(0, 130, 1, "a130")
    merge.add(1, 110, 2, "b110")
    assert merge.release() == []  # source 2 has said nothing yet
    merge.progress(2, 120, idle=False)
    assert merge.release() == ["a100", "b110"]  # a130 is after source 2's bound; b's queue emptied at 110
    merge.progress(1, 140, idle=False)
    merge.progress(2, 150, idle=False)
    assert merge.release() == ["a130"]
    assert merge.first_held() is None


def test_idle_sources_do_not_hold_back_and_silent_ones_stop_after_max_wait() -> None:
    clock = Clock()
    merge: SourceMerge[str] = SourceMerge(2, max_wait=2.0, clock=clock)
    merge.progress(1, -math.inf, idle=True)
    merge.add(0, 5, 0, "x")
    assert merge.release() == ["x"]
    merge.progress(1, 10, idle=False)  # busy again, at 10
    merge.add(0, 20, 1, "y")
    assert merge.release() == []
    clock.now = 1.0
    merge.progress(1, 10, idle=False)  # talking, but not moving on: counts as silent
    clock.now = 2.5  # source 1 has not moved on for longer than max_wait
    assert merge.release() == ["y"]
    assert merge.timeouts == 1


def test_held_offsets_bound_the_commit_and_keep_each_sources_order() -> None:
    clock = Clock()
    merge: SourceMerge[int] = SourceMerge(2, clock=clock)
    merge.add(0, 50, 10, 10)
    merge.add(1, 40, 11, 11)
    merge.add(0, 45, 12, 12)  # out of order within source 0: stays behind offset 10
    assert merge.first_held() == 10
    merge.progress(1, 60, idle=False)
    assert merge.release() == [11, 10, 12]
    assert merge.first_held() is None


def test_too_many_held_events_release_the_oldest() -> None:
    merge: SourceMerge[int] = SourceMerge(2, max_buffered=10, clock=Clock())
    for n in range(11):
        merge.add(0, n, n, n)
    out = merge.release()
    assert out == list(range(6))  # down to half of max_buffered
    assert merge.forced == 6
    assert merge.buffered == 5


def test_a_random_interleaving_of_six_sources_comes_out_sorted() -> None:
    rng = random.Random(3)
    merge: SourceMerge[float] = SourceMerge(6, clock=Clock())
    streams = {s: sorted(rng.uniform(0, 1000) for _ in range(500)) for s in range(6)}
    position = dict.fromkeys(streams, 0)
    offset = 0
    out: list[float] = []
    while any(position[s] < len(streams[s]) for s in streams):
        s = rng.choice([s for s in streams if position[s] < len(streams[s])])
        for _ in range(rng.randint(1, 20)):
            if position[s] == len(streams[s]):
                break
            ts = streams[s][position[s]]
            merge.add(s, ts, offset, ts)
            offset += 1
            position[s] += 1
        merge.progress(s, streams[s][position[s] - 1], idle=position[s] == len(streams[s]))
        out.extend(merge.release())
    assert out == sorted(out)
    assert len(out) == 3000
    assert merge.first_held() is None


def _arrive(streams: dict[int, list[tuple[int, int]]], seed: int) -> list[tuple[int, int, int]]:
    """Feed the sources' events in a random interleaving (seed), each batch followed by its source's
    progress record with the create time of its last event, as the user stage writes them; what comes out."""
    rng = random.Random(seed)
    merge: SourceMerge[tuple[int, int, int]] = SourceMerge(len(streams), clock=Clock())
    position = dict.fromkeys(streams, 0)
    offset = 0
    out: list[tuple[int, int, int]] = []
    while any(position[s] < len(streams[s]) for s in streams):
        s = rng.choice([s for s in streams if position[s] < len(streams[s])])
        for _ in range(rng.randint(1, 15)):
            if position[s] == len(streams[s]):
                break
            ts, created = streams[s][position[s]]
            merge.add(s, ts, offset, (ts, created, s), created)
            offset += 1
            position[s] += 1
        ts, created = streams[s][position[s] - 1]
        merge.progress(s, ts, idle=position[s] == len(streams[s]), created=created)
        out.extend(merge.release())
    return out


def test_events_of_one_second_come_out_in_the_same_order_whatever_the_arrival() -> None:
    """Event times are whole seconds: the order within one is (create time, source), the same for every
    interleaving of the sources (one process, or several writing at their own pace)."""
    rng = random.Random(11)
    streams = {
        s: sorted((rng.randint(0, 20), rng.randint(0, 50)) for _ in range(300)) for s in range(6)
    }  # 1,800 events in 21 seconds and 51 create milliseconds: ties everywhere
    runs = [_arrive(streams, seed) for seed in range(5)]
    assert all(run == runs[0] for run in runs[1:])
    assert runs[0] == sorted(runs[0])  # (event time, create ms, source)
    assert len(runs[0]) == 1800


def test_a_progress_record_without_a_create_time_bounds_its_whole_second() -> None:
    """An older user stage's progress record (no create-time header): its second is done."""
    old: SourceMerge[str] = SourceMerge(2, clock=Clock())
    old.progress(1, 100, idle=False)
    old.add(0, 100, 0, "a", created=5_000)
    assert old.release() == ["a"]
    new: SourceMerge[str] = SourceMerge(2, clock=Clock())
    new.progress(1, 100, idle=False, created=5_500)  # a newer one says where in the second it is
    new.add(0, 100, 0, "a", created=5_000)
    new.add(0, 100, 1, "b", created=6_000)
    assert new.release() == ["a"]  # b waits: source 1 may still write an event of 100 s created before it
    new.progress(1, 101, idle=False, created=0)
    assert new.release() == ["b"]


def test_progress_records_carry_the_create_time_in_a_header_an_older_reader_ignores() -> None:
    new = [(PROGRESS_HEADER, b"3 1700000000 0"), (PROGRESS_CREATED_HEADER, b"1700000000123")]
    assert read_progress(new) == (3, 1700000000.0, 1700000000123, False)
    # what an older network stage reads: the first header's three fields, unchanged
    assert new[0][1].split(b" ") == [b"3", b"1700000000", b"0"]
    # what an older user stage wrote: its whole second
    assert read_progress([(PROGRESS_HEADER, b"3 1700000000 1")]) == (3, 1700000000.0, LAST_OF_SECOND, True)
    assert read_progress([("x-other", b"1")]) is None


def test_an_event_arriving_behind_a_released_one_is_counted_late() -> None:
    """Idle is a claim about the broker: a source read to its end can still be written an event created
    before ones another source delivered (its producer batch arrived later). The merge cannot wait for
    what it cannot know of, but it sees the event arrive behind what it released and counts it."""
    merge: SourceMerge[str] = SourceMerge(2, clock=Clock())
    merge.progress(1, 90, idle=True, created=900)  # source 1: read to its end
    merge.add(0, 100, 0, "a100", created=1_000)
    assert merge.release() == ["a100"]
    assert merge.top == (100, 1_000, 0)
    merge.add(1, 100, 1, "b100-earlier", created=999)  # created before a100, on its way meanwhile
    merge.add(1, 100, 2, "b100-later", created=1_001)  # after a100: in order
    assert merge.late == 1
    merge.progress(0, 100, idle=True, created=1_000)
    assert merge.release() == ["b100-earlier", "b100-later"]
    assert merge.late == 1
    assert merge.timeouts == merge.forced == 0  # neither of the other causes saw it


def test_what_was_released_survives_a_handover_through_the_changelog() -> None:
    """The partition's next owner restores the released key from the network changelog and counts an event
    arriving behind it, as the previous owner would have."""
    detector = NetworkDetector()
    merge: SourceMerge[str] = SourceMerge(2, clock=Clock(), top=detector.released(3))
    merge.progress(1, 90, idle=True)
    merge.add(0, 100, 7, "a", created=1_000)
    assert merge.release() == ["a"]
    detector.mark_released(3, merge.top)
    detector.detect([NetEvent(3, 0, 7, "192.0.2.0/24", "u1", 100, True)])
    records = [(key, value) for p, key, value in detector.state.changes() if p == 3]

    successor = NetworkDetector()
    successor.state.restore(3, records)
    assert successor.released(3) == (100, 1_000, 0)
    assert successor.state.partition(3).processed == {0: 7}
    handed: SourceMerge[str] = SourceMerge(2, clock=Clock(), top=successor.released(3))
    handed.progress(0, 100, idle=True, created=1_000)
    handed.add(1, 99, 9, "b", created=990)
    assert handed.late == 1
    assert handed.release() == ["b"]
    fresh = NetworkDetector()
    fresh.state.restore(3, [(k, v) for k, v in records if k != b"W"])  # an older version's changelog
    assert fresh.released(3) == NOTHING_RELEASED
