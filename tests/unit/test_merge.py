"""The network stage's source merge: event-time order across the sources of one repartition partition."""

from __future__ import annotations

import math
import random

from login_consumer.stages.merge import SourceMerge


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
