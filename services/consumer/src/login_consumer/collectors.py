"""The consumer's own Prometheus collectors: histograms filled in bulk, top-N counters, lag per partition.

``BatchHistogram`` adds a batch's bucket counts at once (the hot path never observes one value at a time);
``TopCounter`` keeps the most flagged users and IPs; ``StuffingCollector`` the networks under a
credential-stuffing wave; ``LagCollector`` reports the lag snapshot the loop keeps, at scrape time.
``metrics.py`` registers them (docs/metrics.md is the catalogue).
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from operator import itemgetter
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

TOP_N: Final = 20  # flagged users and IPs reported


def _bound(value: float) -> str:
    """A bucket bound as Prometheus writes it (``0.005``, ``10.0``, ``+Inf``)."""
    return "+Inf" if value == math.inf else repr(float(value))


class BatchHistogram(Collector):
    """A histogram that takes many observations at once (thread-safe; collected like a Histogram)."""

    def __init__(
        self, name: str, documentation: str, buckets: Iterable[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = (*sorted(float(b) for b in buckets), math.inf)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        bounds = self._bounds
        counts = [0] * len(bounds)
        total = 0.0
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            total += value
        with self._lock:
            mine = self._counts
            for index, count in enumerate(counts):
                if count:
                    mine[index] += count
            self._sum += total

    def observe_counts(self, counts: Mapping[float, int]) -> None:
        """Observations given as value -> how many times (cheap when values repeat, e.g. risk scores)."""
        bounds = self._bounds
        with self._lock:
            mine = self._counts
            for value, count in counts.items():
                mine[bisect_left(bounds, value)] += count
                self._sum += value * count

    def observe_repeated(self, value: float, times: int) -> None:
        """``times`` observations of the same ``value`` (e.g. a batch's time per event)."""
        if times <= 0:
            return
        with self._lock:
            self._counts[bisect_left(self._bounds, value)] += times
            self._sum += value * times

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        cumulative = 0
        buckets = []
        for bound, count in zip(self._bounds, counts, strict=True):
            cumulative += count
            buckets.append((_bound(bound), cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


class TopCounter:
    """Approximate heavy hitters: exact counts for up to ``capacity`` keys, pruned to the top on overflow."""

    def __init__(self, capacity: int = 1_000) -> None:
        self.capacity = capacity
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def update(self, counts: Mapping[str, int]) -> None:
        if not counts:
            return
        with self._lock:
            mine = self._counts
            for key, count in counts.items():
                mine[key] = mine.get(key, 0) + count
            if len(mine) > 2 * self.capacity:
                self._counts = dict(heapq.nlargest(self.capacity, mine.items(), key=itemgetter(1)))

    def top(self, n: int = TOP_N) -> list[tuple[str, int]]:
        with self._lock:
            return heapq.nlargest(n, self._counts.items(), key=itemgetter(1))


class _TopCollector(Collector):
    def __init__(self, name: str, documentation: str, label: str, counter: TopCounter) -> None:
        self.name, self.documentation, self.label, self.counter = name, documentation, label, counter

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=[self.label])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=[self.label])
        for key, count in self.counter.top(TOP_N):
            family.add_metric([key], count)
        yield family


class StuffingCollector(Collector):
    """login_consumer_stuffing_network_accounts: networks under a credential-stuffing wave.

    ``record`` keeps, per network, the most failing accounts seen and when (monotonic clock); a network
    drops out ``window`` seconds after its last detection. Bounded: beyond ``capacity`` networks the
    oldest are forgotten; a scrape shows the ``TOP_N`` with the most accounts.
    """

    name = "login_consumer_stuffing_network_accounts"
    documentation = (
        "Accounts failing from a network at its credential-stuffing detections within the stuffing window "
        "(top 20 networks)."
    )

    def __init__(
        self, window: float, capacity: int = 1_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.capacity = capacity
        self._clock = clock
        self._seen: dict[str, tuple[int, float]] = {}  # network -> (accounts, last detection)
        self._lock = threading.Lock()

    def record(self, waves: Mapping[str, int]) -> None:
        if not waves:
            return
        now = self._clock()
        with self._lock:
            seen = self._seen
            for network, accounts in waves.items():
                old = seen.pop(network, None)
                keep = old[0] if old is not None and now - old[1] <= self.window else 0
                seen[network] = (max(keep, accounts), now)  # re-inserted: dict order = last detection
            while len(seen) > self.capacity:
                del seen[next(iter(seen))]

    def current(self) -> list[tuple[str, int]]:
        """The networks whose last detection is within the window, most accounts first (top 20)."""
        now = self._clock()
        with self._lock:
            seen = self._seen
            while seen:
                oldest = next(iter(seen))
                if now - seen[oldest][1] <= self.window:
                    break
                del seen[oldest]
            items = [(network, accounts) for network, (accounts, _) in seen.items()]
        return heapq.nlargest(TOP_N, items, key=itemgetter(1))

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=["network"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["network"])
        for network, accounts in self.current():
            family.add_metric([network], accounts)
        yield family


class LagCollector(Collector):
    """login_consumer_lag_messages from the snapshot the consumer loop refreshes (about once a second)."""

    name = "login_consumer_lag_messages"
    documentation = "Consumer lag (high watermark - position) per assigned partition."

    def __init__(self) -> None:
        self._lag: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def set(self, lag: Mapping[tuple[str, int], int]) -> None:
        with self._lock:
            self._lag = dict(lag)

    def snapshot(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self._lag)

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=["topic", "partition"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["topic", "partition"])
        for (topic, partition), lag in sorted(self.snapshot().items()):
            family.add_metric([topic, str(partition)], lag)
        yield family
