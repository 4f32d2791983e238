"""Producer metrics, registered on an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from login_common.access import KINDS

ERROR_TYPES = (*KINDS, "kafka")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class ProducerMetrics:
    sent: Counter
    delivered: Counter
    send_errors: Counter
    errors: Counter
    delivery_latency: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ProducerMetrics:
        metrics = cls(
            sent=Counter(
                "login_producer_events_sent",
                "Events handed to the Kafka client, by simulated scenario.",
                ["scenario"],
                registry=registry,
            ),
            delivered=Counter(
                "login_producer_events_delivered",
                "Events acknowledged by the broker.",
                registry=registry,
            ),
            send_errors=Counter(
                "login_producer_send_errors",
                "Events the broker did not acknowledge, by error.",
                ["error"],
                registry=registry,
            ),
            errors=Counter(
                "login_producer_errors",
                "Client errors by type: authorization, authentication, missing_topic (the broker refused "
                "the events: they are held and sent again), kafka (any other client error).",
                ["type"],
                registry=registry,
            ),
            delivery_latency=Histogram(
                "login_producer_delivery_latency_seconds",
                "Time from send to broker acknowledgement.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
        )
        for kind in ERROR_TYPES:  # every series exists from the start (alerts see 0, not "no data")
            metrics.errors.labels(kind)
        return metrics
