"""delivery/progress.py: what an interval processed, its commit limits, and where a rewind goes back to.

The rewind of a failed interval must reach every record whose output was in it: also the records the
network stage's merges held across the previous commit and released in the failed interval (read before
that interval began). Found by tests/failover (a leader killed under exactly-once: 23 such records were
only in the aborted transaction and never produced again).
"""

from __future__ import annotations

from login_consumer.delivery.progress import Progress
from login_consumer.records import TP

REPARTITION: TP = ("group-network-repartition", 0)
INPUT: TP = ("user-login", 0)


def test_a_commit_stops_at_the_first_held_record() -> None:
    held: dict[TP, int] = {REPARTITION: 5}
    progress = Progress(held.get)
    progress.processed(REPARTITION, 0, 10)
    progress.processed(INPUT, 0, 10)
    progress.apply_limits()
    assert progress.position == {REPARTITION: 5, INPUT: 10}


def test_records_held_across_a_commit_are_rewound_to_when_the_next_interval_fails() -> None:
    held: dict[TP, int] = {REPARTITION: 5}
    progress = Progress(held.get)
    progress.processed(REPARTITION, 0, 10)  # 5..9 held by the merge
    progress.apply_limits()
    progress.committed()  # the group's offset of the partition is 5
    held.clear()  # the next interval releases 5..9 (their outputs are in it) and reads on
    progress.processed(REPARTITION, 10, 20)
    assert progress.rewind({REPARTITION}) == {REPARTITION: 5}  # not 10: 5..9 would never come again


def test_a_partition_committed_in_full_starts_the_next_interval_at_what_it_reads() -> None:
    held: dict[TP, int] = {}
    progress = Progress(held.get)
    progress.processed(REPARTITION, 0, 10)
    progress.apply_limits()
    progress.committed()
    assert progress.base == {}
    progress.processed(REPARTITION, 10, 20)
    assert progress.rewind({REPARTITION}) == {REPARTITION: 10}


def test_a_held_partition_not_read_again_keeps_its_rewind_point_until_committed_in_full() -> None:
    held: dict[TP, int] = {REPARTITION: 5}
    progress = Progress(held.get)
    progress.processed(REPARTITION, 0, 10)
    progress.apply_limits()
    progress.committed()
    progress.committed()  # an interval without new records of it: still only committed up to 5
    assert progress.rewind({REPARTITION}) == {REPARTITION: 5}


def test_a_rewind_resets_the_interval_and_forget_drops_the_partition() -> None:
    held: dict[TP, int] = {REPARTITION: 5}
    progress = Progress(held.get)
    progress.processed(REPARTITION, 0, 10)
    progress.processed(INPUT, 3, 8)
    assert progress.rewind({REPARTITION, INPUT}) == {REPARTITION: 0, INPUT: 3}
    assert not progress.pending
    assert progress.base == {}
    progress.processed(INPUT, 8, 9)
    progress.forget([INPUT])
    assert not progress.pending
    assert progress.rewind({INPUT}) == {}
