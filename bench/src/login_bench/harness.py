#!/usr/bin/env python3
"""`make bench`: login-consumer against its contenders, on two workloads, through the real local broker.

Workloads, each preloaded onto a fresh 6-partition topic, then drained:
  P  login-producer's population traffic (100,000 users, labelled attacks, the full event format);
  H  high-cardinality generator-format traffic (traffic.py): a fresh user, device and IP on
     every event, ~5% without device_type, int and string timestamps, out-of-order/late events, bursts.

Contenders (one run, same broker): Kafka's own perf tools (the limit), a confluent-kafka passthrough,
login-consumer at-least-once and exactly-once with all detectors (the real CLI, configured through its
environment), a Quix Streams app calling login-consumer's Processor per message, and a reimplementation of
the seed's kafka-python-ng loop (on a bounded sample: it is slow).

Each measurement starts fresh processes (cold caches) with a new group and new output topics; it is done
when the output topic plus the DLQ hold as many records as it has to produce. The rate is read from the
output records' timestamps between 10% and 90% of the outputs; each figure is the median of the runs.
CPU seconds per million events and peak RSS come from the processes (psutil, /proc VmHWM). Latency:
paced input at 1k and 10k events/s while login-consumer runs, output timestamp - input create timestamp.

Writes bench/results/bench.{json,md,png} and prints the table. Exit 0 whatever the figures (it reports;
`--update-readme` also replaces the README's benchmark table).

    login-bench --bootstrap 127.0.0.1:9092 [--quick] [--h-events N] [--p-events N] [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]

from login_bench import ROOT
from login_bench.stats import (
    CONTENDERS,
    LATENCY_P99_TARGET_MS,
    LATENCY_RATES,
    WORKLOADS,
    RunResult,
    build_result,
    check_shape,
    latency_summary,
    markdown,
    rate_window,
    summarize,
)
from login_bench.traffic import h_event, h_workload
from login_devtools.service_env import service_env  # the processes never see make's command-line variables

BIN = Path(sys.executable).parent
QUIX_PYTHON = ROOT / ".venv-quix" / "bin" / "python"
KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "4.3.1")
PERF_LIBS = ROOT / ".cache" / "kafka-perf" / f"libs-{KAFKA_VERSION}"
WORK = ROOT / ".cache" / "bench"
RESULTS = ROOT / "bench" / "results"
PARTITIONS = 6
LIMIT_RECORDS = 300_000  # the perf tools' share of a workload: enough for a steady rate, bounded in time
USER_DETECTORS = "brute_force,impossible_travel,new_device,new_country"  # all but the network-keyed one
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- plan


@dataclass
class Plan:
    events: dict[str, int]
    runs: int
    samples: dict[str, int]  # contenders measured on the first N events of each topic
    latency_seconds: dict[str, float]
    scale_runs: int
    quick: bool
    contenders: tuple[str, ...] = CONTENDERS
    p_users: int = 100_000
    max_drain_seconds: float = 0.0  # 0: drain everything; else stop there and measure what was drained
    consumer: str = ""  # the login-consumer command measured ("": this environment's)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        quick = bool(args.quick)
        events = {"P": 50_000, "H": 100_000} if quick else {"P": 200_000, "H": 1_000_000}
        if args.p_events:
            events["P"] = args.p_events
        if args.h_events:
            events["H"] = args.h_events
        runs = args.runs or (1 if quick else 3)
        samples = {"quix": 20_000, "seed_loop": 1_000} if quick else {"quix": 50_000, "seed_loop": 5_000}
        latency = {"1k": 6.0, "10k": 4.0} if quick else {"1k": 20.0, "10k": 10.0}
        if args.latency_seconds:
            latency = dict.fromkeys(latency, args.latency_seconds)
        only = tuple(c for c in (args.only.split(",") if args.only else CONTENDERS) if c)
        unknown = set(only) - set(CONTENDERS)
        if unknown:
            raise SystemExit(f"bench: unknown contender(s) {sorted(unknown)}; known: {', '.join(CONTENDERS)}")
        if max(events.values()) > LIMIT_RECORDS:
            samples["limit"] = LIMIT_RECORDS
        cap = args.max_drain_seconds if args.max_drain_seconds is not None else (60.0 if quick else 120.0)
        scale_runs = args.scale_runs or (1 if quick else runs)
        consumer = str(Path(args.consumer).resolve()) if args.consumer else ""
        return cls(
            events, runs, samples, latency, scale_runs, quick, only, max_drain_seconds=cap, consumer=consumer
        )


# ---------------------------------------------------------------------------------------------- kafka


class Kafka:
    """Topic admin, completion counts (high watermarks) and reads of the local broker."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.probe = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-probe-{uuid.uuid4().hex[:8]}"}
        )
        self._partitions: dict[str, int] = {}
        self._latest: dict[tuple[str, int], int] = {}

    def create(self, topics: dict[str, int], *, append_time: bool = False) -> None:
        """Create topics; ``append_time``: records are stamped by the broker when it appends them
        (LogAppendTime), whatever timestamp the producer sets — output topics, so that a contender that
        copies its input's timestamps (Quix does) is still timed by when its outputs were written."""
        config = {"message.timestamp.type": "LogAppendTime"} if append_time else {}
        futures = self.admin.create_topics(
            [
                NewTopic(name, num_partitions=n, replication_factor=1, config=config)
                for name, n in topics.items()
            ]
        )
        for future in futures.values():
            future.result(30)
        self._partitions.update(topics)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # metadata can lag the creation by a moment
            meta = self.probe.list_topics(timeout=5)
            if all(
                name in meta.topics and len(meta.topics[name].partitions) == n for name, n in topics.items()
            ):
                return
            time.sleep(0.1)

    def delete_matching(self, tag: str) -> None:
        """Delete every topic whose name contains ``tag``: a run's own topics, the internal topics the
        consumer names from its GROUP_ID, and Quix's repartition topics (named from the group too)."""
        names = [t for t in self.admin.list_topics(timeout=10).topics if tag in t]
        if names:
            for future in self.admin.delete_topics(names, operation_timeout=30).values():
                try:
                    future.result(60)
                except Exception as exc:  # noqa: BLE001 - a leftover topic is not worth failing the bench
                    say(f"could not delete a topic: {exc}")
        for name in names:
            self._partitions.pop(name, None)

    def partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            meta = self.probe.list_topics(topic, timeout=10)
            self._partitions[topic] = len(meta.topics[topic].partitions)
        return self._partitions[topic]

    def count(self, topics: Iterable[str]) -> int:
        """Records (and, in transactional topics, control markers) in the topics: sum of high watermarks.

        One ListOffsets request for all partitions; a transient error (a leader not known yet) counts
        what was counted last time for that partition."""
        wanted = {
            TopicPartition(t, p): OffsetSpec.latest()  # type: ignore[no-untyped-call]
            for t in topics
            for p in range(self.partitions(t))
        }
        for tp, future in self.admin.list_offsets(wanted, request_timeout=10).items():
            with contextlib.suppress(KafkaException):
                self._latest[(tp.topic, tp.partition)] = future.result(15).offset
        return sum(self._latest.get((tp.topic, tp.partition), 0) for tp in wanted)

    def read(
        self,
        topics: Sequence[str],
        want: int,
        *,
        idle: float = 10.0,
        on_record: Callable[[Any], None] | None = None,
    ) -> list[int]:
        """Timestamps (ms) of the committed records of the topics, from the start, until ``want`` were read
        or nothing new came for ``idle`` seconds. ``on_record`` sees every message."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
            }
        )
        consumer.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in range(self.partitions(t))]
        )
        stamps: list[int] = []
        last = time.monotonic()
        try:
            while len(stamps) < want and time.monotonic() - last < idle:
                batch = consumer.consume(10_000, 0.5)
                if batch:
                    last = time.monotonic()
                for msg in batch:
                    if msg.error() is not None:
                        continue
                    stamps.append(msg.timestamp()[1])
                    if on_record is not None:
                        on_record(msg)
        finally:
            consumer.close()
        return stamps

    def group_members(self, group: str) -> int:
        try:
            described = self.admin.describe_consumer_groups([group])[group].result(10)
        except Exception:  # noqa: BLE001 - not there yet
            return 0
        return len(described.members) if str(described.state).endswith("STABLE") else 0

    def close(self) -> None:
        self.probe.close()


def produce_all(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "compression.type": "lz4",
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            "enable.idempotence": True,
        }
    )
    sent = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        if sent % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise SystemExit(f"bench: could not write {topic}")
    return sent


# -------------------------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """A contender process with its resource samples."""

    name: str
    popen: subprocess.Popen[bytes]
    ps: psutil.Process
    log: Path
    peak_rss: int = 0
    cpu: float = 0.0

    def sample(self) -> None:
        try:
            times = self.ps.cpu_times()
            self.cpu = times.user + times.system + times.children_user + times.children_system
            self.peak_rss = max(self.peak_rss, _vm_hwm(self.ps.pid) or self.ps.memory_info().rss)
        except psutil.Error:
            pass

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    def tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""


def _vm_hwm(pid: int) -> int | None:
    """Peak resident set size (bytes) from /proc (Linux); None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def start(name: str, argv: list[str], env: dict[str, str]) -> Proc:
    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / f"{name}-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, env=service_env(env), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    return Proc(name, popen, psutil.Process(popen.pid), log)


def contender_argv(contender: str, consumer: str = "") -> list[str]:
    """The command of ``contender``; ``consumer``: the login-consumer measured (default this environment's;
    ``--consumer``: another checkout's, to compare two versions under the same harness)."""
    if contender in ("pipeline", "pipeline_eos"):
        return [consumer or str(BIN / "login-consumer")]
    if contender == "passthrough":
        return [sys.executable, "-m", "login_bench.contenders", "passthrough"]
    if contender == "seed_loop":
        return [sys.executable, "-m", "login_bench.contenders", "seed-loop"]
    if contender == "quix":
        return [str(QUIX_PYTHON), str(Path(__file__).with_name("quix.py"))]  # login_bench is not in its venv
    raise ValueError(contender)


def contender_env(
    contender: str, bootstrap: str, *, source: str, out: str, dlq: str, group: str
) -> dict[str, str]:
    env = {
        "BOOTSTRAP_SERVERS": bootstrap,
        "INPUT_TOPIC": source,
        "OUTPUT_TOPIC": out,
        "DLQ_TOPIC": dlq,
        "GROUP_ID": group,
        "METRICS_PORT": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "DETECTORS": "all",
    }
    if contender == "pipeline_eos":
        env["PROCESSING_GUARANTEE"] = "exactly-once"
        env["TRANSACTIONAL_ID"] = f"{group}-tx"
    elif contender in ("pipeline", "quix"):
        env["PROCESSING_GUARANTEE"] = "at-least-once"
    return env


# -------------------------------------------------------------------------------------------- measures


@dataclass
class Bench:
    kafka: Kafka
    plan: Plan
    inputs: dict[str, str] = field(default_factory=dict)  # workload -> topic
    expected: dict[str, int] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:6]}")

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    # ---- preload

    def preload(self) -> None:
        now = int(time.time())
        for w in WORKLOADS:
            topic = f"{self.prefix}-{w.lower()}-input"
            self.kafka.create({topic: PARTITIONS})
            started = time.monotonic()
            if w == "H":
                produce_all(self.bootstrap, topic, h_workload(self.plan.events["H"], end=now - 60))
            else:
                self._preload_p(topic, now)
            self.inputs[w] = topic
            self.expected[w] = self.kafka.count([topic])
            say(f"preloaded {w}: {self.expected[w]:,} events on {topic} in {time.monotonic() - started:.0f}s")

    def _preload_p(self, topic: str, now: int) -> None:
        # 100k users log in ~3.5 times a second in simulated time: 1M events span ~3.3 days. Starting
        # ten days back keeps every event inside the consumer's 30-day bound and none in the future.
        argv = [
            str(BIN / "login-producer"),
            "--rate", "0",
            "--count", str(self.plan.events["P"]),
            "--users", str(self.plan.p_users),
            "--seed", "42",
            "--start-time", str(now - 10 * 86_400),
            "--topic", topic,
            "--bootstrap-servers", self.bootstrap,
            "--metrics-port", "0",
        ]  # fmt: skip
        done = subprocess.run(
            argv, env=service_env({"LOG_LEVEL": "WARNING", "DURATION": "0"}), capture_output=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"bench: login-producer failed: {done.stderr.decode(errors='replace')[-2000:]}")

    # ---- one drain measurement

    def drain(
        self,
        contender: str,
        workload: str,
        processes: int = 1,
        detectors: str = "all",
        extra_env: dict[str, str] | None = None,
    ) -> RunResult:
        """``extra_env``: more settings of the contender's processes (tracing.py: OTEL_*)."""
        tag = f"{self.prefix}-{uuid.uuid4().hex[:6]}"
        out, dlq, group = f"{tag}-out", f"{tag}-dlq", f"{tag}-g"
        self.kafka.create({out: PARTITIONS, dlq: 1}, append_time=True)
        target = min(self.expected[workload], self.plan.samples.get(contender, self.expected[workload]))
        env = contender_env(
            contender, self.bootstrap, source=self.inputs[workload], out=out, dlq=dlq, group=group
        )
        env["DETECTORS"] = detectors
        env.update(extra_env or {})
        load1 = os.getloadavg()[0]
        procs = [
            start(f"{contender}-{workload}", contender_argv(contender, self.plan.consumer), env)
            for _ in range(processes)
        ]
        started = time.monotonic()
        cap = self.plan.max_drain_seconds
        deadline = started + (cap or 120 + target / 500)
        first: tuple[float, int] | None = None
        done, note, capped = 0, "", False
        try:
            while True:
                time.sleep(0.2)
                done = self.kafka.count([out, dlq])
                for p in procs:
                    p.sample()
                cpu = sum(p.cpu for p in procs)
                if first is None and done > 0:
                    first = (cpu, done)
                if done >= target:
                    break
                if not all(p.alive() for p in procs):
                    note = f"a process exited early: {procs[0].tail()}"
                    break
                if time.monotonic() > deadline:
                    capped = bool(cap)
                    if not capped:
                        note = f"not done within {deadline - started:.0f}s ({done:,} of {target:,})"
                    break
            cpu_end = sum(p.cpu for p in procs)
            for p in procs:  # a capped drain stops here: what was written so far is what is measured
                if capped:
                    p.stop()
            want = target if not capped else self.kafka.count([out, dlq])
            stamps = self.kafka.read([out, dlq], want, idle=15.0) if not note else []
        finally:
            for p in procs:
                p.stop()
            self.kafka.delete_matching(tag)
        seconds = time.monotonic() - started
        rate = cpu_per_m = None
        if capped and len(stamps) >= 1000:
            rate = rate_window(stamps)
            note = f"partial: {len(stamps):,} of {target:,} events drained within the {cap:.0f} s cap"
        elif len(stamps) >= target:
            rate = rate_window(sorted(stamps)[:target])
        elif not note:
            note = f"read {len(stamps):,} of {target:,} outputs"
        if first is not None and done > first[1]:
            cpu_per_m = (cpu_end - first[0]) / (done - first[1]) * 1e6
        peak = max((p.peak_rss for p in procs), default=0) / 2**20 or None
        result = RunResult(rate, cpu_per_m, peak, len(stamps), seconds, note, load1)
        say(
            f"{workload} {contender} x{processes}{'' if detectors == 'all' else ' ' + detectors}: "
            f"{_fmt(rate)} events/s, cpu {_fmt(cpu_per_m, 1)} s/M, "
            f"rss {_fmt(peak)} MB, load {load1:.1f}{'; ' + note if note else ''}"
        )
        return result

    # ---- Kafka's perf tools

    def limit(self, workload: str) -> tuple[RunResult, dict[str, Any]]:
        tag = f"{self.prefix}-{uuid.uuid4().hex[:6]}"
        n = min(self.expected[workload], LIMIT_RECORDS)
        payloads = WORK / f"{self.prefix}-payloads-{workload}.txt"
        if not payloads.exists():
            WORK.mkdir(parents=True, exist_ok=True)
            values: list[bytes] = []
            self.kafka.read(
                [self.inputs[workload]], 10_000, idle=5, on_record=lambda m: values.append(m.value())
            )
            payloads.write_bytes(b"\n".join(v for v in values if v and b"\n" not in v))
        # C1 only and the serial collector: on 2 busy cores the JIT's and G1's own threads otherwise cost the
        # tools 3-4x their rate (measured: ConsumerPerformance 20k/s -> 60-85k/s on 200k records)
        java = ["java", "-Xmx512m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", f"{PERF_LIBS}/*"]
        load1 = os.getloadavg()[0]
        consume = start(
            f"limit-consume-{workload}",
            [
                *java, "org.apache.kafka.tools.ConsumerPerformance",
                "--bootstrap-server", self.bootstrap,
                "--topic", self.inputs[workload],
                "--num-records", str(n),
                "--group", f"{tag}-g",
                "--timeout", "60000",
            ],
            {},
        )  # fmt: skip
        consumed = _wait_tool(consume, 600)
        self.kafka.create({f"{tag}-out": PARTITIONS})
        produce = start(
            f"limit-produce-{workload}",
            [
                *java, "org.apache.kafka.tools.ProducerPerformance",
                "--topic", f"{tag}-out",
                "--num-records", str(n),
                "--warmup-records", str(n // 10),
                "--throughput", "-1",
                "--payload-file", str(payloads),
                "--bootstrap-server", self.bootstrap,
                "--command-property", "acks=all", "linger.ms=5", "compression.type=lz4",
                "enable.idempotence=true",
            ],
            {},
        )  # fmt: skip
        produced = _wait_tool(produce, 600)
        self.kafka.delete_matching(tag)
        consume_rate = _parse_consumer_perf(consumed)
        produce_rate = _parse_producer_perf(produced)
        rates = [r for r in (consume_rate, produce_rate) if r]
        rate = min(rates) if len(rates) == 2 else None
        cpu = (consume.cpu + produce.cpu) / n * 1e6 if n else None
        peak = max(consume.peak_rss, produce.peak_rss) / 2**20 or None
        note = "" if rate else f"perf tool output not understood: {consumed[-300:]!r} {produced[-300:]!r}"
        say(
            f"{workload} limit: consume {_fmt(consume_rate)}/s, produce {_fmt(produce_rate)}/s "
            f"(load {load1:.1f})"
        )
        return (
            RunResult(rate, cpu, peak, n, 0.0, note, load1),
            {"consume_events_per_s": consume_rate, "produce_events_per_s": produce_rate, "records": n},
        )

    # ---- latency at a fixed input rate

    def latency(self, rate_name: str, processes: int) -> dict[str, Any]:
        rate = LATENCY_RATES[rate_name]
        seconds = self.plan.latency_seconds[rate_name]
        tag = f"{self.prefix}-{uuid.uuid4().hex[:6]}"
        source, out, dlq, group = f"{tag}-in", f"{tag}-out", f"{tag}-dlq", f"{tag}-g"
        self.kafka.create({source: PARTITIONS})  # CreateTime: when the paced producer created each event
        self.kafka.create({out: PARTITIONS, dlq: 1}, append_time=True)
        env = contender_env("pipeline", self.bootstrap, source=source, out=out, dlq=dlq, group=group)
        procs = [
            start(f"latency-{rate_name}", contender_argv("pipeline", self.plan.consumer), env)
            for _ in range(processes)
        ]
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 1, "enable.idempotence": True})
        sent = 0
        paced_seconds = 0.0
        try:
            deadline = time.monotonic() + 90
            while self.kafka.group_members(group) < processes and time.monotonic() < deadline:
                time.sleep(0.5)
            warm, _ = _pace(producer, source, 500, 1.0, f"{tag}-warm")  # joins, restores, warms up
            while self.kafka.count([out, dlq]) < warm and time.monotonic() < deadline:
                time.sleep(0.2)
            sent, paced_seconds = _pace(producer, source, rate, seconds, tag)
            wait_until = time.monotonic() + max(30.0, 3 * seconds)  # later outputs count as missing
            while self.kafka.count([out, dlq]) < warm + sent and time.monotonic() < wait_until:
                time.sleep(0.2)
            sent_at: dict[bytes, int] = {}
            self.kafka.read([source], warm + sent, idle=5, on_record=lambda m: _stamp(m, sent_at))
            latencies: list[float] = []

            def match(msg: Any) -> None:
                cid = _correlation(msg)
                if cid is not None and cid in sent_at and not cid.startswith(f"{tag}-warm".encode()):
                    latencies.append(float(msg.timestamp()[1] - sent_at[cid]))

            self.kafka.read([out], warm + sent, idle=5, on_record=match)
        finally:
            for p in procs:
                p.stop()
            self.kafka.delete_matching(tag)
        summary = latency_summary(latencies, sent, paced_seconds)
        say(
            f"latency {rate_name}/s x{processes}: p50 {summary['p50']} ms, p99 {summary['p99']} ms, {summary}"
        )
        return summary

    # ---- the whole run

    def run(self) -> dict[str, Any]:
        load_start = _load()
        started = time.monotonic()
        self.preload()
        runs: dict[str, dict[str, list[RunResult]]] = {w: {} for w in WORKLOADS}
        limit_detail: dict[str, dict[str, Any]] = {w: {"runs": []} for w in WORKLOADS}
        for i in range(self.plan.runs):
            for w in WORKLOADS:
                say(f"run {i + 1}/{self.plan.runs}, workload {w}")
                for c in self.plan.contenders:
                    if c == "limit":
                        result, detail = self.limit(w)
                        limit_detail[w]["runs"].append(detail)
                    else:
                        result = self.drain(c, w)
                    runs[w].setdefault(c, []).append(result)
        for w in WORKLOADS:
            details = limit_detail[w]["runs"]
            for key in ("consume_events_per_s", "produce_events_per_s"):
                values = sorted(d[key] for d in details if d.get(key))
                limit_detail[w][key] = values[len(values) // 2] if values else None
        latency: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in LATENCY_RATES}
        scale: dict[str, Any] = {"workload": "H", "events_per_s": {}, "runs": {}}
        if "pipeline" in self.plan.contenders:
            for n in (1, 2):
                for r in LATENCY_RATES:
                    latency[r][str(n)] = self.latency(r, n)
            two = [self.drain("pipeline", "H", processes=2) for _ in range(self.plan.scale_runs)]
            one = runs["H"].get("pipeline", [])
            scale["runs"] = {"1": [r.as_dict() for r in one], "2": [r.as_dict() for r in two]}
            scale["events_per_s"] = {"1": summarize(one)["events_per_s"], "2": summarize(two)["events_per_s"]}
            # the network-keyed stage's cost: the same P drain without the network detector
            no_net = [
                self.drain("pipeline", "P", detectors=USER_DETECTORS) for _ in range(self.plan.scale_runs)
            ]
            scale["network_stage"] = {
                "workload": "P",
                "events_per_s": {
                    "all detectors": summarize(runs["P"].get("pipeline", []))["events_per_s"],
                    "without credential_stuffing": summarize(no_net)["events_per_s"],
                },
                "runs": [r.as_dict() for r in no_net],
            }
        for w in WORKLOADS:
            self.kafka.delete_matching(self.inputs[w])
        for leftover in WORK.glob(f"{self.prefix}-payloads-*"):
            leftover.unlink()
        load_end = _load()
        doc = build_result(
            generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            machine={
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "commit": _commit(),
                "loadavg_start": load_start,
                "loadavg_end": load_end,
                "wall_seconds": round(time.monotonic() - started),
            },
            config={
                "events": self.plan.events,
                "runs": self.plan.runs,
                "samples": self.plan.samples,
                "latency_seconds": self.plan.latency_seconds,
                "quick": self.plan.quick,
                "p_users": self.plan.p_users,
                "partitions": PARTITIONS,
                "contenders": list(self.plan.contenders),
                "max_drain_seconds": self.plan.max_drain_seconds,
                "consumer": self.plan.consumer or "this checkout",
            },
            runs=runs,
            limit_detail=limit_detail,
            latency_ms=latency,
            scale=scale,
        )
        return doc


def _pace(producer: Producer, topic: str, rate: int, seconds: float, tag: str) -> tuple[int, float]:
    """Produce ``rate`` events a second for ``seconds``, in 1 ms steps; correlation ids ``tag-<n>``.

    The events (workload H's format plus an `outcome`, 10% failures; event time = the second each is
    due) are built before the clock starts, so the loop only calls ``produce``: the input rate is the rate
    asked for, not what the harness can generate on a busy machine (reported as ``input_rate``)."""
    import random

    rng = random.Random(tag)
    total = int(rate * seconds)
    first_second = int(time.time()) + 1
    records = []
    for n in range(total):
        event = h_event(rng, n, first_second + n // rate, 7)
        event["outcome"] = "failure" if rng.random() < 0.1 else "success"  # failures feed the network stage
        records.append((str(event["user_id"]).encode(), orjson.dumps(event), f"{tag}-{n}".encode()))
    while time.time() < first_second:
        time.sleep(0.001)
    started = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        while sent < due:
            key, value, cid = records[sent]
            try:
                producer.produce(topic, value, key, headers=[("correlation-id", cid)])
            except BufferError:
                producer.poll(0.01)
                continue
            sent += 1
        producer.poll(0)
        time.sleep(0.001)
    took = time.monotonic() - started
    producer.flush(30)
    return sent, took


def _correlation(msg: Any) -> bytes | None:
    for name, value in msg.headers() or ():
        if name == "correlation-id":
            return value if isinstance(value, bytes) else None
    return None


def _stamp(msg: Any, into: dict[bytes, int]) -> None:
    cid = _correlation(msg)
    if cid is not None:
        into[cid] = msg.timestamp()[1]


def _wait_tool(proc: Proc, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while proc.alive() and time.monotonic() < deadline:
        proc.sample()
        time.sleep(0.2)
    proc.stop()
    return proc.log.read_text(errors="replace")


def _parse_consumer_perf(text: str) -> float | None:
    """ConsumerPerformance prints a header and one CSV line; fetch.nMsg.sec excludes the group join."""
    lines = [ln for ln in text.splitlines() if ln.count(",") >= 9]
    if len(lines) < 2 or "nMsg.sec" not in lines[-2]:
        return None
    header = [h.strip() for h in lines[-2].split(",")]
    values = [v.strip() for v in lines[-1].split(",")]
    try:
        return float(values[header.index("fetch.nMsg.sec")])
    except (ValueError, IndexError):
        return None


def _parse_producer_perf(text: str) -> float | None:
    """ProducerPerformance's summary: the steady-state line (after --warmup-records) when there is one."""
    lines = [ln for ln in text.splitlines() if re.search(r"^\d+ .*records sent, [\d.]+ records/sec", ln)]
    steady = [ln for ln in lines if "steady" in ln.lower()]
    for line in reversed(steady or lines):
        found = re.search(r"records sent, ([\d.]+) records/sec", line)
        if found:
            return float(found.group(1))
    return None


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, check=False)
    return done.stdout.decode().strip() or "?"


# ------------------------------------------------------------------------------------------ outputs


def chart(doc: dict[str, Any], path: Path) -> None:
    """Three panels: events/s per contender and workload, CPU seconds per million events (what the
    machine's load changes least), and latency at the fixed input rates against the p99 targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate_ax, cpu_ax, lat_ax) = plt.subplots(
        1, 3, figsize=(17, 5.2), gridspec_kw={"width_ratios": [3, 3, 2]}
    )
    names = [c for c in CONTENDERS if any(doc["events_per_s"][w][c] for w in WORKLOADS)]
    width = 0.38
    for ax, section, title, unit in (
        (rate_ax, "events_per_s", "Throughput draining a preloaded 6-partition topic", "events/s"),
        (cpu_ax, "cpu_s_per_million", "CPU seconds per million events", "CPU s / 1M events"),
    ):
        for k, w in enumerate(WORKLOADS):
            values = [doc[section][w][c] or 0 for c in names]
            bars = ax.bar([i + (k - 0.5) * width for i in range(len(names))], values, width, label=w)
            ax.bar_label(bars, labels=[_short(v) for v in values], fontsize=7)
        if any(doc[section][w][c] for w in WORKLOADS for c in names):
            ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_ylabel(f"{unit} (log scale, median of runs)")
        ax.set_title(title, fontsize=10)
        ax.legend(title="workload", fontsize=8)
    rows = [(r, n, e) for r, by_n in doc["latency_ms"].items() for n, e in sorted(by_n.items())]
    xs = list(range(len(rows)))
    for offset, q in ((-0.2, "p50"), (0.2, "p99")):
        values = [e.get(q) or 0 for _, _, e in rows]
        bars = lat_ax.bar([x + offset for x in xs], values, 0.4, label=q)
        lat_ax.bar_label(bars, labels=[_short(v) for v in values], fontsize=7)
    for x, (r, _, _) in zip(xs, rows, strict=True):
        target = LATENCY_P99_TARGET_MS.get(r)
        if target:
            lat_ax.hlines(target, x - 0.45, x + 0.45, colors="red", linestyles="dashed")
    if any(e.get("p99") for _, _, e in rows):
        lat_ax.set_yscale("log")
    lat_ax.set_xticks(xs, [f"{r}/s\n{n} proc" for r, n, _ in rows])
    lat_ax.set_ylabel("event -> output ms (log; dashed: p99 target)")
    lat_ax.set_title("login-consumer latency at a fixed input rate", fontsize=10)
    lat_ax.legend(fontsize=8)
    machine = doc["machine"]
    fig.suptitle(
        f"make bench — {machine['cpus']} cores, load average {machine['loadavg_start'][0]} at start, "
        f"{machine['loadavg_end'][0]} at end (shared machine), commit {machine['commit']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _short(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:,.1f}k"
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def update_readme(table: str) -> bool:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, _, rest = text.partition(README_START)
    _, _, tail = rest.partition(README_END)
    readme.write_text(f"{head}{README_START}\n{table}{README_END}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default=os.environ.get("BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--quick", action="store_true", help="small workloads, 1 run (~3 min)")
    parser.add_argument("--h-events", type=int, default=0, help="events of workload H (default 1,000,000)")
    parser.add_argument("--p-events", type=int, default=0, help="events of workload P (default 200,000)")
    parser.add_argument("--runs", type=int, default=0, help="runs per measurement (default 3; quick 1)")
    parser.add_argument(
        "--only", default="", help=f"comma-separated contenders (default all: {','.join(CONTENDERS)})"
    )
    parser.add_argument(
        "--max-drain-seconds",
        type=float,
        default=None,
        help="stop a drain after S seconds and measure what it drained, marked partial "
        "(default 120, quick 60; 0 = drain everything whatever it takes)",
    )
    parser.add_argument(
        "--scale-runs", type=int, default=0, help="runs of the 2-process and network-stage drains"
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=0.0,
        help="seconds of paced input per latency measurement (default 20 at 1k/s, 10 at 10k/s; quick 6, 4)",
    )
    parser.add_argument(
        "--consumer",
        default="",
        help="the login-consumer executable measured (default this environment's); another checkout's "
        ".venv/bin/login-consumer compares two versions on the same harness and traffic",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    parser.add_argument("--update-readme", action="store_true", help="replace the README's benchmark table")
    args = parser.parse_args(argv)
    plan = Plan.from_args(args)
    if "quix" in plan.contenders and not QUIX_PYTHON.exists():
        raise SystemExit(f"bench: {QUIX_PYTHON} is missing: run `make bench-env` (make bench does)")
    if "limit" in plan.contenders and not PERF_LIBS.exists():
        raise SystemExit(f"bench: {PERF_LIBS} is missing: run `make bench-env` (make bench does)")
    kafka = Kafka(args.bootstrap)
    try:
        doc = Bench(kafka, plan).run()
    finally:
        kafka.close()
    problems = check_shape(doc)
    if problems:
        say("result shape problems: " + "; ".join(problems))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    table = markdown(doc)
    (args.out / "bench.md").write_text(table)
    try:
        chart(doc, args.out / "bench.png")
    except Exception as exc:  # noqa: BLE001 - the figures matter more than the picture
        say(f"chart failed: {exc!r}")
    if args.update_readme and not update_readme(table):
        say(f"README.md has no {README_START} ... {README_END} section; not updated")
    print(table)
    say(f"results in {args.out} ({doc['machine']['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
