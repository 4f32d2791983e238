"""The parts of a fault test: a paced load with the producer service's own settings, the consumer service
as a process, a live reader of the output that times every arrival, and the final count.

``Load`` produces valid login events (each with a unique event_id) with ``login_producer.sink.kafka_config``
(idempotent, acks=all): a burst that the consumer works through while the fault happens (so that many
events are in flight), then a steady trickle (so the producer lives through the fault too); it records
which the cluster acknowledged and which failed; ``OutputWatch`` reads
the output topic as it is written (read_committed) and keeps, per event id, how often it came, and when
each batch arrived, so the longest silence (the stall) can be measured; ``Consumer`` runs
``python -m login_consumer`` and reads its /ready and metrics; ``Verdict`` is what the tests assert:
acknowledged inputs missing from the output (lost), outputs beyond one per input (duplicates), and the
stall. Every wait has a deadline; none is a bare sleep.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaError, Message, Producer, TopicPartition

from login_producer.sink import kafka_config

ROOT = Path(__file__).resolve().parents[2]


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> float:
    """Poll ``check`` until it holds; the seconds it took. AssertionError naming ``what`` at the deadline."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - started


def event(n: int, now: int) -> tuple[str, bytes, bytes]:
    """(event id, key, value) of a valid login event; users and networks spread over every partition."""
    event_id = str(uuid.uuid4())
    user = f"user-{n % 2000}"
    value = {
        "event_id": event_id,
        "user_id": user,
        "ip": f"81.2.{n % 250}.{n % 200 + 1}",
        "timestamp": now,
        "locale": "RI",
        "device_type": "android",
        "app_version": "2.3.0",
        "device_id": f"d-{n % 2000}",
    }
    return event_id, user.encode(), orjson.dumps(value)


class Load:
    """A producer thread with the producer service's settings: ``burst`` events as fast as the cluster takes
    them (a backlog the fault lands in), then ``rate`` events/s until ``stop()`` and at least ``total``
    events. Acknowledged ids, failed ids and the time of every acknowledgement."""

    def __init__(self, config: dict[str, Any], topic: str, burst: int, rate: int, total: int) -> None:
        self.producer = Producer(kafka_config({**config, "log_level": 3}))
        self.topic = topic
        self.burst = burst
        self.rate = rate
        self.total = total
        self.acked: set[str] = set()
        self.failed: dict[str, str] = {}
        self.ack_times: list[float] = []
        self.sent = 0
        self.burst_done = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        event_id = orjson.loads(msg.value() or b"{}")["event_id"]
        with self._lock:
            if err is None:
                self.acked.add(event_id)
                self.ack_times.append(time.monotonic())
            else:
                self.failed[event_id] = err.name()

    def _send(self, n: int, now: int) -> None:
        _, key, value = event(n, now - n % 100)
        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key, on_delivery=self._delivered)
                break
            except BufferError:  # the cluster refuses or is slow: the producer blocks here
                self.producer.poll(0.05)
        self.sent = n + 1

    def _run(self) -> None:
        now = int(time.time())
        for n in range(self.burst):
            self._send(n, now)
            if n % 1000 == 0:
                self.producer.poll(0)
        self.burst_done.set()
        started = time.monotonic()
        n = self.burst
        while not (self._stop.is_set() and n >= self.total):
            due = self.burst + int((time.monotonic() - started) * self.rate) + 1
            while n < due:
                self._send(n, int(time.time()))
                n += 1
            self.producer.poll(0.01)
        self.producer.flush(600)

    def stop(self, timeout: float = 900.0) -> None:
        """Stop producing (once ``total`` are sent) and wait for every acknowledgement or failure."""
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load did not finish"

    def acked_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for t in self.ack_times if start <= t < end)

    @property
    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)


class OutputWatch:
    """Reads ``topic`` from the start as it is written: how often each event id came, and arrival times."""

    def __init__(self, config: dict[str, Any], topic: str) -> None:
        self.consumer = KafkaConsumer(
            {
                **config,
                "group.id": f"watch-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "log_level": 0,
            }
        )
        self.topic = topic
        self.counts: Counter[str] = Counter()
        self.arrivals: list[float] = []  # monotonic time of every batch with output
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)

    def start(self) -> OutputWatch:
        self.consumer.subscribe([self.topic])
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = [m for m in self.consumer.consume(2000, 0.2) if m.error() is None]
                if not batch:
                    continue
                ids = [orjson.loads(m.value() or b"{}")["event_id"] for m in batch]
                with self._lock:
                    self.counts.update(ids)
                    self.arrivals.append(time.monotonic())
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    @property
    def distinct(self) -> int:
        with self._lock:
            return len(self.counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def missing(self, ids: set[str]) -> int:
        """How many of ``ids`` have not come (yet)."""
        with self._lock:
            return sum(1 for i in ids if i not in self.counts)

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time without output between ``start`` and ``end`` (the stall)."""
        with self._lock:
            times = [t for t in self.arrivals if start <= t <= end]
        points = [start, *times, end]
        return max(b - a for a, b in itertools.pairwise(points))

    def first_after(self, instant: float) -> float | None:
        with self._lock:
            return next((t for t in self.arrivals if t > instant), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Consumer:
    """``python -m login_consumer`` with the given settings (environment variables)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "login_consumer"],
            env={**os.environ, "METRICS_PORT": str(self.port), "LOG_FORMAT": "json", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        """The sum of every series of ``name`` (0 when absent)."""
        _, text = self.get("/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((name + " ", name + "{"))
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            code = -999
        self._log.close()
        return code


def read_ids(config: dict[str, Any], topic: str, expected: int, timeout: float) -> Counter[str]:
    """Every event id of ``topic`` (read_committed, from the start), up to its end."""
    reader = KafkaConsumer(
        {
            **config,
            "group.id": f"read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )
    counts: Counter[str] = Counter()
    try:
        meta = reader.list_topics(topic, timeout=10).topics[topic]
        reader.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        pending = set(meta.partitions)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for msg in reader.consume(5000, 0.5):
                err = msg.error()
                if err is None:
                    counts[orjson.loads(msg.value() or b"{}")["event_id"]] += 1
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
        got = sum(counts.values())
        assert not pending, f"{topic}: partitions {sorted(pending)} not read to the end ({got} of {expected})"
    finally:
        reader.close()
    return counts


@dataclass
class Verdict:
    """What a fault test found (printed as one line, the figures of docs/failover.md)."""

    scenario: str
    guarantee: str
    produced: int
    acked: int
    failed: int
    lost_in_input: int
    lost: int
    duplicates: int
    stall: float
    baseline: float
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.notes.items())
        return (
            f"FAILOVER {self.scenario} {self.guarantee}: produced={self.produced} acked={self.acked} "
            f"failed={self.failed} lost_in_input={self.lost_in_input} lost={self.lost} "
            f"duplicates={self.duplicates} stall={self.stall:.1f}s baseline_gap={self.baseline:.1f}s {extra}"
        ).rstrip()
