"""A state store's changelog topic: created on first use, read back on partition assignment.

Two stores keep one each: the user stage's ``STATE_TOPIC`` (default ``<GROUP_ID>-detector-state``, as many
partitions as the input topic) and the network stage's ``<GROUP_ID>-network-state`` (as many as the
repartition topic). Both are compacted; the state of source partition *p* lives in changelog partition
*p*. The consumer loop writes state changes with the outputs they belong to, before their offsets are
committed (in exactly-once mode inside the same transaction, so a changelog never runs ahead of the
committed input). Restoring reads the assigned partitions from the beginning to their end with a
separate, group-less, read_committed consumer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Final

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from login_common.kafka import admin, ensure_topics
from login_consumer.config import ConsumerSettings
from login_consumer.errors import ConsumerError

log = structlog.get_logger("login_consumer")

TOPIC_CONFIG: Final = {
    "cleanup.policy": "compact",
    "min.cleanable.dirty.ratio": "0.1",
    "segment.ms": "3600000",
    "delete.retention.ms": "3600000",
}


_ELECTING: Final = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
    }
)


class StateRestoreError(ConsumerError):
    """The changelog topic cannot be created, does not match the input topic, or cannot be read."""


class Changelog:
    """Reads (and on first use creates) one changelog topic, partitioned like its source topic."""

    def __init__(
        self, settings: ConsumerSettings, topic: str | None = None, source_topic: str | None = None
    ) -> None:
        self.settings = settings
        self.topic = topic or settings.changelog_topic()
        self.source_topic = source_topic or settings.input_topic
        self.setting = "STATE_TOPIC" if topic is None else "the internal topic"
        self._ready = False

    def _partitions(self, topic: str) -> int | None:
        meta = admin(self.settings.kafka_common()).list_topics(topic, timeout=10)
        found = meta.topics.get(topic)
        if found is None or found.error is not None:
            return None
        return len(found.partitions)

    def ensure(self) -> None:
        """Create the changelog like its source topic (unless AUTO_CREATE_INTERNAL_TOPICS=false); fail,
        naming the topic, if it is missing or does not match."""
        if self._ready:
            return
        try:
            wanted = self._partitions(self.source_topic)
            if wanted is None:
                raise StateRestoreError(f"topic {self.source_topic!r} not found")
            if self.settings.auto_create_internal_topics:
                ensure_topics(
                    self.settings.kafka_common(),
                    {self.topic: wanted},
                    replication_factor=self.settings.topic_replication_factor or None,
                    config=TOPIC_CONFIG,
                )
            have = self._partitions(self.topic)
            for _ in range(40):  # a topic just created takes a moment to appear in the metadata
                if have is not None or not self.settings.auto_create_internal_topics:
                    break
                time.sleep(0.25)
                have = self._partitions(self.topic)
        except KafkaException as exc:
            raise StateRestoreError(f"changelog topic {self.topic!r}: {exc}") from exc
        if have is None:
            raise StateRestoreError(
                f"changelog topic {self.topic!r} does not exist and AUTO_CREATE_INTERNAL_TOPICS=false: "
                f"create it compacted with {wanted} partitions"
            )
        if have != wanted:
            raise StateRestoreError(
                f"{self.setting} {self.topic!r} has {have} partitions, the topic "
                f"{self.source_topic!r} {wanted}: they must match (delete it or choose another)"
            )
        self._ready = True

    def _watermarks(self, consumer: Consumer, partition: int, deadline: float) -> tuple[int, int]:
        """(low, high) of a changelog partition; retried while its leader is being elected (a topic just
        created, a broker restarting) until ``deadline``."""
        while True:
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=10)
                return int(low), int(high)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                retriable = err.retriable() or err.code() in _ELECTING
                if not retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def read(self, partitions: Sequence[int]) -> Mapping[int, Sequence[tuple[bytes, bytes | None]]]:
        """Every record of these changelog partitions, oldest first, up to their current end."""
        self.ensure()
        started = time.monotonic()
        out: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in partitions}
        settings = self.settings
        consumer = Consumer(
            {
                **settings.kafka_common(),
                "group.id": f"{settings.group_id}-restore",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.max.bytes": 52_428_800,
            }
        )
        try:
            pending: set[int] = set()
            for p in partitions:
                low, high = self._watermarks(consumer, p, started + settings.state_restore_timeout)
                if high > low:
                    pending.add(p)
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
            deadline = started + settings.state_restore_timeout
            while pending:
                if time.monotonic() > deadline:
                    raise StateRestoreError(
                        f"changelog {self.topic!r} partitions {sorted(pending)} not read within "
                        f"STATE_RESTORE_TIMEOUT ({settings.state_restore_timeout:.0f}s)"
                    )
                for msg in consumer.consume(10_000, 0.5):
                    err = msg.error()
                    p = msg.partition() or 0
                    if err is None:
                        key = msg.key()
                        if key is not None:
                            out[p].append((key, msg.value()))
                    elif err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(p)
                    else:
                        raise StateRestoreError(f"changelog {self.topic!r}: {err.str()}")
        except KafkaException as exc:
            raise StateRestoreError(f"changelog {self.topic!r}: {exc}") from exc
        finally:
            consumer.close()
        log.info(
            "state.restored",
            topic=self.topic,
            partitions=list(partitions),
            records=sum(len(v) for v in out.values()),
            seconds=round(time.monotonic() - started, 3),
        )
        return out
