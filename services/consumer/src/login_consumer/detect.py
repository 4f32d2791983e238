"""Stateful detectors: brute_force, credential_stuffing, impossible_travel, new_device, new_country.

The pipeline calls ``Detectors.detect`` once per batch with the enriched documents, in input order, after
enrichment and before risk scoring. It returns, sparsely, the detections per event index: each names its
detector, gives human-readable evidence and a risk contribution (added to the event's score, capped at
100). Detections land in the output's ``detections`` list, their detector names in ``reasons``, and in
``login_consumer_detections_total{detector}``. ``state_sizes`` feeds ``login_consumer_state_entries{store}``.

``StatefulDetectors`` (the default, ``DETECTORS=all``) applies the rules of docs/detection.md over event
time with bounded state (``state.py``). User state is per input partition (events are keyed by
``user_id``); network state spans the assigned partitions. ``on_assign`` restores the assigned partitions
from the changelog topic (``changelog.py``), ``on_revoke`` forgets them, ``changes`` hands the consumer
loop the records to write with each batch before its offsets are committed (``StateChangelog``), and
``rewind`` undoes a batch that was not delivered. ``NoDetectors`` (``DETECTORS=none``) detects nothing.
``build_detectors`` is the one place that chooses.

A detector must not raise for bad data and must not mutate the documents (parts of them are shared
between events through the enrichment caches); if ``detect`` raises, the batch is still processed without
detections and ``login_consumer_errors_total{type="processing"}`` counts it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import structlog

from login_common.geo import COUNTRY_POINTS, great_circle_km
from login_consumer.state import (
    MAX_COUNTRIES,
    MAX_DEVICES,
    MOVE_AFTER,
    DetectorState,
    Failures,
    History,
    Limits,
    NetWindow,
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
    state_time_slack: int = 60
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
            state_time_slack=settings.state_time_slack_seconds,
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
        events = batch.events
        found: dict[int, list[Detection]] = {}
        if not events:
            return found
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
        grace = cfg.grace
        move_after = MOVE_AFTER
        slack = cfg.state_time_slack
        state = self.state
        gen = state.gen
        networks = state.networks
        hot = state.hot
        dirty_networks = state.dirty_networks
        net_cache = self._nets
        partitions = state.partitions
        replay_until = self._replay_until
        parts = batch.partitions

        current = parts[0]
        ps = state.partition(current)
        history, failures = ps.history, ps.failures
        dirty_history, dirty_failures = ps.dirty_history, ps.dirty_failures
        wm, applied = ps.watermark, ps.applied
        replay = replay_until.get(current, -1)
        for i, (doc, p, offset) in enumerate(zip(events, parts, batch.offsets)):  # noqa: B905 - equal lengths
            if p != current:
                ps.watermark, ps.applied, ps.meta_dirty = wm, applied, True
                current = p
                ps = partitions.get(p) or state.partition(p)
                history, failures = ps.history, ps.failures
                dirty_history, dirty_failures = ps.dirty_history, ps.dirty_failures
                wm, applied = ps.watermark, ps.applied
                replay = replay_until.get(p, -1)
            ts: int = doc["timestamp"]
            late: str | None = None
            if offset > replay:
                applied = offset
                if ts > wm:
                    wm = ts
                elif ts < wm - grace:
                    late = f"late: {wm - ts}s behind the watermark (grace {grace}s); state not updated"
                    self.late_events += 1
            else:
                late = "replayed: applied before the restore; state not updated"
                self.replayed_events += 1
            dets: list[Detection] | None = None
            if doc["outcome"] == "failure":
                user: str = doc["user_id"]
                ip: str = doc["ip"]
                if bf_on:
                    pair = (ip, user)
                    entry = failures.get(pair)
                    if late is not None:  # a replayed failure is in the window already; a late one is not
                        count = (offset > replay) + (entry.count(ts - bf_w, ts) if entry is not None else 0)
                    else:
                        if entry is None:
                            entry = failures[pair] = Failures(ip, user, gen)
                            dirty_failures.append(entry)
                        else:
                            del failures[pair]
                            failures[pair] = entry
                            if entry.gen != gen:
                                entry.gen = gen
                                dirty_failures.append(entry)
                        count = entry.add(ts, bf_w, grace)
                    if count >= bf_k:
                        dets = [self._brute_force(count, ip, late)]
                if cs_on:
                    net = net_cache.get(ip) or self._network(ip)
                    window = networks.get(net)
                    if late is not None:
                        extra = user if offset > replay else None
                        accounts = window.count(ts - cs_w, ts, extra) if window is not None else 1
                    else:
                        if window is None:
                            window = networks[net] = NetWindow(net, gen)
                            dirty_networks.append(window)
                        else:
                            del networks[net]
                            networks[net] = window
                            if window.gen != gen:
                                window.gen = gen
                                dirty_networks.append(window)
                        accounts = window.add(ts, user, p, cs_w, grace)
                    if accounts >= cs_m:
                        if window is not None:
                            hot[net] = window
                        if dets is None:
                            dets = [self._stuffing(accounts, net, late)]
                        else:
                            dets.append(self._stuffing(accounts, net, late))
            else:  # a success, or an event without outcome
                if hot:  # networks whose last failure saw >= m accounts: only they can flag a success
                    ip = doc["ip"]
                    net = net_cache.get(ip) or self._network(ip)
                    window = hot.get(net)
                    if window is not None:
                        accounts = (
                            window.accounts_at(ts, cs_w, grace)
                            if late is None
                            else window.count(ts - cs_w, ts)
                        )
                        if window.dead and window.gen != gen:
                            window.gen = gen
                            dirty_networks.append(window)
                        if accounts >= cs_m:
                            dets = [self._stuffing(accounts, net, late)]
                        elif late is None:
                            del hot[net]
                if history_on:
                    user = doc["user_id"]
                    device: str | None = doc["device_id"]
                    geo = doc["geo"]
                    country: str | None = geo["country_code"] if geo is not None else None
                    known = history.get(user)
                    if (
                        known is not None
                        and late is None
                        and country == known.last_country
                        and device in known.devices
                    ):  # the common case: a known device, in the country of the last success
                        if ts >= known.last_ts:  # noqa: PLR1730 - no call on the hot path
                            known.last_ts = ts
                        # only the time moved: written once it is more than `slack` ahead of the record
                        if ts - known.saved_ts > slack and known.gen != gen:
                            known.gen = gen
                            dirty_history.append(known)
                        if ts - known.moved > move_after:
                            del history[user]
                            history[user] = known
                            known.moved = ts
                        if dets is not None:
                            found[i] = dets
                        continue
                    if known is None:
                        if late is None:
                            known = history[user] = History(
                                user,
                                [] if device is None else [device],
                                [] if country is None else [country],
                                ts,
                                country,
                                gen,
                            )
                            dirty_history.append(known)
                        if dets is not None:
                            found[i] = dets
                        continue
                    new_device = nd_on and device is not None and device not in known.devices
                    new_country = country is not None and country not in known.countries
                    last = known.last_country
                    if (
                        new_device
                        or (new_country and nc_on)
                        or (it_on and country is not None and last != country)
                    ):
                        more = self._compare(
                            known, device if new_device else None, country, new_country, ts, late
                        )
                        if more:
                            dets = more if dets is None else dets + more
                    if late is None:
                        if known.gen != gen:
                            known.gen = gen
                            dirty_history.append(known)
                        if ts - known.moved > move_after:
                            del history[user]
                            history[user] = known
                            known.moved = ts
                        if new_device:
                            devices = known.devices
                            devices.append(device)  # type: ignore[arg-type] # new_device: not None
                            if len(devices) > MAX_DEVICES:
                                del devices[0]
                        elif device is not None and not nd_on and device not in known.devices:
                            known.devices.append(device)
                            if len(known.devices) > MAX_DEVICES:
                                del known.devices[0]
                        if country is not None:
                            if new_country:
                                countries = known.countries
                                countries.append(country)
                                if len(countries) > MAX_COUNTRIES:
                                    del countries[0]
                            if ts >= known.last_ts:
                                known.last_ts = ts
                                known.last_country = country
            if dets is not None:
                found[i] = dets
        ps.watermark, ps.applied, ps.meta_dirty = wm, applied, True
        state.sweep()
        if self.source is None:
            state.discard_changes()
        return found

    def _compare(  # noqa: PLR0917
        self,
        known: History,
        new_device: str | None,
        country: str | None,
        new_country: bool,
        ts: int,
        late: str | None,
    ) -> list[Detection]:
        """new_device, new_country and impossible_travel for a success of a user with history."""
        cfg = self.config
        risks = cfg.risks
        out: list[Detection] = []
        if new_device is not None:
            text = f"device {new_device} is not among the account's {len(known.devices)} known device(s)"
            out.append(Detection(NEW_DEVICE, self._evidence(text, late), risks[NEW_DEVICE]))
        if new_country and NEW_COUNTRY in cfg.enabled:
            text = f"country {country} is new for the account (known: {','.join(known.countries)})"
            out.append(Detection(NEW_COUNTRY, self._evidence(text, late), risks[NEW_COUNTRY]))
        last = known.last_country
        if country is None or last is None or last == country or IMPOSSIBLE_TRAVEL not in cfg.enabled:
            return out
        km = self._dist.get(last, {}).get(country)
        if km is None or km < cfg.travel_min_distance_km:
            return out
        elapsed = abs(ts - known.last_ts)
        speed = km * 3600.0 / elapsed if elapsed else float("inf")
        if speed > cfg.travel_max_speed_kmh:
            pace = f"{speed:.0f} km/h" if elapsed else "at once"
            text = (
                f"{last} -> {country}: {km:.0f} km in {elapsed}s, {pace} "
                f"(max {cfg.travel_max_speed_kmh:.0f} km/h, min {cfg.travel_min_distance_km:.0f} km)"
            )
            out.append(Detection(IMPOSSIBLE_TRAVEL, self._evidence(text, late), risks[IMPOSSIBLE_TRAVEL]))
        return out

    def _brute_force(self, count: int, ip: str, late: str | None) -> Detection:
        cfg = self.config
        text = (
            f"{count} failed logins for this account from {ip} within {cfg.brute_force_window}s "
            f"(threshold {cfg.brute_force_failures})"
        )
        return Detection(BRUTE_FORCE, self._evidence(text, late), cfg.risks[BRUTE_FORCE])

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
