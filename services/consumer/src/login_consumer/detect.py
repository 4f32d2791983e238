"""The seam for stateful detectors (brute force, credential stuffing, impossible travel, new device/country).

The pipeline calls ``Detectors.detect`` once per batch with the enriched documents, in input order, after
enrichment and before risk scoring. It returns, sparsely, the detections per event index: each names its
detector, gives human-readable evidence and a risk contribution (added to the event's score, capped at
100). Detections land in the output's ``detections`` list, their detector names in ``reasons``, and in
``login_consumer_detections_total{detector}``. ``state_sizes`` feeds ``login_consumer_state_entries{store}``.

State is per input partition (events are keyed by ``user_id``, so a user's events share a partition):
``on_assign`` is where state for newly assigned partitions can be restored, ``on_revoke`` where it can be
flushed (``lost=True``: the partitions were taken away without a clean hand-over; do not flush).

This module ships the no-op ``NoDetectors``; ``build_detectors`` is the one place that chooses the
implementation. A detector must not raise for bad data and must not mutate the documents (parts of them
are shared between events through the enrichment caches); if ``detect`` raises, the batch is still
processed without detections and ``login_consumer_errors_total{type="processing"}`` counts it.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import structlog

from login_common.geo import COUNTRY_POINTS, great_circle_km
from login_consumer.state import (
    MAX_COUNTRIES,
    MAX_DEVICES,
    MAX_FAILURES,
    DetectorState,
    Failures,
    History,
    Limits,
    NetWindow,
    PartitionState,
)

if TYPE_CHECKING:
    from login_consumer.config import ConsumerSettings

log = structlog.get_logger("login_consumer")


@dataclass(frozen=True, slots=True)
class Detection:
    """One detector firing for one event."""

    detector: str  # a short, stable snake_case name: it is a metric label value
    evidence: tuple[str, ...] = ()  # why, for humans: "5 failures in 60s from 3 IPs"
    risk: int = 0  # 0-100, added to the event's risk score


@dataclass(frozen=True, slots=True)
class PartitionRef:
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class DetectBatch:
    """One batch as detectors see it.

    ``events[i]`` is the enriched document of the i-th valid event (the fields of processed_login v1
    except the risk fields, which are filled afterwards), read-only; ``partitions[i]`` and ``offsets[i]``
    say where it came from. ``now`` is the batch's wall-clock time (epoch seconds).
    """

    events: Sequence[dict[str, Any]]
    partitions: Sequence[int]
    offsets: Sequence[int]
    now: float


NO_DETECTIONS: Final[Mapping[int, Sequence[Detection]]] = {}


@runtime_checkable
class Detectors(Protocol):
    def detect(self, batch: DetectBatch) -> Mapping[int, Sequence[Detection]]:
        """Detections by event index in ``batch.events``; events without any are left out."""
        ...

    def on_assign(self, partitions: Sequence[PartitionRef]) -> None:
        """Partitions were assigned to this consumer: restore their state before their events arrive."""
        ...

    def on_revoke(self, partitions: Sequence[PartitionRef], *, lost: bool) -> None:
        """Partitions are going away (their offsets are committed first unless ``lost``)."""
        ...

    def state_sizes(self) -> Mapping[str, int]:
        """Entries per state store, e.g. ``{"failures_by_user": 1234}``."""
        ...


@runtime_checkable
class StateChangelog(Protocol):
    """Detectors whose state is written to a changelog topic with each batch (before its commit)."""

    def changes(self) -> Sequence[tuple[str, int, bytes, bytes | None]]:
        """(topic, partition, key, value or None for a tombstone) of the state changed since the last call."""
        ...

    def rewind(self, partitions: Sequence[PartitionRef]) -> None:
        """The last batch of these partitions was not delivered and will be processed again."""
        ...


class NoDetectors:
    """Detects nothing and keeps no state (``DETECTORS=none``)."""

    def detect(self, batch: DetectBatch) -> Mapping[int, Sequence[Detection]]:
        return NO_DETECTIONS

    def on_assign(self, partitions: Sequence[PartitionRef]) -> None:
        return None

    def on_revoke(self, partitions: Sequence[PartitionRef], *, lost: bool) -> None:
        return None

    def state_sizes(self) -> Mapping[str, int]:
        return {}


# --------------------------------------------------------------------------- the stateful detectors

BRUTE_FORCE: Final = "brute_force"
CREDENTIAL_STUFFING: Final = "credential_stuffing"
IMPOSSIBLE_TRAVEL: Final = "impossible_travel"
NEW_DEVICE: Final = "new_device"
NEW_COUNTRY: Final = "new_country"
DETECTOR_NAMES: Final = (BRUTE_FORCE, CREDENTIAL_STUFFING, IMPOSSIBLE_TRAVEL, NEW_DEVICE, NEW_COUNTRY)
DEFAULT_RISKS: Final[dict[str, int]] = {
    BRUTE_FORCE: 40,
    CREDENTIAL_STUFFING: 40,
    IMPOSSIBLE_TRAVEL: 50,
    NEW_DEVICE: 15,
    NEW_COUNTRY: 20,
}
_NET_CACHE_SIZE: Final = 100_000


def parse_detectors(text: str) -> tuple[str, ...]:
    """``DETECTORS``: comma-separated names, ``all`` or ``none``; raise ValueError naming a bad one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names in (["all"], []):
        return DETECTOR_NAMES if names else ()
    if names == ["none"]:
        return ()
    unknown = [name for name in names if name not in DETECTOR_NAMES]
    if unknown:
        raise ValueError(f"unknown detector(s) {', '.join(unknown)}; known: {', '.join(DETECTOR_NAMES)}")
    return tuple(name for name in DETECTOR_NAMES if name in names)


def parse_risks(text: str) -> dict[str, int]:
    """``DETECTOR_RISKS``: ``name=risk,...`` (0-100) overriding DEFAULT_RISKS."""
    out = dict(DEFAULT_RISKS)
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in DEFAULT_RISKS:
            raise ValueError(f"{item!r}: expected name=risk with name one of {', '.join(DETECTOR_NAMES)}")
        try:
            risk = int(value.strip())
        except ValueError:
            raise ValueError(f"{item!r}: risk must be an integer 0-100") from None
        if not 0 <= risk <= 100:
            raise ValueError(f"{item!r}: risk must be an integer 0-100")
        out[name] = risk
    return out


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Thresholds and bounds; the defaults equal the producer's truth rules (TRUTH_* settings)."""

    enabled: tuple[str, ...] = DETECTOR_NAMES
    brute_force_failures: int = 5
    brute_force_window: int = 300
    stuffing_accounts: int = 10
    stuffing_window: int = 600
    stuffing_prefix: int = 24  # IPv4 network: the /24, or 32 = the address itself; IPv6: always the /64
    travel_max_speed_kmh: float = 1000.0
    travel_min_distance_km: float = 500.0
    grace: int = 300
    user_ttl: int = 30 * 86_400
    max_users: int = 200_000
    max_failure_keys: int = 100_000
    max_networks: int = 50_000
    risks: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RISKS))

    @classmethod
    def from_settings(cls, settings: ConsumerSettings) -> DetectorConfig:
        return cls(
            enabled=parse_detectors(settings.detectors),
            brute_force_failures=settings.brute_force_failures,
            brute_force_window=settings.brute_force_window_seconds,
            stuffing_accounts=settings.stuffing_accounts,
            stuffing_window=settings.stuffing_window_seconds,
            stuffing_prefix=settings.stuffing_prefix,
            travel_max_speed_kmh=settings.travel_max_speed_kmh,
            travel_min_distance_km=settings.travel_min_distance_km,
            grace=settings.detector_grace_seconds,
            user_ttl=settings.user_state_ttl_seconds,
            max_users=settings.max_state_users,
            max_failure_keys=settings.max_state_failure_keys,
            max_networks=settings.max_state_networks,
            risks=parse_risks(settings.detector_risks),
        )

    def limits(self) -> Limits:
        return Limits(
            user_ttl=self.user_ttl,
            failure_window=self.brute_force_window,
            network_window=self.stuffing_window,
            grace=self.grace,
            max_users=self.max_users,
            max_failure_keys=self.max_failure_keys,
            max_networks=self.max_networks,
        )


class StateSource(Protocol):
    """Where partitions' state is restored from (the changelog topic)."""

    topic: str

    def read(self, partitions: Sequence[int]) -> Mapping[int, Sequence[tuple[bytes, bytes | None]]]:
        """Each partition's records, oldest first."""
        ...


def _distances() -> dict[str, dict[str, float]]:
    return {
        a: {b: great_circle_km(pa, pb) for b, pb in COUNTRY_POINTS.items()}
        for a, pa in COUNTRY_POINTS.items()
    }


def network_of(ip: str, prefix: int = 24) -> str:
    """The network an address belongs to for credential stuffing: IPv4 /24 (or the address), IPv6 /64."""
    if ":" not in ip:
        if prefix == 24:
            return ip.rpartition(".")[0] + ".0/24"
        return ip + "/32"
    try:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    except ValueError:
        return ip


class StatefulDetectors:
    """brute_force, credential_stuffing, impossible_travel, new_device and new_country over event time.

    Per event, in batch order: a failure updates its (user, IP) window and its network's window; a
    success (or an event without ``outcome``: the 7-field format records logins) is compared with the
    user's history, then recorded in it. Late rule: an event whose timestamp is more than ``grace``
    seconds behind its partition's watermark (the latest event time applied), or that was already applied
    before a restore (a replay), is scored against the state as it is, flagged ``late``/``replayed`` in its
    evidence, and changes nothing. Events within the grace period are applied in event-time order.
    """

    def __init__(self, config: DetectorConfig | None = None, source: StateSource | None = None) -> None:
        self.config = config = config or DetectorConfig()
        self.state = DetectorState(config.limits())
        self.source = source
        self._topic = source.topic if source is not None else ""
        self._dist = _distances()
        self._nets: dict[str, str] = {}
        self._replay_until: dict[int, int] = {}  # partition -> last offset applied before the restore
        self.late_events = 0
        self.replayed_events = 0
        self.restored_entries = 0

    # ------------------------------------------------------------------ the protocol

    def on_assign(self, partitions: Sequence[PartitionRef]) -> None:
        numbers = sorted({ref.partition for ref in partitions})
        if not numbers:
            return
        self.state.drop(numbers)  # a re-assignment starts from the changelog, never from leftovers
        records = self.source.read(numbers) if self.source is not None else {}
        for p in numbers:
            self.restored_entries += self.state.restore(p, records.get(p, ()))
            self._replay_until[p] = self.state.partition(p).applied

    def on_revoke(self, partitions: Sequence[PartitionRef], *, lost: bool) -> None:
        numbers = [ref.partition for ref in partitions]
        self.state.drop(numbers)
        for p in numbers:
            self._replay_until.pop(p, None)

    def state_sizes(self) -> Mapping[str, int]:
        return self.state.sizes()

    def changes(self) -> list[tuple[str, int, bytes, bytes | None]]:
        changes = self.state.changes()
        if not self.source:
            return []
        topic = self._topic
        return [(topic, p, key, value) for p, key, value in changes]

    def rewind(self, partitions: Sequence[PartitionRef]) -> None:
        """Undo a failed batch: restore its partitions from the changelog (exact in exactly-once mode,
        where the batch's changelog records were aborted with it). Without a readable changelog the state
        is kept and the batch's events, seen again, are treated as replays."""
        numbers = sorted({ref.partition for ref in partitions})
        if not numbers:
            return
        if self.source is not None:
            try:
                records = self.source.read(numbers)
            except Exception as exc:  # noqa: BLE001 - fall back to replay protection
                log.warning("state.rewind_failed", error=str(exc)[:300], partitions=numbers)
            else:
                self.state.drop(numbers)
                for p in numbers:
                    self.restored_entries += self.state.restore(p, records.get(p, ()))
                    self._replay_until[p] = self.state.partition(p).applied
                return
        for p in numbers:
            self._replay_until[p] = self.state.partition(p).applied

    def _network(self, ip: str) -> str:
        net = self._nets.get(ip)
        if net is None:
            if len(self._nets) >= _NET_CACHE_SIZE:
                self._nets.clear()
            net = self._nets[ip] = network_of(ip, self.config.stuffing_prefix)
        return net

    def detect(self, batch: DetectBatch) -> Mapping[int, Sequence[Detection]]:
        cfg = self.config
        enabled = cfg.enabled
        bf_on = BRUTE_FORCE in enabled
        cs_on = CREDENTIAL_STUFFING in enabled
        it_on = IMPOSSIBLE_TRAVEL in enabled
        nd_on = NEW_DEVICE in enabled
        nc_on = NEW_COUNTRY in enabled
        history_on = it_on or nd_on or nc_on
        bf_k, bf_w = cfg.brute_force_failures, cfg.brute_force_window
        cs_m, cs_w = cfg.stuffing_accounts, cfg.stuffing_window
        vmax, dmin = cfg.travel_max_speed_kmh, cfg.travel_min_distance_km
        grace = cfg.grace
        risks = cfg.risks
        dist = self._dist
        state = self.state
        gen = state.gen
        networks = state.networks
        network = self._network
        partitions = state.partitions
        replay_until = self._replay_until
        found: dict[int, list[Detection]] = {}
        events, parts, offsets = batch.events, batch.partitions, batch.offsets

        if not events:
            return found
        current = parts[0]
        ps: PartitionState = state.partition(current)
        ps.meta_gen = gen
        replay = replay_until.get(current, -1)
        for i, doc in enumerate(events):
            p = parts[i]
            if p != current:
                current = p
                ps = partitions.get(p) or state.partition(p)
                ps.meta_gen = gen
                replay = replay_until.get(p, -1)
            ts: int = doc["timestamp"]
            late: str | None = None
            if offsets[i] <= replay:
                late = "replayed: applied before the restore; state not updated"
                self.replayed_events += 1
            else:
                ps.applied = offsets[i]
                wm = ps.watermark
                if ts > wm:
                    ps.watermark = ts
                elif ts < wm - grace:
                    late = f"late: {wm - ts}s behind the watermark (grace {grace}s); state not updated"
                    self.late_events += 1
            user: str = doc["user_id"]
            ip: str = doc["ip"]
            dets: list[Detection] | None = None
            if doc["outcome"] == "failure":
                if bf_on:
                    failures = ps.failures
                    key = (user, ip)
                    entry = failures.get(key)
                    horizon = ts - bf_w
                    if late is not None:
                        count = 1 + (sum(1 for t in entry.times if horizon < t <= ts) if entry else 0)
                    elif entry is None:
                        failures[key] = Failures(deque((ts,)), gen)
                        count = 1
                    else:
                        del failures[key]
                        failures[key] = entry
                        entry.gen = gen
                        times = entry.times
                        slack = horizon - grace
                        while times and times[0] <= slack:
                            times.popleft()
                        if not times or ts >= times[-1]:
                            times.append(ts)
                            count = len(times) if times[0] > horizon else sum(1 for t in times if t > horizon)
                        else:
                            at = len(times)
                            while at and times[at - 1] > ts:
                                at -= 1
                            times.insert(at, ts)
                            count = sum(1 for t in times if horizon < t <= ts)
                        if len(times) > MAX_FAILURES:
                            times.popleft()
                    if count >= bf_k:
                        dets = [
                            Detection(
                                BRUTE_FORCE,
                                self._evidence(
                                    f"{count} failed logins for this account from {ip} within {bf_w}s "
                                    f"(threshold {bf_k})",
                                    late,
                                ),
                                risks[BRUTE_FORCE],
                            )
                        ]
                if cs_on:
                    net = network(ip)
                    window = networks.get(net)
                    horizon = ts - cs_w
                    if late is not None:
                        accounts = window.accounts_between(horizon, ts, user) if window else 1
                    else:
                        if window is None:
                            window = networks[net] = NetWindow(gen)
                        else:
                            del networks[net]
                            networks[net] = window
                            window.gen = gen
                            window.expire(horizon - grace)
                        entries = window.entries
                        in_order = not entries or ts >= entries[-1][0]
                        window.add(ts, user, p)
                        if in_order and entries[0][0] > horizon:
                            accounts = len(window.accounts)
                        else:
                            accounts = window.accounts_between(horizon, ts)
                    if accounts >= cs_m:
                        det = self._stuffing(accounts, net, late)
                        if dets is None:
                            dets = [det]
                        else:
                            dets.append(det)
            else:  # a success, or an event without outcome
                if cs_on:
                    net = network(ip)
                    window = networks.get(net)
                    if window is not None and window.entries:
                        horizon = ts - cs_w
                        entries = window.entries
                        if entries[0][0] > horizon and ts >= entries[-1][0]:
                            accounts = len(window.accounts)
                        else:
                            accounts = window.accounts_between(horizon, ts)
                        if accounts >= cs_m:
                            dets = [self._stuffing(accounts, net, late)]
                if history_on:
                    history = ps.history
                    device: str | None = doc["device_id"]
                    geo = doc["geo"]
                    country: str | None = geo["country_code"] if geo is not None else None
                    known = history.get(user)
                    if known is None:
                        if late is None:
                            history[user] = History(
                                [device] if device is not None else [],
                                [country] if country is not None else [],
                                ts,
                                country,
                                gen,
                            )
                    else:
                        if nd_on and device is not None and device not in known.devices:
                            det = Detection(
                                NEW_DEVICE,
                                self._evidence(
                                    f"device {device} is not among the account's {len(known.devices)} "
                                    "known device(s)",
                                    late,
                                ),
                                risks[NEW_DEVICE],
                            )
                            dets = [det] if dets is None else [*dets, det]
                        if nc_on and country is not None and country not in known.countries:
                            det = Detection(
                                NEW_COUNTRY,
                                self._evidence(
                                    f"country {country} is new for the account "
                                    f"(known: {','.join(known.countries)})",
                                    late,
                                ),
                                risks[NEW_COUNTRY],
                            )
                            dets = [det] if dets is None else [*dets, det]
                        last = known.last_country
                        if it_on and country is not None and last is not None and last != country:
                            km = dist.get(last, {}).get(country)
                            if km is not None and km >= dmin:
                                elapsed = abs(ts - known.last_ts)
                                if elapsed == 0 or km * 3600.0 / elapsed > vmax:
                                    det = Detection(
                                        IMPOSSIBLE_TRAVEL,
                                        self._evidence(
                                            f"{last} -> {country}: {km:.0f} km in {elapsed}s = "
                                            + (
                                                "instantly"
                                                if elapsed == 0
                                                else f"{km * 3600.0 / elapsed:.0f} km/h"
                                            )
                                            + f" (max {vmax:.0f} km/h, min {dmin:.0f} km)",
                                            late,
                                        ),
                                        risks[IMPOSSIBLE_TRAVEL],
                                    )
                                    dets = [det] if dets is None else [*dets, det]
                        if late is None:
                            del history[user]
                            history[user] = known
                            known.gen = gen
                            if device is not None and device not in known.devices:
                                devices = known.devices
                                devices.append(device)
                                if len(devices) > MAX_DEVICES:
                                    del devices[0]
                            if country is not None:
                                if country not in known.countries:
                                    countries = known.countries
                                    countries.append(country)
                                    if len(countries) > MAX_COUNTRIES:
                                        del countries[0]
                                if ts >= known.last_ts:
                                    known.last_ts = ts
                                    known.last_country = country
            if dets is not None:
                found[i] = dets
        state.sweep()
        return found

    def _stuffing(self, accounts: int, net: str, late: str | None) -> Detection:
        cfg = self.config
        return Detection(
            CREDENTIAL_STUFFING,
            self._evidence(
                f"{accounts} accounts failed to log in from {net} within {cfg.stuffing_window}s "
                f"(threshold {cfg.stuffing_accounts})",
                late,
            ),
            cfg.risks[CREDENTIAL_STUFFING],
        )

    @staticmethod
    def _evidence(text: str, late: str | None) -> tuple[str, ...]:
        return (text,) if late is None else (text, late)


def build_detectors(settings: ConsumerSettings) -> Detectors:
    """The detectors the consumer runs with: none, or the stateful ones (with their changelog)."""
    config = DetectorConfig.from_settings(settings)
    if not config.enabled:
        return NoDetectors()
    source: StateSource | None = None
    if settings.state_changelog:
        from login_consumer.changelog import Changelog

        source = Changelog(settings)
    return StatefulDetectors(config, source)
