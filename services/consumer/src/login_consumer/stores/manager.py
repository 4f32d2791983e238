"""The state manager: one owner for the state of every stage, on assignment, revocation and rewind.

Each stage's detector keeps its stores per partition (``stores/users.py`` for the input topic's partitions,
``stores/networks.py`` for the repartition topic's) and restores them from its changelog
(``stores/restore.py``). The conductor does not call them one by one: it tells the manager which partitions
came, went or must be rewound, and the manager splits them by topic and calls each stage's detector. It
also collects both stages' changelog records (``changes``) and their store sizes (for the metrics).

A detector's failure here (a bug) is logged and counted, never stops the consumer: the partition then
starts with the state it has (the events count as replays or start fresh). A restore the broker refused or
could not serve (an ACL, the credentials, a broker down: an error carrying the broker's answer) is different:
its partitions are ``pending``, the conductor reads nothing of them and retries the restore with backoff
(``retry``), so no event is processed against a state that was not restored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from confluent_kafka import KafkaException

from login_consumer.errors import ConsumerError
from login_consumer.records import TP, PartitionRef, StateRecord


class Stateful(Protocol):
    """What the manager needs of a stage's detector (both ``Detectors`` and ``NetworkDetector`` are)."""

    def on_assign(self, partitions: Sequence[PartitionRef]) -> None: ...

    def on_revoke(self, partitions: Sequence[PartitionRef], *, lost: bool) -> None: ...

    def state_sizes(self) -> Mapping[str, int]: ...


@runtime_checkable
class Changelogged(Protocol):
    """A detector whose state is written to a changelog (and can be rewound to it)."""

    def changes(self) -> Sequence[StateRecord]: ...

    def rewind(self, partitions: Sequence[PartitionRef]) -> None: ...


def _broker_failure(exc: Exception) -> bool:
    """The broker refused or could not serve the restore (retried), as opposed to a detector's bug."""
    return isinstance(exc, KafkaException) or (isinstance(exc, ConsumerError) and exc.error is not None)


class StateManager:
    def __init__(
        self,
        stages: Mapping[str, tuple[str, Stateful]],
        *,
        on_error: Callable[[str, Exception], None],
    ) -> None:
        """``stages``: stage name -> (its input topic, its detector); ``on_error(what, exc)``: report a
        detector's failure."""
        self._stages = dict(stages)
        self._by_topic = {topic: (stage, detector) for stage, (topic, detector) in self._stages.items()}
        self._on_error = on_error
        self.pending: set[TP] = set()  # assigned partitions whose restore must be retried

    def _split(self, tps: Iterable[TP]) -> dict[str, list[PartitionRef]]:
        """The partitions of each stage's input topic, as ``PartitionRef``s (sorted)."""
        out: dict[str, list[PartitionRef]] = {}
        for topic, partition in sorted(tps):
            found = self._by_topic.get(topic)
            if found is not None:
                out.setdefault(found[0], []).append(PartitionRef(topic, partition))
        return out

    def _guarded(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the consumer
            self._on_error(what, exc)

    def assign(self, tps: Iterable[TP]) -> dict[str, list[int]]:
        """Restore the state of newly assigned partitions; their numbers per stage. Partitions whose
        restore the broker refused or could not serve are left ``pending``."""
        split = self._split(tps)
        for stage, refs in split.items():
            try:
                self._stages[stage][1].on_assign(refs)
            except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the consumer
                self._on_error("on_assign", exc)
                if isinstance(exc, KafkaException) or (
                    isinstance(exc, ConsumerError) and exc.error is not None
                ):
                    self.pending |= {(ref.topic, ref.partition) for ref in refs}
            else:
                self.pending -= {(ref.topic, ref.partition) for ref in refs}
        return {stage: [ref.partition for ref in refs] for stage, refs in split.items()}

    def retry(self) -> set[TP]:
        """Restore the pending partitions again; those restored now."""
        before = set(self.pending)
        self.assign(before)
        return before - self.pending

    def revoke(self, tps: Iterable[TP], *, lost: bool) -> dict[str, list[int]]:
        """Forget the state of partitions that went away; their numbers per stage."""
        tps = set(tps)
        self.pending -= tps
        split = self._split(tps)
        for stage, refs in split.items():
            self._guarded("on_revoke", self._stages[stage][1].on_revoke, refs, lost=lost)
        return {stage: [ref.partition for ref in refs] for stage, refs in split.items()}

    def rewind(self, tps: Iterable[TP]) -> dict[str, list[int]]:
        """Back to the changelog's state for these partitions; their numbers per stage."""
        split = self._split(tps)
        for stage, refs in split.items():
            detector = self._stages[stage][1]
            if isinstance(detector, Changelogged):
                self._guarded("rewind", detector.rewind, refs)
        return {stage: [ref.partition for ref in refs] for stage, refs in split.items()}

    def changes(self, stage: str) -> Sequence[StateRecord]:
        """The stage's changelog records since the last call (none if it keeps no changelog)."""
        detector = self._stages[stage][1]
        if not isinstance(detector, Changelogged):
            return ()
        try:
            return detector.changes()
        except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the consumer
            self._on_error("changes", exc)
            return ()

    def sizes(self) -> dict[str, int]:
        """Entries per store, over every stage."""
        sizes: dict[str, int] = {}
        for _topic, detector in self._stages.values():
            sizes.update(detector.state_sizes())
        return sizes
