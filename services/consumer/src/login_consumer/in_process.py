"""Both stages' detectors in one call, without Kafka: a harness for tests, evaluation and in-process
benchmarks (``login_devtools/evaluate.py``, ``login_bench/profile_consumer.py``); the service never imports
it.

``AllDetectors.detect`` runs the user stage's detectors on a batch, then feeds the same events, re-keyed by
network exactly as the repartition topic would (``stages/keys.py``), to the network detector, and merges
the detections. In a deployment the two halves run on two stages (``app.py``); the functions are the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from login_consumer.detectors.base import DetectBatch, Detection, DetectorConfig
from login_consumer.detectors.networks import NetEvent, NetworkDetector
from login_consumer.detectors.users import UserDetectors
from login_consumer.records import PartitionRef
from login_consumer.stages.keys import network_of, network_partition
from login_consumer.stores.restore import StateSource

NETWORK_TOPIC = "network-repartition"  # the name in-process network partitions are restored under


class AllDetectors:
    """user detectors, then the network detector, over the same batch (Detectors protocol)."""

    def __init__(
        self,
        config: DetectorConfig | None = None,
        user_source: StateSource | None = None,
        network_source: StateSource | None = None,
        *,
        partitions: int = 1,
    ) -> None:
        self.config = config = config or DetectorConfig()
        self.users = UserDetectors(config, user_source)
        self.networks = NetworkDetector(config, network_source)
        self.partitions = partitions
        if network_source is not None:  # one process owns every network partition: restore them all
            self.networks.on_assign([PartitionRef(NETWORK_TOPIC, p) for p in range(partitions)])

    def detect(self, batch: DetectBatch) -> Mapping[int, Sequence[Detection]]:
        found: dict[int, list[Detection]] = {i: list(d) for i, d in self.users.detect(batch).items()}
        if not self.networks.enabled:
            return found
        events: list[NetEvent] = []
        index: list[int] = []
        prefix = self.config.stuffing_prefix
        for i, (doc, source, offset) in enumerate(zip(batch.events, batch.partitions, batch.offsets)):  # noqa: B905
            net = network_of(doc["ip"], prefix)
            if net is None:
                continue
            p = network_partition(net.encode(), self.partitions)
            failed = doc["outcome"] == "failure"
            events.append(NetEvent(p, source, offset, net, doc["user_id"], doc["timestamp"], failed))
            index.append(i)
        for at, det in self.networks.detect(events).items():
            found.setdefault(index[at], []).append(det)
        return found

    def on_assign(self, partitions: Sequence[PartitionRef]) -> None:
        self.users.on_assign(partitions)

    def on_revoke(self, partitions: Sequence[PartitionRef], *, lost: bool) -> None:
        self.users.on_revoke(partitions, lost=lost)

    def state_sizes(self) -> Mapping[str, int]:
        return {**self.users.state_sizes(), **self.networks.state_sizes()}

    def changes(self) -> list[tuple[str, int, bytes, bytes | None]]:
        """Both stages' changelog records since the last call."""
        return [*self.users.changes(), *self.networks.changes()]

    def rewind(self, partitions: Sequence[PartitionRef]) -> None:
        self.users.rewind(partitions)
