"""The consumer's internal topics, one manager for all of them: create like a source topic, wait for the
metadata, check the partition count, and delete what was consumed.

Three internal topics, each partitioned like the topic whose state or records it carries:

* ``<GROUP_ID>-network-repartition``: the network stage's input, as many partitions as the input topic
  (the ceiling of the network stage's parallelism, like the input's for the user stage). It keeps records
  until they are consumed: ``retention.ms=-1``, and the consumer deletes what its group has committed
  (``purge``), as Kafka Streams does for its repartition topics, so a consumer that is down for a day loses
  nothing and a running one keeps the topic small;
* ``STATE_TOPIC`` (default ``<GROUP_ID>-detector-state``) and ``<GROUP_ID>-network-state``: the stores'
  changelogs (``stores/changelog.py``), compacted, like the input and the repartition topic.

With ``AUTO_CREATE_INTERNAL_TOPICS=false`` the topics must exist (e.g. as Strimzi KafkaTopics); a missing or
mismatched one raises ``InternalTopicError`` naming it. A topic just created takes a moment to appear in the
metadata: ``ensure`` waits for it. A refusal by the broker (an ACL, the credentials) keeps its Kafka error on
the exception (``.error``), so the access policy (``operations/access.py``) can tell it from a bad setting;
a missing topic carries ``UNKNOWN_TOPIC_OR_PART``: the consumer waits for it (not ready) instead of exiting.
A partition count that does not match is a setting that can never work (``error`` None).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from login_common.kafka import CREATE_RETRIED, replication
from login_consumer.errors import InternalTopicError

log = structlog.get_logger("login_consumer")

REPARTITION_CONFIG: Final = {"cleanup.policy": "delete", "retention.ms": "-1"}
CHANGELOG_CONFIG: Final = {
    "cleanup.policy": "compact",
    "min.cleanable.dirty.ratio": "0.1",
    "segment.ms": "3600000",
    "delete.retention.ms": "3600000",
}
METADATA_WAIT_SECONDS: Final = 10.0
TIMEOUT: Final = 10.0
CREATE_SECONDS: Final = 30.0  # topic creation retried through leader/controller changes this long


def _error_of(exc: KafkaException) -> KafkaError | None:
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


def _retried(err: KafkaError) -> bool:
    return bool(err.retriable()) or err.code() in CREATE_RETRIED  # login_common.kafka: through leader changes


class InternalTopics:
    """Creates, checks and purges internal topics with the service's connection settings."""

    def __init__(
        self,
        client_config: Mapping[str, Any],
        *,
        auto_create: bool = True,
        replication_factor: int | None = None,
        on_error: Callable[[KafkaError], None] | None = None,
    ) -> None:
        """``on_error``: the clients' error callback (an authentication failure is reported through it:
        the calls themselves only time out); ``replication_factor``: of the topics created (None or 0: as
        the cluster allows, ``min(3, brokers)``; ``login_common.kafka.replication``), with
        min.insync.replicas one less."""
        self.client_config = dict(client_config)
        if on_error is not None:
            self.client_config["error_cb"] = on_error
        # a refusal of a housekeeping call (purge): reported by the access policy, not just logged
        self.on_refusal: Callable[[KafkaError | None, str], bool] = lambda _err, _where: False
        self.auto_create = auto_create
        self.replication_factor = replication_factor or None
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(self.client_config)
        return self._admin

    def set_password(self, user: str, password: str) -> None:
        """A new SASL password (``Credentials``): for the admin client and the clients made from now on."""
        self.client_config["sasl.password"] = password
        if self._admin is not None:
            self._admin.set_sasl_credentials(user, password)

    def serve(self) -> None:
        """Serve the admin client's callbacks (its errors: why a call timed out, e.g. authentication)."""
        if self._admin is not None:
            self._admin.poll(0.5)

    def partitions(self, topic: str) -> int | None:
        """Partitions of ``topic``, None when the metadata has no such topic (or refuses it).

        Read from the whole cluster's metadata: a metadata request naming a missing topic makes a broker
        with ``auto.create.topics.enable`` create it, with the broker's default partition count."""
        found = self.admin.list_topics(timeout=TIMEOUT).topics.get(topic)
        if found is None or found.error is not None:
            return None
        return len(found.partitions)

    def refusal(self, topic: str) -> KafkaError | None:
        """Why the broker gives no metadata for ``topic`` (unknown, not authorized, ...), if it says.
        (Names the topic: only for a source topic, never for an internal one before its creation.)"""
        found = self.admin.list_topics(topic, timeout=TIMEOUT).topics.get(topic)
        return found.error if found is not None else None

    def _create(self, topic: str, partitions: int, config: Mapping[str, str]) -> None:
        """Create ``topic`` replicated as the cluster allows; tried again through a leader or controller
        change (a broker restarting leaves too few for a while) until ``CREATE_SECONDS``."""
        factor, min_isr = replication(self.client_config, self.replication_factor, TIMEOUT)
        settings = {"min.insync.replicas": str(min_isr), **config}
        deadline = time.monotonic() + CREATE_SECONDS
        while True:
            new = NewTopic(topic, num_partitions=partitions, replication_factor=factor, config=settings)
            try:
                for future in self.admin.create_topics([new], operation_timeout=TIMEOUT).values():
                    future.result(timeout=TIMEOUT * 3)
            except KafkaException as exc:
                err = _error_of(exc)
                if err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    return
                if err is not None and _retried(err) and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise InternalTopicError(f"internal topic {topic!r} cannot be created: {exc}", err) from exc
            return

    def ensure(
        self, topic: str, *, like: str, like_setting: str, config: Mapping[str, str], how: str
    ) -> tuple[int, int]:
        """Make sure ``topic`` exists (created with as many partitions as ``like`` when allowed);
        (partitions of ``like``, partitions of ``topic``). ``how``: what to create, for the message when
        it is missing and may not be created ("with 6 partitions" follows it)."""
        try:
            wanted = self.partitions(like)
            if wanted is None:
                refused = self.refusal(like) or KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
                raise InternalTopicError(f"{like_setting} {like!r} not found", refused)
            have = self.partitions(topic)
            if have is None and self.auto_create:
                self._create(topic, wanted, config)
                deadline = time.monotonic() + METADATA_WAIT_SECONDS
                while have is None and time.monotonic() < deadline:
                    time.sleep(0.25)
                    have = self.partitions(topic)
        except KafkaException as exc:
            self.serve()
            raise InternalTopicError(f"internal topic {topic!r}: {exc}", _error_of(exc)) from exc
        if have is None:  # waited for (a missing topic): it may be created yet
            if self.auto_create:
                raise InternalTopicError(
                    f"internal topic {topic!r} did not appear after its creation",
                    KafkaError(KafkaError._TIMED_OUT),
                )
            raise InternalTopicError(
                f"{how} {topic!r} does not exist and AUTO_CREATE_INTERNAL_TOPICS=false: create it "
                f"with {wanted} partitions (as many as {like_setting} {like!r})",
                KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART),
            )
        return wanted, have

    def wait_for_source(self, topic: str, setting: str) -> int:
        """The partitions of a source topic the consumer reads but never creates (``INPUT_TOPIC``); raises
        InternalTopicError (missing, or refused) until it is there."""
        try:
            found = self.partitions(topic)
            if found is None:
                refused = self.refusal(topic) or KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
                raise InternalTopicError(f"{setting} {topic!r} not found", refused)
        except KafkaException as exc:
            self.serve()
            raise InternalTopicError(f"{setting} {topic!r}: {exc}", _error_of(exc)) from exc
        return found

    def purge(self, committed: Mapping[tuple[str, int], int], timeout: float = TIMEOUT) -> int:
        """Delete records below the committed offsets; partitions purged (failures are logged: purging is
        housekeeping, the next round retries)."""
        if not committed:
            return 0
        try:
            futures = self.admin.delete_records(
                [TopicPartition(t, p, o) for (t, p), o in committed.items()], request_timeout=timeout
            )
        except KafkaException as exc:
            if not self.on_refusal(_error_of(exc), "purge"):
                log.warning("repartition.purge_failed", error=str(exc)[:300])
            return 0
        done = 0
        for tp, future in futures.items():
            try:
                future.result(timeout)
                done += 1
            except Exception as exc:  # noqa: BLE001 - housekeeping; the next one retries
                err = _error_of(exc) if isinstance(exc, KafkaException) else None
                if not self.on_refusal(err, "purge"):
                    log.warning("repartition.purge_failed", partition=tp.partition, error=str(exc)[:300])
        return done
