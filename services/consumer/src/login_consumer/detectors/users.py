"""The user-keyed stage's detectors: brute_force, impossible_travel, new_device, new_country.

Events are keyed by ``user_id``, so every event of one account is in one input partition: the state of
these detectors is per input partition (``stores/users.py``), restored from and written to the same
partition of the ``<GROUP_ID>-detector-state`` changelog, and moves with its partition on a rebalance.
credential_stuffing needs every account of a network and runs on the network stage instead
(``detectors/networks.py``).

Per event, in batch order: a failure updates its (user, IP) window; a success (or an event without
``outcome``: the 7-field format records logins) is compared with the user's history, then recorded in it.
Late rule: an event whose timestamp is more than ``grace`` seconds behind its partition's watermark (the
latest event time applied), or that was already applied before a restore (a replay), is scored against
the state as it is, flagged ``late``/``replayed`` in its evidence, and changes nothing. Events within the
grace period are applied in event-time order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from login_common.geo import COUNTRY_POINTS, great_circle_km
from login_consumer.detectors.base import DetectBatch, Detection, DetectorConfig
from login_consumer.detectors.names import BRUTE_FORCE, IMPOSSIBLE_TRAVEL, NEW_COUNTRY, NEW_DEVICE
from login_consumer.records import PartitionRef
from login_consumer.stores.histories import device_key
from login_consumer.stores.restore import Restorer, StateSource
from login_consumer.stores.users import (
    MAX_COUNTRIES,
    MAX_DEVICES,
    MOVE_AFTER,
    DetectorState,
    Failures,
    History,
    Limits,
)


def limits(config: DetectorConfig) -> Limits:
    """The user stores' bounds from the detector settings."""
    return Limits(
        user_ttl=config.user_ttl,
        failure_window=config.brute_force_window,
        grace=config.grace,
        max_users=config.max_users,
        max_failure_keys=config.max_failure_keys,
    )


def _distances() -> dict[str, dict[str, float]]:
    return {
        a: {b: great_circle_km(pa, pb) for b, pb in COUNTRY_POINTS.items()}
        for a, pa in COUNTRY_POINTS.items()
    }


class UserDetectors:
    """brute_force, impossible_travel, new_device and new_country over event time (the order of work and
    the late rule: the module's docstring). ``detect`` is the hot path: one loop, locals, no calls for
    the common case (a known device in the country of the last success)."""

    def __init__(self, config: DetectorConfig | None = None, source: StateSource | None = None) -> None:
        self.config = config = config or DetectorConfig()
        self.state = DetectorState(limits(config))
        self.source = source
        self._topic = source.topic if source is not None else ""
        self._dist = _distances()
        self.restorer = Restorer(self.state, source, lambda p: self.state.partition(p).applied, stage="user")
        self._replay_until = self.restorer.replay_until  # partition -> last offset applied before the restore
        self.late_events = 0
        self.replayed_events = 0

    @property
    def restored_entries(self) -> int:
        return self.restorer.restored_entries

    # ------------------------------------------------------------------ the protocol

    def on_assign(self, partitions: Sequence[PartitionRef]) -> None:
        self.restorer.assign(ref.partition for ref in partitions)

    def on_revoke(self, partitions: Sequence[PartitionRef], *, lost: bool) -> None:
        self.restorer.revoke(ref.partition for ref in partitions)

    def state_sizes(self) -> Mapping[str, int]:
        return self.state.sizes()

    def changes(self) -> list[tuple[str, int, bytes, bytes | None]]:
        changes = self.state.changes()
        if not self.source:
            return []
        topic = self._topic
        return [(topic, p, key, value) for p, key, value in changes]

    def rewind(self, partitions: Sequence[PartitionRef]) -> None:
        """Undo a failed batch: back to the changelog's state (``stores/restore.py``)."""
        self.restorer.rewind(ref.partition for ref in partitions)

    def detect(self, batch: DetectBatch) -> Mapping[int, Sequence[Detection]]:
        events = batch.events
        found: dict[int, list[Detection]] = {}
        if not events:
            return found
        cfg = self.config
        enabled = cfg.enabled
        bf_on = BRUTE_FORCE in enabled
        it_on = IMPOSSIBLE_TRAVEL in enabled
        nd_on = NEW_DEVICE in enabled
        nc_on = NEW_COUNTRY in enabled
        history_on = it_on or nd_on or nc_on
        bf_k, bf_w = cfg.brute_force_failures, cfg.brute_force_window
        grace = cfg.grace
        move_after = MOVE_AFTER
        slack = cfg.state_time_slack
        state = self.state
        gen = state.gen
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
                        dets = [brute_force(cfg, count, ip, late)]
            elif history_on:
                user = doc["user_id"]
                device: str | None = doc["device_id"]
                dkey = None if device is None else device_key(device)  # devices are kept as 8-byte keys
                geo = doc["geo"]
                country: str | None = geo["country_code"] if geo is not None else None
                known = history.get(user)
                if (
                    known is not None
                    and late is None
                    and country == known.last_country
                    and dkey in known.devices
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
                            [] if dkey is None else [dkey],
                            [] if country is None else [country],
                            ts,
                            country,
                            gen,
                        )
                        dirty_history.append(known)
                    if dets is not None:
                        found[i] = dets
                    continue
                new_device = nd_on and dkey is not None and dkey not in known.devices
                new_country = country is not None and country not in known.countries
                last = known.last_country
                if (
                    new_device
                    or (new_country and nc_on)
                    or (it_on and country is not None and last != country)
                ):
                    more = compare(
                        cfg, self._dist, known, device if new_device else None, country, new_country, ts, late
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
                    if dkey is not None and (new_device or dkey not in known.devices):
                        devices = known.devices
                        devices.append(dkey)
                        if len(devices) > MAX_DEVICES:
                            del devices[0]
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


# --------------------------------------------------------------------------- what each detection says


def compare(  # noqa: PLR0917
    cfg: DetectorConfig,
    dist: dict[str, dict[str, float]],
    known: History,
    new_device: str | None,
    country: str | None,
    new_country: bool,
    ts: int,
    late: str | None,
) -> list[Detection]:
    """new_device, new_country and impossible_travel for a success of a user with history."""
    risks = cfg.risks
    out: list[Detection] = []
    if new_device is not None:
        text = f"device {new_device} is not among the account's {len(known.devices)} known device(s)"
        out.append(Detection(NEW_DEVICE, evidence(text, late), risks[NEW_DEVICE]))
    if new_country and NEW_COUNTRY in cfg.enabled:
        text = f"country {country} is new for the account (known: {','.join(known.countries)})"
        out.append(Detection(NEW_COUNTRY, evidence(text, late), risks[NEW_COUNTRY]))
    last = known.last_country
    if country is None or last is None or last == country or IMPOSSIBLE_TRAVEL not in cfg.enabled:
        return out
    km = dist.get(last, {}).get(country)
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
        out.append(Detection(IMPOSSIBLE_TRAVEL, evidence(text, late), risks[IMPOSSIBLE_TRAVEL]))
    return out


def brute_force(cfg: DetectorConfig, count: int, ip: str, late: str | None) -> Detection:
    text = (
        f"{count} failed logins for this account from {ip} within {cfg.brute_force_window}s "
        f"(threshold {cfg.brute_force_failures})"
    )
    return Detection(BRUTE_FORCE, evidence(text, late), cfg.risks[BRUTE_FORCE])


def evidence(text: str, late: str | None) -> tuple[str, ...]:
    return (text,) if late is None else (text, late)
