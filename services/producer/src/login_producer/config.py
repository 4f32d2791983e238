"""Producer configuration: environment variables, overridable by command-line flags."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from login_common.settings import CommonSettings
from login_producer.simulate import ScenarioMix
from login_producer.truth import TruthRules

_MIX = ScenarioMix()
_RULES = TruthRules()
RATIO_FIELDS = tuple(f"{name}_ratio" for name in _MIX.ratios())
RULE_FIELDS = tuple(f"truth_{name}" for name in TruthRules.__dataclass_fields__)


def _ratio(name: str, what: str) -> Any:
    return Field(
        getattr(_MIX, name),
        ge=0,
        le=0.5,
        description=f"Share of events that belong to {what} (scenario {name}).",
    )


class ProducerSettings(CommonSettings):
    metrics_port: int = Field(
        8001, ge=0, le=65535, description="Port of /metrics, /healthz and /ready (0 = any free port)."
    )
    rate: float = Field(
        100.0, ge=0, description="Events per second, event time = wall clock; 0 = simulated clock, flat out."
    )
    count: int = Field(0, ge=0, description="Stop after this many events; 0 = no limit.")
    duration: float = Field(0.0, ge=0, description="Stop after this many wall-clock seconds; 0 = no limit.")
    seed: int = Field(42, description="Random seed: the same seed (and start time) gives the same events.")
    users: int = Field(1000, ge=1, le=1_000_000, description="Size of the simulated user population.")
    start_time: int = Field(
        0,
        ge=0,
        description="Epoch seconds of the simulated clock's start; 0 = now when RATE>0, "
        "else 2025-01-06T00:00:00Z (fixed, so runs repeat exactly).",
    )
    logins_per_user_day: float = Field(
        3.0, gt=0, le=1000, description="Everyday logins per user per day (sets the pace when RATE=0)."
    )
    office_share: float = Field(
        0.15, ge=0, le=1, description="Share of users who work behind a shared office NAT address."
    )
    output_format: Literal["full", "fetch"] = Field(
        "full", description="full: every field plus labels in headers; fetch: the 7-field generator format."
    )
    linger_ms: int = Field(20, ge=0, le=10_000, description="librdkafka linger.ms (batching delay).")

    brute_force_ratio: float = _ratio("brute_force", "brute-force bursts")
    credential_stuffing_ratio: float = _ratio("credential_stuffing", "credential-stuffing campaigns")
    impossible_travel_ratio: float = _ratio("impossible_travel", "impossible-travel attacks")
    account_takeover_ratio: float = _ratio("account_takeover", "account takeovers")
    benign_travel_ratio: float = _ratio("benign_travel", "real trips abroad")
    new_phone_ratio: float = _ratio("new_phone", "first logins from a new phone")
    forgetful_ratio: float = _ratio("forgetful", "forgetful users (failures then success)")

    truth_brute_force_failures: int = Field(
        _RULES.brute_force_failures, ge=1, description="Truth: failures per (user, IP) in the window."
    )
    truth_brute_force_window_s: int = Field(
        _RULES.brute_force_window_s, ge=1, description="Truth: brute-force sliding window (s)."
    )
    truth_stuffing_accounts: int = Field(
        _RULES.stuffing_accounts, ge=2, description="Truth: distinct failing accounts per network."
    )
    truth_stuffing_window_s: int = Field(
        _RULES.stuffing_window_s, ge=1, description="Truth: credential-stuffing sliding window (s)."
    )
    truth_stuffing_prefix: Literal[24, 32] = Field(
        _RULES.stuffing_prefix, description="Truth: network of an IP for stuffing, /24 or /32."
    )
    truth_travel_max_speed_kmh: float = Field(
        _RULES.travel_max_speed_kmh, gt=0, description="Truth: faster than this is impossible travel."
    )
    truth_travel_min_distance_km: float = Field(
        _RULES.travel_min_distance_km, ge=0, description="Truth: shorter jumps are never impossible travel."
    )

    @field_validator("forgetful_ratio")
    @classmethod
    def _ratios_leave_room(cls, value: float, info: ValidationInfo) -> float:
        total = value + sum(
            float(info.data.get(name, 0.0)) for name in RATIO_FIELDS if name != "forgetful_ratio"
        )
        if total >= 0.9:
            names = ", ".join(n.upper() for n in RATIO_FIELDS)
            raise ValueError(f"the scenario ratios ({names}) sum to {total:.3f}; keep the sum below 0.9")
        return value

    def scenario_mix(self) -> ScenarioMix:
        return ScenarioMix(**{name: getattr(self, f"{name}_ratio") for name in ScenarioMix().ratios()})

    def truth_rules(self) -> TruthRules:
        return TruthRules(
            **{name: getattr(self, f"truth_{name}") for name in TruthRules.__dataclass_fields__}
        )
