"""Consumer configuration from environment variables (one pydantic-settings model).

List settings (``DETECTORS``, ``DETECTOR_RISKS``, ``RISK_WEIGHTS``) stay text in the environment, as the
chart and the docs write them, and are parsed once, when the model is loaded, by the one list parser
(``names.py``): ``detector_names``, ``risks`` and ``weights()`` are the typed values everything else uses.
The detectors' own settings (``DETECTORS``, thresholds, bounds) are a part of this model defined with them
(``detectors/settings.py``), as the privacy settings are (``privacy.py``) and what an input must be
(``validate.py``, ``InputSettings``). This module imports names and
settings parts, never the detectors themselves: nothing below the settings imports them back.

The consumer's other settings are typed groups, one class per concern, each naming the code it configures:
``PipelineSettings`` (topics, group, metrics port), ``LoopSettings`` (batch, poll, commit interval,
outputs in flight), ``InternalTopicSettings``, ``DeliverySettings`` (guarantee, client timeouts),
``RiskSettings``, ``EnrichmentSettings`` and ``StateSettings`` (changelog, restore, event-time alignment).
``ConsumerSettings`` inherits them all, so every setting is still one environment variable and one attribute
(``settings.batch_size``): nothing outside changes.
"""

from __future__ import annotations

import socket
from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator
from pydantic_settings import BaseSettings

from login_common.settings import CommonSettings
from login_consumer.detectors.names import CREDENTIAL_STUFFING
from login_consumer.detectors.settings import DetectorSettings
from login_consumer.privacy import PrivacySettings
from login_consumer.risk import DEFAULT_WEIGHTS, parse_weights
from login_consumer.validate import InputSettings

Guarantee = Literal["at-least-once", "exactly-once"]

WAITS_PER_READ = 4  # the loop waits on Kafka at most this many DELIVERY_TIMEOUTs between reads (delivery/)


class PipelineSettings(BaseSettings):
    """Where the consumer reads, writes and answers: the output and dead-letter topics, the group, the
    metrics port (the input topic and the cluster are the common settings, ``login_common.settings``)."""

    output_topic: str = Field(
        "processed-logins", min_length=1, max_length=249, description="Topic of processed events."
    )

    dlq_topic: str = Field(
        "user-login-dlq",
        min_length=1,
        max_length=249,
        description="Dead-letter topic for events that cannot be processed.",
    )

    group_id: str = Field("login-consumer", min_length=1, description="Kafka consumer group id.")

    metrics_port: int = Field(
        8000, ge=0, le=65535, description="Port of /metrics, /healthz and /ready (0 = any free port)."
    )


class LoopSettings(BaseSettings):
    """The loop's pace: the batch, the wait for one, how often progress is committed, and the outputs
    in flight above which the input is paused (``intake/group.py``, ``delivery/checkpoint.py``)."""

    batch_size: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Most messages per batch: what is already fetched is taken at once, never waited for.",
    )

    poll_timeout: float = Field(
        0.5, gt=0, le=30, description="Longest wait for a message when none is fetched (seconds)."
    )

    commit_interval_ms: int = Field(
        1_000,
        ge=10,
        le=600_000,
        description=(
            "How often progress is committed: at-least-once waits for the outputs in flight and commits the "
            "offsets; exactly-once commits one transaction (as Kafka Streams' commit.interval.ms)."
        ),
    )

    max_in_flight: int = Field(
        20_000,
        ge=100,
        le=1_000_000,
        description="Outputs awaiting acknowledgement above which the input partitions are paused.",
    )


class InternalTopicSettings(BaseSettings):
    """The internal topics the consumer creates (``topics.py``): whether, and how replicated."""

    auto_create_internal_topics: bool = Field(
        True,
        description=(
            "Create the internal topics (GROUP_ID-network-repartition, GROUP_ID-network-state and the "
            "state changelog) like the input topic; false = they must exist (e.g. KafkaTopic resources)."
        ),
    )

    topic_replication_factor: int = Field(
        0,
        ge=0,
        le=10,
        description=(
            "Replication factor of the internal topics the consumer creates; 0 = as the cluster allows, "
            "min(3, brokers), read once. min.insync.replicas is one less (at least 1)."
        ),
    )


class DeliverySettings(BaseSettings):
    """The processing guarantee and the Kafka clients' timeouts (``delivery/``, ``operations/clients.py``)."""

    _poll_ms: int = PrivateAttr(default=300_000)  # max.poll.interval.ms (_poll_interval)

    processing_guarantee: Guarantee = Field(
        "at-least-once",
        description="at-least-once (commit after outputs are acknowledged) or exactly-once (transactions).",
    )

    transactional_id: str = Field(
        "",
        max_length=249,
        description="Transactional id in exactly-once mode; empty = GROUP_ID-<hostname> (stable per pod).",
    )

    transaction_timeout_ms: int = Field(
        60_000, ge=1_000, le=900_000, description="transaction.timeout.ms in exactly-once mode."
    )

    session_timeout_ms: int = Field(
        45_000, ge=6_000, le=300_000, description="Consumer group session timeout (session.timeout.ms)."
    )

    delivery_timeout: float = Field(
        30.0, gt=0, le=600, description="Seconds to wait for the broker to acknowledge a batch's outputs."
    )

    max_poll_interval_ms: int = Field(
        0, ge=0, le=86_400_000, description="max.poll.interval.ms; 0 = max(300000, 4 x DELIVERY_TIMEOUT)."
    )

    linger_ms: int = Field(5, ge=0, le=1_000, description="Output producer linger.ms (batching delay).")

    shutdown_timeout: float = Field(
        8.0, gt=0, le=60, description="Seconds allowed to drain and commit on SIGTERM/SIGINT."
    )

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly-once"

    @model_validator(mode="after")
    def _poll_interval(self) -> DeliverySettings:
        """The group must not drop the loop while it waits on Kafka (mid-commit) nor before its session."""
        least = max(self.session_timeout_ms, int(WAITS_PER_READ * self.delivery_timeout * 1000))
        if 0 < self.max_poll_interval_ms < least:
            raise ValueError(
                f"MAX_POLL_INTERVAL_MS ({self.max_poll_interval_ms}) must be at least {least}: "
                f"SESSION_TIMEOUT_MS and {WAITS_PER_READ} x DELIVERY_TIMEOUT, the loop's longest wait "
                "on Kafka between two reads"
            )
        self._poll_ms = self.max_poll_interval_ms or max(300_000, least)
        return self


class RiskSettings(BaseSettings):
    """The risk model's weights and level thresholds (``risk.py``); ``RISK_WEIGHTS`` parsed once."""

    _weights: dict[str, int] = PrivateAttr(default_factory=dict)  # RISK_WEIGHTS, parsed (_lists)

    risk_weights: str = Field(
        "",
        description=(
            "Overrides of risk factor weights, 'name=weight,...' (0-100). Factors: "
            + ", ".join(DEFAULT_WEIGHTS)
        ),
    )

    risk_medium_threshold: int = Field(30, ge=1, le=100, description="Scores from here on are medium.")

    risk_high_threshold: int = Field(60, ge=1, le=100, description="Scores from here on are high.")

    @model_validator(mode="after")
    def _lists(self) -> RiskSettings:
        """Parse the list settings, once (``names.py``); a bad entry is named with its variable."""
        try:
            self._weights = {**DEFAULT_WEIGHTS, **parse_weights(self.risk_weights)}
        except ValueError as exc:
            raise ValueError(f"RISK_WEIGHTS={self.risk_weights!r}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _thresholds(self) -> RiskSettings:
        if self.risk_medium_threshold >= self.risk_high_threshold:
            raise ValueError(
                f"RISK_MEDIUM_THRESHOLD ({self.risk_medium_threshold}) must be below "
                f"RISK_HIGH_THRESHOLD ({self.risk_high_threshold})"
            )
        return self

    def weights(self) -> dict[str, int]:
        """``RISK_WEIGHTS`` over the default weights: every risk factor's weight."""
        return dict(self._weights)


class EnrichmentSettings(BaseSettings):
    """The geo enrichment (``enrich/``): its cache and dataset."""

    geo_cache_size: int = Field(
        100_000, ge=0, le=10_000_000, description="Entries of the bounded per-IP enrichment cache."
    )

    geoip_data_file: str = Field(
        "geoip2fast-ipv6.dat.gz",
        min_length=1,
        description="geoip2fast dataset: a file name bundled with geoip2fast, or a path.",
    )


class StateSettings(BaseSettings):
    """The detectors' state (``stores/``): its changelog topic and restore, and the event-time alignment
    that gives the windows one clock across partitions (``intake/align.py``)."""

    state_changelog: bool = Field(
        True,
        description=(
            "Write detector state to a compacted changelog topic with each batch and restore it on "
            "assignment (false: state starts empty after a restart or rebalance)."
        ),
    )

    state_topic: str = Field(
        "",
        max_length=249,
        description="Changelog topic of the detector state; empty = GROUP_ID-detector-state.",
    )

    event_time_alignment: bool = Field(
        True,
        description=(
            "Release consumed events in event-time order across the assigned partitions (a consumer "
            "catching up reads its partitions at different paces; network windows need one clock)."
        ),
    )

    alignment_max_wait_ms: int = Field(
        2_000, ge=0, le=60_000, description="Event-time alignment: longest wait for a silent partition."
    )

    alignment_max_buffered: int = Field(
        100_000, ge=1_000, le=5_000_000, description="Event-time alignment: most messages held back."
    )

    state_restore_timeout: float = Field(
        120.0, gt=0, le=3_600, description="Seconds allowed to read a partition assignment's changelog."
    )


class ConsumerSettings(
    StateSettings,
    EnrichmentSettings,
    RiskSettings,
    InputSettings,
    DeliverySettings,
    InternalTopicSettings,
    LoopSettings,
    PipelineSettings,
    CommonSettings,
    PrivacySettings,
    DetectorSettings,
):
    # The consumer's one settings model: the common settings and every group above, in one environment.
    # (No docstring: it would become the JSON schema's description.) The groups are listed last first:
    # pydantic orders the fields base by base from the last one, so ``--help`` lists them in file order.

    def changelog_topic(self) -> str:
        return self.state_topic or f"{self.group_id}-detector-state"

    def repartition_topic(self) -> str:
        """The network stage's input: events re-keyed by network."""
        return f"{self.group_id}-network-repartition"

    def network_state_topic(self) -> str:
        """The network stage's changelog."""
        return f"{self.group_id}-network-state"

    @property
    def network_stage(self) -> bool:
        """credential_stuffing is on, so events go through the network-keyed stage."""
        return CREDENTIAL_STUFFING in self.detector_names

    def effective_transactional_id(self) -> str:
        return self.transactional_id or f"{self.group_id}-{socket.gethostname()}"

    def consumer_config(self) -> dict[str, Any]:
        return {
            **self.kafka_common(),
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": min(3000, self.session_timeout_ms // 3),
            "max.poll.interval.ms": self._poll_ms,
        }

    def producer_config(self) -> dict[str, Any]:
        """The output producer: idempotent with acks=all (an acknowledged output is on min.insync.replicas
        replicas, and a retry after a leader change never writes it twice); transactional in exactly-once
        mode. tests/unit/test_durability.py pins it."""
        config: dict[str, Any] = {
            **self.kafka_common(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": self.linger_ms,
            "compression.type": "lz4",
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": max(100_000, 4 * self.max_in_flight),
            "delivery.report.only.error": True,
        }
        if self.exactly_once:
            config["transactional.id"] = self.effective_transactional_id()
            config["transaction.timeout.ms"] = self.transaction_timeout_ms
        return config
