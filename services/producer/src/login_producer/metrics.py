"""Producer metrics, registered on an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class ProducerMetrics:
    sent: Counter
    delivered: Counter
    send_errors: Counter
    delivery_latency: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ProducerMetrics:
        return cls(
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
            delivery_latency=Histogram(
                "login_producer_delivery_latency_seconds",
                "Time from send to broker acknowledgement.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
        )
