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
from typing import Any, Final

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from login_consumer.errors import InternalTopicError, StateRestoreError
from login_consumer.topics import CHANGELOG_CONFIG, InternalTopics

log = structlog.get_logger("login_consumer")

TOPIC_CONFIG: Final = CHANGELOG_CONFIG

_ELECTING: Final = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
    }
)


def _error_of(exc: KafkaException) -> KafkaError | None:
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


class Changelog:
    """Reads (and on first use creates) one changelog topic, partitioned like its source topic."""

    def __init__(
        self,
        topics: InternalTopics,
        topic: str,
        *,
        source_topic: str,
        source_setting: str,
        setting: str,
        group_id: str,
        restore_timeout: float,
    ) -> None:
        """``setting``: how the topic is named in messages (``STATE_TOPIC``, "the internal topic");
        ``source_setting``: how its source is (``INPUT_TOPIC``, "the repartition topic")."""
        self.topics = topics
        self.topic = topic
        self.source_topic = source_topic
        self.source_setting = source_setting
        self.setting = setting
        self.group_id = group_id
        self.restore_timeout = restore_timeout
        self._ready = False

    def ensure(self) -> None:
        """Create the changelog like its source topic (unless AUTO_CREATE_INTERNAL_TOPICS=false); fail,
        naming the topic, if it is missing or does not match."""
        if self._ready:
            return
        try:
            wanted, have = self.topics.ensure(
                self.topic,
                like=self.source_topic,
                like_setting=self.source_setting,
                config=CHANGELOG_CONFIG,
                how="changelog topic",
            )
        except InternalTopicError as exc:
            raise StateRestoreError(str(exc), exc.error) from exc
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
        config: dict[str, Any] = self.topics.client_config
        consumer = Consumer(
            {
                **config,
                "group.id": f"{self.group_id}-restore",
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
                low, high = self._watermarks(consumer, p, started + self.restore_timeout)
                if high > low:
                    pending.add(p)
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
            deadline = started + self.restore_timeout
            while pending:
                if time.monotonic() > deadline:
                    raise StateRestoreError(
                        f"changelog {self.topic!r} partitions {sorted(pending)} not read within "
                        f"STATE_RESTORE_TIMEOUT ({self.restore_timeout:.0f}s)"
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
                        raise StateRestoreError(f"changelog {self.topic!r}: {err.str()}", err)
        except KafkaException as exc:
            raise StateRestoreError(f"changelog {self.topic!r}: {exc}", _error_of(exc)) from exc
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
