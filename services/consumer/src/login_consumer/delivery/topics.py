"""The consumer's internal topics: the network stage's repartition topic, created like the input topic.

``<GROUP_ID>-network-repartition`` has as many partitions as the input topic (the ceiling of the network
stage's parallelism, like the input's for the user stage). It keeps records until they are consumed:
``retention.ms=-1``, and the consumer deletes what its group has committed (``purge``), as Kafka Streams
does for its repartition topics, so a consumer that is down for a day loses nothing and a running one
keeps the topic small. With ``AUTO_CREATE_INTERNAL_TOPICS=false`` the topic must exist (e.g. as a Strimzi
KafkaTopic); a missing or mismatched one stops start-up with a message naming it. The changelog topics
are created by ``stores/changelog.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Final

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from login_common.kafka import ensure_topics
from login_consumer.config import ConsumerSettings
from login_consumer.errors import ConsumerError

log = structlog.get_logger("login_consumer")

REPARTITION_CONFIG: Final = {"cleanup.policy": "delete", "retention.ms": "-1"}


class InternalTopicError(ConsumerError):
    """An internal topic is missing, cannot be created, or does not match the input topic."""

    def __init__(self, message: str, error: KafkaError | None = None) -> None:
        super().__init__(message)
        self.error = error  # the broker's answer, when it refused (e.g. TOPIC_AUTHORIZATION_FAILED)


def admin_client(settings: ConsumerSettings) -> AdminClient:
    """An admin client with the service's connection settings (security included)."""
    return AdminClient(settings.kafka_common())


def partitions_of(client: AdminClient, topic: str) -> int | None:
    meta = client.list_topics(topic, timeout=10)
    found = meta.topics.get(topic)
    if found is None or found.error is not None:
        return None
    return len(found.partitions)


def topic_error(client: AdminClient, topic: str) -> KafkaError | None:
    """Why the broker gives no metadata for ``topic`` (unknown, not authorized, ...), if it says."""
    found = client.list_topics(topic, timeout=10).topics.get(topic)
    return found.error if found is not None else None


def ensure_repartition_topic(settings: ConsumerSettings) -> tuple[int, int]:
    """Create (or check) the repartition topic; (input partitions, repartition partitions)."""
    topic = settings.repartition_topic()
    client = admin_client(settings)
    try:
        wanted = partitions_of(client, settings.input_topic)
        if wanted is None:
            raise InternalTopicError(
                f"INPUT_TOPIC {settings.input_topic!r} not found", topic_error(client, settings.input_topic)
            )
        if settings.auto_create_internal_topics:
            ensure_topics(
                settings.kafka_common(),
                {topic: wanted},
                replication_factor=settings.topic_replication_factor or None,
                config=REPARTITION_CONFIG,
            )
        have = partitions_of(client, topic)
        for _ in range(40):  # a topic just created takes a moment to appear in the metadata
            if have is not None or not settings.auto_create_internal_topics:
                break
            time.sleep(0.25)
            have = partitions_of(client, topic)
    except KafkaException as exc:
        raise InternalTopicError(f"repartition topic {topic!r}: {exc}") from exc
    if have is None:
        raise InternalTopicError(
            f"repartition topic {topic!r} does not exist and AUTO_CREATE_INTERNAL_TOPICS=false: create it "
            f"with {wanted} partitions (as many as INPUT_TOPIC {settings.input_topic!r})"
        )
    if have != wanted:
        log.warning(
            "repartition.partitions_differ",
            topic=topic,
            partitions=have,
            input_partitions=wanted,
            hint="the network stage's parallelism is its own partition count",
        )
    return wanted, have


def purge(client: AdminClient, committed: Mapping[tuple[str, int], int], timeout: float = 10.0) -> int:
    """Delete repartition records below the committed offsets; partitions purged (failures are logged)."""
    if not committed:
        return 0
    try:
        futures = client.delete_records(
            [TopicPartition(t, p, o) for (t, p), o in committed.items()], request_timeout=timeout
        )
    except KafkaException as exc:
        log.warning("repartition.purge_failed", error=str(exc)[:300])
        return 0
    done = 0
    for tp, future in futures.items():
        try:
            future.result(timeout)
            done += 1
        except Exception as exc:  # noqa: BLE001 - purging is housekeeping; the next one retries
            log.warning("repartition.purge_failed", partition=tp.partition, error=str(exc)[:300])
    return done
