"""Consumer configuration from environment variables."""

from __future__ import annotations

from pydantic import Field

from login_common.settings import CommonSettings


class ConsumerSettings(CommonSettings):
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
    batch_size: int = Field(1000, ge=1, le=100_000, description="Maximum messages consumed per batch.")
    poll_timeout: float = Field(0.5, gt=0, le=30, description="Seconds to wait for a batch.")
