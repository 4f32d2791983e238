"""What the checkpoint's interval has processed, how far it may be committed, and where it goes back to.

Per input partition (of every stage's topic), since the last commit:

* ``base``: the first offset processed (where a rewind goes back to);
* ``position``: the next offset to commit.

Commit limits (``limit``, the topology's ``first_held``): the network stage's merges hold records until
their turn (``stages/merge.py``), so a partition is committed no further than its first record still held
(``apply_limits``), and a rewound partition goes back to that record too when it is earlier (``rewind``).
A partition committed up to a held record keeps that offset as its ``base`` into the next interval
(``committed``): records held across a commit and released after it are rewound to as well (a failed
exactly-once transaction during a broker kill lost 23 such records before; tests/unit/test_progress.py).

The checkpoint (``checkpoint.py``) owns one ``Progress``: the topology reports what it processed
(``processed``), the checkpoint commits ``position`` and clears the interval (``committed``), a rebalance
drops the partitions that left (``forget``), and a failed commit rewinds (``rewind``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from login_consumer.records import TP


class Progress:
    def __init__(self, limit: Callable[[TP], int | None] | None = None) -> None:
        """``limit``: the first offset of a partition not done yet (its first record still held), or None."""
        self.limit = limit
        self.base: dict[TP, int] = {}  # first offset processed since the last commit
        self.position: dict[TP, int] = {}  # next offset to commit

    def processed(self, tp: TP, first: int, following: int) -> None:
        """Offsets ``first`` .. ``following - 1`` of ``tp`` were processed (their records are produced)."""
        if tp not in self.base:
            self.base[tp] = first
        self.position[tp] = following

    def cap(self, tp: TP, offset: int) -> None:
        """Commit ``tp`` no further than ``offset`` (what lies beyond is not done yet)."""
        if tp in self.position:
            self.position[tp] = min(self.position[tp], offset)

    def apply_limits(self) -> None:
        """Before a commit: a partition is done only up to its first record still held."""
        if self.limit is not None:
            for tp in list(self.position):
                held = self.limit(tp)
                if held is not None:
                    self.cap(tp, held)

    @property
    def pending(self) -> bool:
        return bool(self.position)

    def committed(self) -> None:
        """The interval is committed: a new one starts. A partition committed only up to a record still
        held starts the new interval there (its ``base``): the held records are released in a later
        interval but were read before it, so a rewind before the partition's next commit must go back to
        them, not to the first offset read in that interval (which lies beyond: they would be lost)."""
        carried = {tp: o for tp, o in self.base.items() if tp not in self.position}
        if self.limit is not None:
            carried.update({tp: o for tp, o in self.position.items() if self.limit(tp) is not None})
        self.base = carried
        self.position.clear()

    def forget(self, gone: Iterable[TP]) -> None:
        """Partitions went away without a commit (lost): their progress is their new owner's to redo."""
        for tp in gone:
            self.base.pop(tp, None)
            self.position.pop(tp, None)

    def rewind(self, assigned: Collection[TP]) -> dict[TP, int]:
        """Where each assigned partition processed since the last commit starts again: its first offset
        processed since then, or its first record still held if earlier. Resets the interval."""
        points = {tp: o for tp, o in self.rewind_points().items() if tp in assigned}
        if self.limit is not None:  # held records of a rewound partition are read again too
            for tp, point in list(points.items()):
                held = self.limit(tp)
                if held is not None:
                    points[tp] = min(point, held)
        return points

    def rewind_points(self) -> dict[TP, int]:
        """Where each partition processed since the last commit must start again; resets the interval."""
        points = dict(self.base)
        self.base.clear()
        self.position.clear()
        return points
