"""The shapes that pass between the consumer's parts, defined once.

* ``TP``: a topic-partition as ``(topic, partition)`` (cheap to hash: the loop keys its bookkeeping by it);
* ``Header``: one Kafka header;
* ``Record``: an output record for the producer, ``(topic, partition or -1 for the default partitioner, key,
  value, headers)``: outputs, repartition and progress records (``stages/``);
* ``StateRecord``: a changelog record, ``(topic, partition, key, value or None for a tombstone)``
  (``stores/``, through the detectors' ``changes``);
* ``PartitionRef``: a partition as the detectors and stores are told about it (assign, revoke, rewind).
"""

from __future__ import annotations

from dataclasses import dataclass

TP = tuple[str, int]
Header = tuple[str, str | bytes | None]
Record = tuple[str, int, bytes, bytes, list[Header]]
StateRecord = tuple[str, int, bytes, bytes | None]


@dataclass(frozen=True, slots=True)
class PartitionRef:
    topic: str
    partition: int
