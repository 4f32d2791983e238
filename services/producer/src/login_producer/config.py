"""Producer configuration: environment variables, overridable by command-line flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from login_common.settings import CommonSettings


class ProducerSettings(CommonSettings):
    metrics_port: int = Field(
        8001, ge=0, le=65535, description="Port of /metrics, /healthz and /ready (0 = any free port)."
    )
    rate: float = Field(100.0, ge=0, description="Events per second; 0 sends as fast as possible.")
    count: int = Field(0, ge=0, description="Stop after this many events; 0 = no limit.")
    duration: float = Field(0.0, ge=0, description="Stop after this many seconds; 0 = no limit.")
    seed: int = Field(42, description="Random seed: the same seed gives the same events.")
    users: int = Field(1000, ge=1, le=1_000_000, description="Size of the simulated user population.")
    output_format: Literal["full", "fetch"] = Field(
        "full", description="full: every field plus labels in headers; fetch: the 7-field generator format."
    )
    linger_ms: int = Field(20, ge=0, le=10_000, description="librdkafka linger.ms (batching delay).")
