"""Consumer metrics, registered on an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

PROCESSING_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)


@dataclass(frozen=True)
class ConsumerMetrics:
    consumed: Counter
    processed: Counter
    dlq: Counter
    processing: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ConsumerMetrics:
        return cls(
            consumed=Counter(
                "login_consumer_events_consumed", "Messages read from the input topic.", registry=registry
            ),
            processed=Counter(
                "login_consumer_events_processed", "Events written to the output topic.", registry=registry
            ),
            dlq=Counter(
                "login_consumer_events_dlq",
                "Messages sent to the dead-letter topic, by reason.",
                ["reason"],
                registry=registry,
            ),
            processing=Histogram(
                "login_consumer_processing_seconds",
                "Processing time per event (batch time divided by batch size).",
                buckets=PROCESSING_BUCKETS,
                registry=registry,
            ),
        )
