"""The one place that turns settings into parts: the detectors of each stage with their changelogs, the
stages, and the whole process (``assemble``: intake, topology, sender, checkpoint, state manager).

Everything below (detectors, stores, stages) takes plain values; only this module, the conductor
(``app.py``) and the entry point read ``ConsumerSettings``. A new detector of the user stage needs nothing
here (``detectors/users.py`` runs every enabled one); one with a stage of its own is wired here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import structlog
from confluent_kafka import Consumer

from login_common.tracing import Tracing
from login_consumer.config import ConsumerSettings
from login_consumer.delivery.checkpoint import Checkpoint, Purge
from login_consumer.delivery.cluster import ClusterHealth
from login_consumer.delivery.producer import ProducerKeeper
from login_consumer.delivery.sender import Sender
from login_consumer.detectors.base import Detectors, NoDetectors
from login_consumer.detectors.names import CREDENTIAL_STUFFING, USER_DETECTORS
from login_consumer.detectors.networks import NetworkDetector
from login_consumer.detectors.users import UserDetectors
from login_consumer.intake.align import Aligner
from login_consumer.intake.group import PartitionGroup
from login_consumer.operations.clients import Credentials, clients
from login_consumer.operations.clients import producer as new_producer
from login_consumer.operations.events import Events
from login_consumer.operations.probes import Probes
from login_consumer.operations.retry import Retrier
from login_consumer.privacy import evidence_privacy
from login_consumer.process import Processor
from login_consumer.stages.network import NetworkStage
from login_consumer.stages.user import UserStage
from login_consumer.stores.changelog import Changelog
from login_consumer.stores.manager import StateManager
from login_consumer.topics import REPARTITION_CONFIG, InternalTopics
from login_consumer.topology import NETWORK, USER, Topology
from login_consumer.tracing import StageTracer

__all__ = [
    "Parts",
    "assemble",
    "build_detectors",
    "build_network_detector",
    "build_stages",
    "ensure_repartition_topic",
    "internal_topics",
    "prepare",
    "trace_stages",
]

log = structlog.get_logger("login_consumer")

MERGE_WAIT_FACTOR: Final = 5  # the network stage's merge waits this many ALIGNMENT_MAX_WAIT_MS for a source


def internal_topics(settings: ConsumerSettings, events: Events | None = None) -> InternalTopics:
    """The internal-topics manager with the service's connection settings (and, with ``events``, its
    clients' errors and refusals reported like the others')."""
    topics = InternalTopics(
        settings.kafka_common(),
        auto_create=settings.auto_create_internal_topics,
        replication_factor=settings.topic_replication_factor or None,
        on_error=events.on_error if events is not None else None,
    )
    if events is not None:
        topics.on_refusal = events.access.check
    return topics


def build_detectors(settings: ConsumerSettings, topics: InternalTopics | None = None) -> Detectors:
    """The user stage's detectors: none, or the stateful ones (with their changelog)."""
    config = settings.detector_config()
    if not USER_DETECTORS & set(config.enabled):
        return NoDetectors()
    source = None
    if settings.state_changelog:
        source = Changelog(
            topics or internal_topics(settings),
            settings.changelog_topic(),
            source_topic=settings.input_topic,
            source_setting="INPUT_TOPIC",
            setting="STATE_TOPIC",
            group_id=settings.group_id,
            restore_timeout=settings.state_restore_timeout,
        )
    return UserDetectors(config, source)


def build_network_detector(
    settings: ConsumerSettings, topics: InternalTopics | None = None
) -> NetworkDetector | None:
    """The network stage's detector (credential_stuffing), or None when it is off (no network stage)."""
    config = settings.detector_config()
    if CREDENTIAL_STUFFING not in config.enabled:
        return None
    source = None
    if settings.state_changelog:
        source = Changelog(
            topics or internal_topics(settings),
            settings.network_state_topic(),
            source_topic=settings.repartition_topic(),
            source_setting="the repartition topic",
            setting="the internal topic",
            group_id=settings.group_id,
            restore_timeout=settings.state_restore_timeout,
        )
    return NetworkDetector(config, source, privacy=evidence_privacy(settings))


def build_stages(
    settings: ConsumerSettings, processor: Processor, network: NetworkDetector | None
) -> tuple[UserStage, NetworkStage | None]:
    """The user stage and (with a network detector) the network stage."""
    repartition = settings.repartition_topic() if network is not None else None
    user = UserStage(
        processor,
        output_topic=settings.output_topic,
        repartition_topic=repartition,
        stuffing_prefix=settings.stuffing_prefix,
    )
    if network is None:
        return user, None
    return user, NetworkStage(
        network,
        processor.risk,
        output_topic=settings.output_topic,
        exactly_once=settings.exactly_once,
        # a source's owner may be restoring state after a rebalance: wait longer than the aligner does
        # for a silent partition before giving up on event-time order
        max_wait=MERGE_WAIT_FACTOR * settings.alignment_max_wait_ms / 1000.0,
        max_buffered=settings.alignment_max_buffered,
    )


def ensure_repartition_topic(settings: ConsumerSettings, topics: InternalTopics) -> tuple[int, int]:
    """Create (or check) the repartition topic; (input partitions, repartition partitions)."""
    topic = settings.repartition_topic()
    wanted, have = topics.ensure(
        topic,
        like=settings.input_topic,
        like_setting="INPUT_TOPIC",
        config=REPARTITION_CONFIG,
        how="repartition topic",
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


@dataclass
class Parts:
    """Everything the conductor (``app.py``) runs, wired together."""

    topics: InternalTopics
    detectors: Detectors
    processor: Processor
    network: NetworkDetector | None
    user_stage: UserStage
    network_stage: NetworkStage | None
    consumer: Consumer
    group: PartitionGroup
    state: StateManager
    checkpoint: Checkpoint
    sender: Sender
    topology: Topology
    changelogs: list[Changelog]
    producers: ProducerKeeper
    credentials: Credentials
    health: ClusterHealth  # the Kafka cluster as the consumer sees it: /ready and login_consumer_kafka_*
    probes: Probes  # /healthz and /ready
    retrier: Retrier  # start-up steps and init_transactions, retried with backoff


def assemble(
    settings: ConsumerSettings,
    events: Events,
    *,
    detectors: Detectors | None = None,
    processor: Processor | None = None,
    network: NetworkDetector | bool | None = True,
) -> Parts:
    """Build the process's parts from the settings (``detectors``, ``processor``, ``network``: given parts
    instead; ``network=None``/``False``: no network stage)."""
    topics = internal_topics(settings, events)
    detectors = detectors if detectors is not None else build_detectors(settings, topics)
    processor = processor or Processor.from_settings(settings, detectors)
    found = (build_network_detector(settings, topics) if network is True else network) or None
    user_stage, network_stage = build_stages(settings, processor, found)
    consumer, producer = clients(settings, events)
    aligner = None
    if settings.event_time_alignment:
        aligner = Aligner(
            max_wait=settings.alignment_max_wait_ms / 1000.0, max_buffered=settings.alignment_max_buffered
        )
    group = PartitionGroup(
        consumer,
        settings.input_topic,
        batch_size=settings.batch_size,
        poll_timeout=settings.poll_timeout,
        aligner=aligner,
        warn=events.warn,
        out_of_order=lambda cause, count: events.metrics.out_of_order.labels("user", cause).inc(count),
    )
    # a read refused and then granted heals by a probe of its own group (the consumer's ACLs: <GROUP_ID>-*)
    group.refused.probe_config = {**topics.client_config, "group.id": f"{settings.group_id}-probe"}
    stages: dict[str, Any] = {USER: (settings.input_topic, detectors)}
    repartition = user_stage.repartition_topic
    purge = None
    if found is not None and repartition is not None:
        stages[NETWORK] = (repartition, found)
        purge = Purge(topics, repartition, lambda: group.assignment)
    state = StateManager(stages, on_error=events.detector_failed)
    health = ClusterHealth(settings, events.metrics)
    checkpoint = Checkpoint(
        consumer,
        producer,
        exactly_once=settings.exactly_once,
        interval=settings.commit_interval_ms / 1000.0,
        delivery_timeout=settings.delivery_timeout,
        warn=events.warn,
        purge=purge,
        report=events.access.check,
        saw=health.saw,
    )
    events.delivery_failed = checkpoint.delivery_failed
    events.produce_failed = checkpoint.produce_failed
    sender = Sender(
        producer,
        settings.dlq_topic,
        begin=checkpoint.begin,
        refused=events.on_produce_refused,
        wait=settings.delivery_timeout,
    )
    topology = Topology(
        user_stage,
        network_stage,
        group=group,
        sender=sender,
        progress=checkpoint.progress,
        state=state,
        metrics=events.metrics,
        log=events.log,
    )
    checkpoint.progress.limit = topology.first_held  # a partition is done up to its first record still held
    changelogs = [
        source
        for detector in (detectors, found)
        if isinstance(source := getattr(detector, "source", None), Changelog)
    ]
    credentials = Credentials(settings, events.log, events)
    credentials.track(consumer.set_sasl_credentials)
    credentials.track(topics.set_password)
    credentials.track(lambda user, password: sender.producer.set_sasl_credentials(user, password))  # noqa: PLW0108 - the producer may be replaced
    producers = ProducerKeeper(
        lambda: new_producer(settings, events),
        checkpoint,
        sender,
        exactly_once=settings.exactly_once,
        log=events.log,
        timeout=settings.delivery_timeout,
    )
    probes = Probes(
        events.access,
        cluster=health.state,
        unrestored=lambda: len(state.pending),
        partitions=lambda: len(group.assignment),
        reading=lambda: bool(group.refused.holding),
    )
    checkpoint.heartbeat = probes.beat  # waiting on Kafka (delivery/checkpoint.py), not stuck
    probes.retrier = retrier = Retrier(events.access, events.warn, probes.beat, credentials.check)
    return Parts(
        topics, detectors, processor, found, user_stage, network_stage, consumer, group, state, checkpoint,
        sender, topology, changelogs, producers, credentials, health, probes, retrier,
    )  # fmt: skip


def trace_stages(settings: ConsumerSettings, parts: Parts, tracing: Tracing) -> None:
    """Tracing on: the stages record spans of the sampled events (tracing.py)."""
    tracer = StageTracer(tracing.tracer, group=settings.group_id, dlq_topic=settings.dlq_topic)
    parts.user_stage.tracer = tracer
    if parts.network_stage is not None:
        parts.network_stage.tracer = tracer


def prepare(settings: ConsumerSettings, parts: Parts) -> None:
    """Start-up checks (retried by the caller while they fail): the input topic is there; the internal
    topics exist (created when allowed) and match their source topics."""
    sources = parts.topics.wait_for_source(settings.input_topic, "INPUT_TOPIC")
    if parts.network_stage is not None:
        sources, partitions = ensure_repartition_topic(settings, parts.topics)
        parts.user_stage.partitions = partitions
        parts.network_stage.sources = sources
    for changelog in parts.changelogs:
        changelog.ensure()
