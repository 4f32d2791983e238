"""credential_stuffing, on the network stage: distinct accounts failing from one network in a window.

The network stage reads the repartition topic, where one network's events all land in one partition, so
the count is exact whatever the number of consumer processes. Per event, in partition order: a failure
records its account in the network's window (``stores/networks.py``) and is flagged when the window holds
at least ``STUFFING_ACCOUNTS`` accounts; a success is flagged when its network is *hot* (its last failure
saw that many accounts) and still has that many accounts in the success's own window. For an in-order
success the two are one condition (the window only loses accounts after the last failure); *hot* only
spares the look-up for every other network.

Events reach the detector in event-time order across their sources (``stages/merge.py``). Late rule, as on
the user stage: an event more than ``grace`` seconds behind the watermark of the input partition it came
from, or already applied before a restore (a replay: its input offset is at or before the last one the
changelog says was processed from that source), is scored against the state as it is, flagged in its
evidence, and changes nothing. A late success is scored by its own window alone, not by *hot*: *hot* is
not in the changelog (a restore marks every network hot until its next in-order success), so gating a late
success on it flagged it after a hand-over and not before, or after a later success had cooled the network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

from login_consumer.detectors.base import Detection, DetectorConfig
from login_consumer.detectors.names import CREDENTIAL_STUFFING
from login_consumer.records import PartitionRef
from login_consumer.stores.networks import NEVER, NetWindow, NetworkState, Released
from login_consumer.stores.restore import Restorer, StateSource

_REPLAYED: Final = "replayed: applied before the restore; state not updated"


class NetEvent(NamedTuple):
    """What the network stage needs of one event (carried by the repartition record)."""

    partition: int  # repartition-topic partition
    source: int  # input partition the event came from (its watermark decides lateness)
    source_offset: int  # its offset there (what was processed is remembered per source)
    net: str
    user: str
    ts: int  # event time, epoch seconds
    failure: bool


class NetworkDetector:
    """credential_stuffing over the network-keyed stream, with changelog-backed state per partition."""

    def __init__(
        self,
        config: DetectorConfig | None = None,
        source: StateSource | None = None,
        *,
        privacy: Callable[[str], str] | None = None,
    ) -> None:
        """``privacy``: rewrites each evidence line for the output (OUTPUT_PRIVACY, privacy.py): this
        stage adds its detection after the user stage protected the rest of the document."""
        self.config = config = config or DetectorConfig()
        self.privacy = privacy
        self.state = NetworkState(
            window=config.stuffing_window, grace=config.grace, max_networks=config.max_networks
        )
        self.source = source
        self.restorer: Restorer[dict[int, int]] = Restorer(
            self.state, source, lambda p: dict(self.state.partition(p).processed), stage="network"
        )
        self._replay_until = self.restorer.replay_until  # partition -> source -> offset done at restore
        self.late_events = 0
        self.replayed_events = 0

    @property
    def restored_entries(self) -> int:
        return self.restorer.restored_entries

    @property
    def enabled(self) -> bool:
        return CREDENTIAL_STUFFING in self.config.enabled

    # ------------------------------------------------------------------ partitions and changelog

    def on_assign(self, partitions: Sequence[PartitionRef]) -> None:
        self.restorer.assign(ref.partition for ref in partitions)

    def on_revoke(self, partitions: Sequence[PartitionRef], *, lost: bool) -> None:
        self.restorer.revoke(ref.partition for ref in partitions)

    def rewind(self, partitions: Sequence[PartitionRef]) -> None:
        """Outputs since the last commit were not all delivered: back to the changelog's state
        (``stores/restore.py``; events seen again that the changelog had applied count as replays)."""
        self.restorer.rewind(ref.partition for ref in partitions)

    def state_sizes(self) -> dict[str, int]:
        return self.state.sizes()

    def done(self, partition: int, source: int, source_offset: int) -> bool:
        """The event was processed already (before a restart or a rebalance read it again)."""
        return source_offset <= self.state.partition(partition).processed.get(source, -1)

    def released(self, partition: int) -> Released:
        """The greatest order key the partition's merge released (restored with the partition)."""
        return self.state.partition(partition).released

    def mark_released(self, partition: int, top: Released) -> None:
        """The partition's merge has released up to ``top``: written to the changelog with its progress."""
        ps = self.state.partition(partition)
        if top > ps.released:
            ps.released = top
            ps.meta_dirty = True

    def changes(self) -> list[tuple[str, int, bytes, bytes | None]]:
        """(topic, partition, key, value) changelog records since the last call."""
        if self.source is None:
            self.state.discard_changes()
            return []
        topic = self.source.topic
        return [(topic, p, key, value) for p, key, value in self.state.changes()]

    # ------------------------------------------------------------------ detection

    def detect(self, events: Sequence[NetEvent]) -> dict[int, Detection]:
        """Detections by index in ``events`` (in partition order); events without one are left out."""
        found: dict[int, Detection] = {}
        if not events:
            return found
        cfg = self.config
        m, window_s, grace = cfg.stuffing_accounts, cfg.stuffing_window, cfg.grace
        state = self.state
        gen = state.gen
        current = -1
        ps = state.partition(events[0].partition)
        replays: dict[int, int] = {}
        for i, (p, source, offset, net, user, ts, failure) in enumerate(events):
            if p != current:
                current = p
                ps = state.partition(p)
                replays = self._replay_until.get(p, {})
            late: str | None = None
            replay = replays.get(source, -1)
            if offset > replay:
                if offset > ps.processed.get(source, -1):
                    ps.processed[source] = offset
                ps.meta_dirty = True
                wm = ps.watermarks.get(source, NEVER)
                if ts > wm:
                    ps.watermarks[source] = ts
                elif ts < wm - grace:
                    late = f"late: {wm - ts}s behind the watermark (grace {grace}s); state not updated"
                    self.late_events += 1
            else:
                late = _REPLAYED
                self.replayed_events += 1
            networks = ps.networks
            window: NetWindow | None = networks.get(net)
            if failure:
                if late is not None:  # a replayed failure is in the window already; a late one is not
                    extra = user if offset > replay else None
                    accounts = window.count(ts - window_s, ts, extra) if window is not None else 1
                else:
                    if window is None:
                        window = networks[net] = NetWindow(net, gen)
                        ps.dirty.append(window)
                    else:
                        networks.move_to_end(net)
                        if window.gen != gen:
                            window.gen = gen
                            ps.dirty.append(window)
                    accounts = window.add(ts, user, window_s, grace)
                if accounts >= m:
                    if window is not None:
                        ps.hot[net] = window
                    found[i] = self._detection(accounts, net, late)
            elif late is not None:  # scored in its own window, whatever the network did since
                if window is not None:
                    accounts = window.count(ts - window_s, ts)
                    if accounts >= m:
                        found[i] = self._detection(accounts, net, late)
            elif ps.hot:  # only a hot network can flag an in-order success
                window = ps.hot.get(net)
                if window is None:
                    continue
                accounts = window.accounts_at(ts, window_s, grace)
                if window.dead and window.gen != gen:
                    window.gen = gen
                    ps.dirty.append(window)
                if accounts >= m:
                    found[i] = self._detection(accounts, net, late)
                else:
                    del ps.hot[net]
        state.sweep()
        return found

    def _detection(self, accounts: int, net: str, late: str | None) -> Detection:
        cfg = self.config
        text = (
            f"{accounts} accounts failed to log in from {net} within {cfg.stuffing_window}s "
            f"(threshold {cfg.stuffing_accounts})"
        )
        lines: tuple[str, ...] = (text,) if late is None else (text, late)
        scope = net
        if self.privacy is not None:  # the output's evidence and the metric's network label alike
            lines = tuple(map(self.privacy, lines))
            scope = self.privacy(net)
        return Detection(
            CREDENTIAL_STUFFING, lines, cfg.risks[CREDENTIAL_STUFFING], scope=scope, count=accounts
        )
