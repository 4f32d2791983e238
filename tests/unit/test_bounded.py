"""Every bounded structure costs O(1) amortised per operation, whatever the key cardinality.

Two kinds of evidence, both independent of how busy the machine is:

* operation counts: keys (or event times) of a counting class record every hash/comparison the
  structure makes; the count per operation must not grow with the number of keys (or partitions);
* for costs no Python-level counter sees (CPython's dict iteration walking over deleted slots happens in
  C), CPU time per operation of this thread (``thread_time``, not wall-clock) in a size sweep: a
  structure 250x larger may cost a few times more per operation (cache misses), never 1,000x. The
  quadratic FIFO the consumer used to have (``del d[next(iter(d))]``) measures 20-100x here.

docs/performance.md has the audit table these tests back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from login_common.settings import load_settings
from login_consumer.config import ConsumerSettings
from login_consumer.detectors.base import DetectorConfig
from login_consumer.detectors.networks import NetEvent, NetworkDetector
from login_consumer.enrich import Enricher, _remember
from login_consumer.intake import align
from login_consumer.intake.align import Aligner
from login_consumer.metrics import TopCounter
from login_consumer.process import Processor
from login_consumer.risk import RiskModel
from login_consumer.stages.merge import SourceMerge
from login_consumer.stages.user import UserStage
from login_consumer.stores.networks import NetWindow, NetworkState
from login_consumer.stores.users import MAX_FAILURES, DetectorState, Failures, History, Limits
from login_consumer.validate import Validator

SMALL, LARGE = 200, 50_000
MAX_RATIO = 8.0  # O(1): ~1-3x (a large table misses the CPU caches); the old O(n) FIFO: 20-100x


def _ips(start: int, count: int) -> Iterator[str]:
    for n in range(start, start + count):
        yield f"{11 + (n >> 24) % 200}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def cpu_ns_per_op(fill: Callable[[int], None], step: Callable[[int, int], None], size: int) -> float:
    """Thread CPU ns per operation of ``step(start, count)`` on a structure ``fill(size)`` filled.

    ``step`` runs 2x ``size`` operations (at least 10,000): a whole dict resize cycle, over which a
    front-deletion scan grows; the mean over all of them counts (a quiet stretch must not hide a cliff)."""
    fill(size)
    ops = max(2 * size, 10_000)
    began = time.thread_time_ns()
    step(size, ops)
    return (time.thread_time_ns() - began) / ops


Make = Callable[[int], tuple[Callable[[int], None], Callable[[int, int], None]]]


def assert_flat(make: Make, large_size: int = LARGE) -> None:
    small = cpu_ns_per_op(*make(SMALL), SMALL)
    large = cpu_ns_per_op(*make(large_size), large_size)
    assert large < MAX_RATIO * small, f"per-op cost grows with size: {small:.0f} ns -> {large:.0f} ns"


# --------------------------------------------------------------------------- caches (CPU-time sweep)


@pytest.fixture(scope="module")
def enricher_class() -> type[Enricher]:
    Enricher(cache_size=1)  # loads the reference data once
    return Enricher


@pytest.mark.parametrize("cache", ["_ips", "_places", "_locales", "_clients", "_times"])
def test_enricher_fifo_caches_evict_in_constant_time(enricher_class: type[Enricher], cache: str) -> None:
    """Each of the enricher's caches, filled and evicted as ``enrich`` does (``_remember``)."""

    def make(size: int) -> tuple[Callable[[int], None], Callable[[int, int], None]]:
        enricher = enricher_class(cache_size=size)
        store = getattr(enricher, cache)

        def step(start: int, count: int) -> None:
            for key in range(start, start + count):
                _remember(store, size, key, key)

        return (lambda n: step(0, n)), step

    assert_flat(make)


def test_plain_dict_fifo_is_what_the_sweep_catches() -> None:
    """The sweep itself can fail: the FIFO eviction enrich.py used to have is caught by it."""

    def make(size: int) -> tuple[Callable[[int], None], Callable[[int, int], None]]:
        cache: dict[int, int] = {}

        def step(start: int, count: int) -> None:
            for key in range(start, start + count):
                if len(cache) >= size:
                    del cache[next(iter(cache))]
                cache[key] = key

        return (lambda n: step(0, n)), step

    with pytest.raises(AssertionError, match="grows with size"):
        assert_flat(make, 20_000)  # smaller than the others: quadratic takes long


def test_validator_ip_cache() -> None:
    def make(size: int) -> tuple[Callable[[int], None], Callable[[int, int], None]]:
        validator = Validator(ip_cache_size=size)

        def step(start: int, count: int) -> None:
            for ip in _ips(start, count):
                validator._ip_ok(ip)

        return (lambda n: step(0, n)), step

    assert_flat(make)


def test_risk_user_agent_cache() -> None:
    """Its size is fixed (10,000): a sweep over the number of distinct user agents, through its clears."""
    model = RiskModel()
    costs = []
    for agents in (2_000, 20_000):
        began = time.thread_time_ns()
        for n in range(agents):
            model._is_automation(f"Mozilla/5.0 build {n}")
        costs.append((time.thread_time_ns() - began) / agents)
        assert len(model._ua_cache) <= 10_000
    assert costs[1] < MAX_RATIO * costs[0], costs


def test_user_stage_network_cache() -> None:
    processor = Processor.from_settings(load_settings(ConsumerSettings, metrics_port=0))

    def make(size: int) -> tuple[Callable[[int], None], Callable[[int, int], None]]:
        stage = UserStage(processor, output_topic="o", repartition_topic="r", partitions=6)

        def step(start: int, count: int) -> None:
            for ip in _ips(start, count):
                stage._network(ip)

        return (lambda n: step(0, n)), step

    assert_flat(make)


def test_network_window_expires_accounts_from_the_front_in_constant_time() -> None:
    """One network with ``size`` failing accounts in its window; each new failure expires the oldest."""

    def make(size: int) -> tuple[Callable[[int], None], Callable[[int, int], None]]:
        window = NetWindow("192.0.2.0/24", 1)

        def step(start: int, count: int) -> None:
            for n in range(start, start + count):
                window.add(n, f"user{n}", size, 0)  # window = size seconds: one account leaves per add
                window.dead.clear()
                window.changed.clear()

        return (lambda n: step(0, n)), step

    assert_flat(make)


def test_network_store_expires_networks_from_the_front_in_constant_time() -> None:
    """``size`` networks in one partition's store; each new network's failure expires the oldest."""

    def make(size: int) -> tuple[Callable[[int], None], Callable[[int, int], None]]:
        state = NetworkState(window=size, grace=0, max_networks=10 * size)
        detector = NetworkDetector(DetectorConfig(stuffing_window=size, grace=0, max_networks=10 * size))
        detector.state = state

        def step(start: int, count: int) -> None:
            for n in range(start, start + count, 100):
                events = [
                    NetEvent(0, 0, k, f"10.{k >> 8 & 255}.{k & 255}.0/24", "u", k, True)
                    for k in range(n, n + 100)
                ]
                detector.detect(events)
                state.changes()

        return (lambda n: step(0, n)), step

    assert_flat(make)


def test_source_merge_add_and_release_in_logarithmic_time() -> None:
    """``size`` events held by a merge of six sources; each new one releases one (heap over 6 heads)."""

    def make(size: int) -> tuple[Callable[[int], None], Callable[[int, int], None]]:
        merge: SourceMerge[int] = SourceMerge(6, max_buffered=10 * size)

        def fill(count: int) -> None:
            for n in range(count):
                merge.add(n % 6, n, n, n)

        def step(start: int, count: int) -> None:
            for n in range(start, start + count):
                merge.add(n % 6, n, n, n)
                merge.progress(n % 6, n - size, idle=False)
                for s in range(6):
                    merge.progress(s, n - size, idle=False)
                merge.release()
                merge.first_held()

        return fill, step

    assert_flat(make)


# --------------------------------------------------------------------------- operation counts


class CountingStr(str):
    """A key that counts how often a container hashes or compares it."""

    calls = 0

    def __hash__(self) -> int:
        CountingStr.calls += 1
        return str.__hash__(self)

    def __eq__(self, other: object) -> bool:
        CountingStr.calls += 1
        return str.__eq__(self, other)


def test_top_counter_prunes_in_amortised_constant_key_operations() -> None:
    per_key = []
    for keys in (2_000, 50_000):
        counter = TopCounter(capacity=1_000)
        CountingStr.calls = 0
        for start in range(0, keys, 1_000):
            counter.update({CountingStr(f"k{n}"): 1 + n % 7 for n in range(start, start + 1_000)})
        per_key.append(CountingStr.calls / keys)
        assert len(counter.top(5)) == 5
    # building the update (1 hash) + adding it (1) + the prune's rebuild (capacity per capacity keys)
    assert per_key[1] <= per_key[0] + 1 <= 5, per_key


class CountingFloat(float):
    """An event time that counts the comparisons made with it."""

    calls = 0

    def _count(self) -> None:
        CountingFloat.calls += 1

    def __lt__(self, other: object) -> bool:
        self._count()
        return float.__lt__(self, other)  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        self._count()
        return float.__le__(self, other)  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        self._count()
        return float.__gt__(self, other)  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:
        self._count()
        return float.__ge__(self, other)  # type: ignore[operator]

    def __eq__(self, other: object) -> bool:
        self._count()
        return float.__eq__(self, other)

    __hash__ = float.__hash__


def _forced_release_comparisons(partitions: int, per_partition: int) -> float:
    """Comparisons per message when every message is released by the ``max_buffered`` overflow."""
    aligner = Aligner(max_buffered=2, clock=lambda: 0.0)
    messages: list[Message] = []
    for offset in range(per_partition):
        for p in range(partitions):
            value = orjson.dumps({"timestamp": offset * partitions + (p * 7919) % partitions})
            messages.append(Message(topic="t", partition=p, offset=offset, value=value))
    aligner.add(messages)
    # a silent partition that has delivered nothing holds everything back: only the overflow releases
    assignment = [("t", p) for p in range(partitions + 1)]
    CountingFloat.calls = 0
    released = aligner.release(assignment, lambda tp: False)
    assert len(released) == len(messages) - 1
    return CountingFloat.calls / len(released)


def test_aligner_overflow_release_is_logarithmic_in_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    real = align.event_time

    def counting(value: bytes | None) -> Any:
        found = real(value)
        return None if found is None else CountingFloat(found)

    monkeypatch.setattr(align, "event_time", counting)
    for partitions in (4, 64, 512):
        per_message = _forced_release_comparisons(partitions, 20)
        # a heap merge: ~2 log2(P) per message, plus the sort's check of the merged run
        assert per_message <= 4 * math.log2(partitions) + 8, (partitions, per_message)


# --------------------------------------------------------------------------- detector state


def _limits(users: int, failure_keys: int) -> Limits:
    return Limits(
        user_ttl=30 * 86_400,
        failure_window=300,
        grace=300,
        max_users=users,
        max_failure_keys=failure_keys,
    )


def test_user_history_store_evicts_in_constant_time() -> None:
    """Users beyond MAX_STATE_USERS: the least recently updated go, one batch (100 users) at a time."""

    def make(size: int) -> tuple[Callable[[int], None], Callable[[int, int], None]]:
        state = DetectorState(_limits(size, 1_000))
        ps = state.partition(0)
        ps.watermark = 1_700_000_000

        def step(start: int, count: int) -> None:
            history = ps.history
            for n in range(start, start + count):
                user = f"user-{n}"
                history[user] = History(user, [], [], 1_700_000_000, None, state.gen)
                if n % 100 == 0:
                    state.sweep()
                    state.discard_changes()

        return (lambda n: step(0, n)), step

    assert_flat(make)


def test_failure_store_evicts_in_constant_time() -> None:
    def make(size: int) -> tuple[Callable[[int], None], Callable[[int, int], None]]:
        state = DetectorState(_limits(1_000, size))
        ps = state.partition(0)
        ps.watermark = 1_700_000_000

        def step(start: int, count: int) -> None:
            failures = ps.failures
            for n in range(start, start + count):
                entry = failures[("10.0.0.1", f"user-{n}")] = Failures("10.0.0.1", f"user-{n}", state.gen)
                entry.add(1_700_000_000, 300, 300)
                if n % 100 == 0:
                    state.sweep()
                    state.discard_changes()

        return (lambda n: step(0, n)), step

    assert_flat(make)


def test_failure_window_insert_is_bounded_by_its_cap() -> None:
    """Out-of-order failures are inserted by a scan from the end: at most MAX_FAILURES comparisons."""
    entry = Failures("10.0.0.1", "u", 1)
    for ts in range(0, 2 * MAX_FAILURES):
        entry.add(1_000 + ts, 10_000, 300)
    CountingFloat.calls = 0
    for n in range(100):
        entry.add(CountingFloat(1_000.5 + n), 10_000, 300)  # type: ignore[arg-type] # counts compares
    assert len(entry.live) <= MAX_FAILURES
    assert CountingFloat.calls <= 100 * (MAX_FAILURES + 8)
