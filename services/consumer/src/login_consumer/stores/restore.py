"""Restore and rewind, once for every store: how a partition's state comes back from its changelog.

A store (``stores/users.py``, ``stores/networks.py``) keeps state per partition and can ``drop`` a
partition and ``restore`` one from its changelog records. ``Restorer`` drives it for its detector:

* ``assign``: partitions arrive (a start, a rebalance): forget any leftover, read their changelog, rebuild;
* ``rewind``: outputs since the last checkpoint were not all delivered and their events come again: go back
  to the changelog's state (exact in exactly-once mode, where the batch's changelog records were aborted
  with it). If the changelog cannot be read, the state is kept and the events seen again count as replays;
* ``revoke``: partitions leave (their new owner restores them).

After each restore the detector's *replay mark* of the partition is taken (``mark``): the last input offset
the restored state had applied (per source, on the network stage). An event at or before its mark was
applied before and is scored without changing the state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

import structlog

log = structlog.get_logger("login_consumer")

M = TypeVar("M")
Records = Iterable[tuple[bytes, bytes | None]]


class StateSource(Protocol):
    """Where partitions' state is restored from (the changelog topic, ``stores/changelog.py``)."""

    topic: str

    def read(self, partitions: Sequence[int]) -> Mapping[int, Sequence[tuple[bytes, bytes | None]]]:
        """Each partition's records, oldest first."""
        ...


class Store(Protocol):
    def drop(self, partitions: Iterable[int]) -> None: ...

    def restore(self, partition: int, records: Records) -> int: ...


class Restorer(Generic[M]):
    """Restore, rewind and revoke for one store (see the module doc)."""

    def __init__(
        self, store: Store, source: StateSource | None, mark: Callable[[int], M], *, stage: str
    ) -> None:
        self.store = store
        self.source = source
        self._mark = mark
        self.stage = stage
        self.replay_until: dict[int, M] = {}  # partition -> what its restored state had applied
        self.restored_entries = 0

    def _rebuild(
        self, numbers: list[int], records: Mapping[int, Sequence[tuple[bytes, bytes | None]]]
    ) -> None:
        self.store.drop(numbers)  # a partition starts from its changelog, never from leftovers
        for p in numbers:
            self.restored_entries += self.store.restore(p, records.get(p, ()))
            self.replay_until[p] = self._mark(p)

    def assign(self, partitions: Iterable[int]) -> None:
        numbers = sorted(set(partitions))
        if numbers:
            self.store.drop(numbers)
            self._rebuild(numbers, self.source.read(numbers) if self.source is not None else {})

    def rewind(self, partitions: Iterable[int]) -> None:
        numbers = sorted(set(partitions))
        if not numbers:
            return
        if self.source is not None:
            try:
                records = self.source.read(numbers)
            except Exception as exc:  # noqa: BLE001 - fall back to replay protection
                log.warning("state.rewind_failed", error=str(exc)[:300], partitions=numbers, stage=self.stage)
            else:
                self._rebuild(numbers, records)
                return
        for p in numbers:
            self.replay_until[p] = self._mark(p)

    def revoke(self, partitions: Iterable[int]) -> None:
        numbers = list(partitions)
        self.store.drop(numbers)
        for p in numbers:
            self.replay_until.pop(p, None)
