#!/usr/bin/env python3
"""Measure the stateful detectors against the producer's ground truth (``make evaluate``).

Broker mode (the default): login-producer (fixed seed, default scenario mix, ``--rate 0``) writes
``--events`` events to a fresh input topic; login-consumer (one process, the settings of the
environment plus a timestamp window wide enough for the simulated clock) processes them; then the
output topic is joined by ``event_id`` with the labels the producer put in the input's ``x-sim-truth``
headers. In-process mode (``--in-process``): the producer writes a ``--out`` file and the consumer's
``Processor`` with the stateful detectors reads it directly, batch by batch (no broker).

Prints per detector a confusion table (TP/FP/FN/TN over every labelled event), precision, recall and
F1; exits 1 when any detector's precision or recall is below ``--min`` (0.95), 2 when the run itself
failed. ``--json FILE`` writes the figures.

    login-evaluate [--events 500000] [--seed 42] [--partitions 6] [--in-process]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Message

from login_devtools.service_env import service_env  # the services never see make's command-line variables

DETECTORS = ("brute_force", "credential_stuffing", "impossible_travel", "new_device", "new_country")
MAX_AGE = 20 * 365 * 86_400  # the simulated clock starts in 2025: accept old timestamps
TRUTH_HEADER = "x-sim-truth"
SCENARIO_HEADER = "x-sim-scenario"
SCENARIOS: dict[str, str] = {}  # event_id -> scenario (only with --show)
ID_HEADER = "correlation-id"
BIN = Path(sys.executable).parent


class EvaluationError(RuntimeError):
    """The run could not produce figures (producer or consumer failed, outputs missing)."""


@dataclass
class Confusion:
    detector: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def figures(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


def score(
    labels: Mapping[str, frozenset[str]], detected: Mapping[str, frozenset[str]]
) -> dict[str, Confusion]:
    """Confusion per detector over every labelled event (an event with no output counts as undetected)."""
    table = {name: Confusion(name) for name in DETECTORS}
    empty: frozenset[str] = frozenset()
    for event_id, truth in labels.items():
        found = detected.get(event_id, empty)
        for name, cell in table.items():
            if name in truth:
                if name in found:
                    cell.tp += 1
                else:
                    cell.fn += 1
            elif name in found:
                cell.fp += 1
            else:
                cell.tn += 1
    return table


def render(table: Mapping[str, Confusion], minimum: float) -> str:
    lines = [
        f"{'detector':<20} {'TP':>7} {'FP':>7} {'FN':>7} {'TN':>9} {'precision':>10} {'recall':>8} {'F1':>7}",
    ]
    for cell in table.values():
        ok = cell.precision >= minimum and cell.recall >= minimum
        lines.append(
            f"{cell.detector:<20} {cell.tp:>7} {cell.fp:>7} {cell.fn:>7} {cell.tn:>9} "
            f"{cell.precision:>10.4f} {cell.recall:>8.4f} {cell.f1:>7.4f}  {'ok' if ok else 'BELOW'}"
        )
    return "\n".join(lines)


def _names(raw: Iterable[str]) -> frozenset[str]:
    return frozenset(name for name in raw if name)


def _detected(doc: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(d["detector"] for d in doc.get("detections") or ())


def _producer(args: argparse.Namespace, *extra: str) -> None:
    command = [
        str(BIN / "login-producer"),
        "--rate",
        "0",
        "--count",
        str(args.events),
        "--seed",
        str(args.seed),
        "--users",
        str(args.users),
        "--metrics-port",
        "0",
        *extra,
    ]
    env = service_env({"LOG_FORMAT": "json", "DURATION": "0"})  # --count ends it, nothing else
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise EvaluationError(f"login-producer exited {done.returncode}: {done.stderr[-2000:]}")


def consumer_env(**overrides: str) -> dict[str, str]:
    """Settings for the consumer under evaluation: the environment's, with old timestamps accepted."""
    return {"TIMESTAMP_MAX_AGE_SECONDS": str(MAX_AGE), "METRICS_PORT": "0", **overrides}


# --------------------------------------------------------------------------- in-process


def run_in_process(
    path: Path,
    partitions: int,
    batch: int = 1000,
    timings: dict[str, float] | None = None,
) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]], int]:
    """(labels, detections, dead-lettered) for a --out file through Processor + both stages' detectors
    (login_consumer/in_process.py: the user stage's, then the network stage's on the same events).

    ``timings["process_s"]``: seconds spent in ``Processor.process`` and in producing the batches'
    changelog records."""
    from login_common.settings import load_settings
    from login_consumer.config import ConsumerSettings
    from login_consumer.detectors.base import StateChangelog
    from login_consumer.in_process import AllDetectors
    from login_consumer.process import Processor, tune_gc

    settings = load_settings(ConsumerSettings, timestamp_max_age_seconds=MAX_AGE, metrics_port=0)
    detectors = AllDetectors(settings.detector_config(), partitions=partitions)
    changelog: StateChangelog | None = detectors
    group: list[tuple[Processor, StateChangelog | None, list[Message]]] = [
        (Processor.from_settings(settings, detectors), changelog, [])
    ]
    tune_gc()  # as login-consumer does at start-up
    spent = 0.0
    labels: dict[str, frozenset[str]] = {}
    detected: dict[str, frozenset[str]] = {}
    dead = 0
    offsets = [0] * partitions

    def flush(processor: Processor, changelog: StateChangelog | None, pending: list[Message]) -> None:
        nonlocal dead, spent
        started = time.perf_counter()
        result = processor.process(pending)
        if changelog is not None:
            changelog.changes()
        spent += time.perf_counter() - started
        dead += len(result.dead)
        for _msg, _key, value, _headers in result.outputs:
            doc = orjson.loads(value)
            detected[doc["event_id"]] = _detected(doc)
        pending.clear()

    with path.open("rb") as lines:
        for line in lines:
            event = orjson.loads(line)
            label = event.pop("_label")
            labels[event["event_id"]] = _names(label["truth"])
            SCENARIOS[event["event_id"]] = label["scenario"]
            key = event["user_id"].encode()
            p = zlib.crc32(key) % partitions
            value = orjson.dumps(event)
            processor, changelog, pending = group[p % len(group)]
            pending.append(Message(topic="user-login", partition=p, offset=offsets[p], key=key, value=value))
            offsets[p] += 1
            if len(pending) >= batch:
                flush(processor, changelog, pending)
    for processor, changelog, pending in group:
        if pending:
            flush(processor, changelog, pending)
    if timings is not None:
        timings["process_s"] = spent
    return labels, detected, dead


# --------------------------------------------------------------------------- through the broker


def _read_all(
    bootstrap: str, topics: list[str], *, expected: int | None, timeout: float, idle: float = 5.0
) -> list[Message]:
    """Every message of ``topics`` from the beginning: until ``expected`` arrived, or ``idle`` s of quiet."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"evaluate-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe(topics)
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(10_000, 0.5) if m.error() is None]
            if batch:
                out.extend(batch)
                quiet_since = time.monotonic()
            if expected is not None and len(out) >= expected:
                break
            if expected is None and out and time.monotonic() - quiet_since > idle:
                break
    finally:
        consumer.close()
    return out


def _header(msg: Message, name: str) -> bytes | None:
    headers = msg.headers() or []
    for key, value in headers.items() if isinstance(headers, dict) else headers:
        if key == name:
            return value if isinstance(value, bytes) or value is None else str(value).encode()
    return None


def run_via_broker(
    args: argparse.Namespace,
) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]], int, dict[str, float]]:
    """(labels, detections, dead-lettered, timings) for a producer -> broker -> consumer run."""
    from login_common.kafka import ensure_topics

    tag = uuid.uuid4().hex[:8]
    source, output, dlq, group = f"eval-in-{tag}", f"eval-out-{tag}", f"eval-dlq-{tag}", f"eval-{tag}"
    bootstrap = args.bootstrap
    ensure_topics(bootstrap, {source: args.partitions, output: args.partitions, dlq: 1})
    timings: dict[str, float] = {}
    started = time.monotonic()
    _producer(args, "--topic", source, "--bootstrap-servers", bootstrap)
    timings["produce_s"] = time.monotonic() - started

    env = service_env(
        {
            "LOG_FORMAT": "json",
            **consumer_env(
                BOOTSTRAP_SERVERS=bootstrap,
                INPUT_TOPIC=source,
                OUTPUT_TOPIC=output,
                DLQ_TOPIC=dlq,
                GROUP_ID=group,
            ),
        }
    )
    logs = [tempfile.TemporaryFile() for _ in range(max(1, args.consumers))]  # noqa: SIM115 - closed below
    started = time.monotonic()
    procs = [
        subprocess.Popen([str(BIN / "login-consumer"), "run"], env=env, stdout=log, stderr=log)
        for log in logs
    ]  # N copies of the same command: one group, the partitions of both stages shared between them
    try:
        results = _read_all(bootstrap, [output, dlq], expected=args.events, timeout=args.timeout)
        timings["consume_s"] = time.monotonic() - started
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        text = b""
        for n, log in enumerate(logs):
            log.seek(0)
            text += f"--- consumer {n}\n".encode() + log.read()
            log.close()
        tail = text[-3000:].decode(errors="replace")
        if args.consumer_log:
            args.consumer_log.write_bytes(text)
    if len(results) < args.events:
        raise EvaluationError(f"only {len(results)} of {args.events} outputs arrived; consumer log:\n{tail}")
    detected: dict[str, frozenset[str]] = {}
    dead = 0
    for msg in results:
        if msg.topic() == dlq:
            dead += 1
            continue
        doc = orjson.loads(msg.value() or b"{}")
        detected[doc["event_id"]] = _detected(doc)

    started = time.monotonic()
    labels: dict[str, frozenset[str]] = {}
    for msg in _read_all(bootstrap, [source], expected=args.events, timeout=args.timeout):
        event_id = (_header(msg, ID_HEADER) or b"").decode()
        truth = (_header(msg, TRUTH_HEADER) or b"").decode()
        labels[event_id] = _names(truth.split(","))
        if args.show:
            SCENARIOS[event_id] = (_header(msg, SCENARIO_HEADER) or b"").decode()
    timings["labels_s"] = time.monotonic() - started
    if len(labels) < args.events:
        raise EvaluationError(f"only {len(labels)} of {args.events} labelled inputs read back")
    from confluent_kafka.admin import AdminClient

    AdminClient({"bootstrap.servers": bootstrap}).delete_topics(
        [
            source,
            output,
            dlq,
            f"{group}-detector-state",
            f"{group}-network-repartition",
            f"{group}-network-state",
        ],
        operation_timeout=10,
    )
    return labels, detected, dead, timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=6, help="input topic partitions")
    parser.add_argument("--bootstrap", default=os.environ.get("BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--in-process", action="store_true", help="no broker: --out file -> Processor")
    parser.add_argument(
        "--consumers",
        type=int,
        default=int(os.environ.get("EVALUATE_CONSUMERS", "1")),
        help="run N login-consumer processes (one group) through the broker",
    )
    parser.add_argument("--min", type=float, default=0.95, help="precision and recall to reach")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the outputs")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--show", type=int, default=0, help="print up to N misclassified events")
    parser.add_argument("--consumer-log", type=Path, help="keep the consumer's log in this file")
    args = parser.parse_args(argv)

    started = time.monotonic()
    timings: dict[str, float] = {}
    try:
        if args.in_process:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "events.jsonl"
                _producer(args, "--out", str(path))
                timings["produce_s"] = time.monotonic() - started
                labels, detected, dead = run_in_process(path, args.partitions, timings=timings)
        else:
            labels, detected, dead, timings = run_via_broker(args)
    except EvaluationError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    table = score(labels, detected)
    mode = (
        "in-process, both stages in one process"
        if args.in_process
        else f"broker {args.bootstrap}, {args.consumers} login-consumer process(es)"
    )
    print(
        f"evaluate: {len(labels)} events, seed {args.seed}, {args.users} users, default mix, "
        f"{args.partitions} partitions, {mode}; {dead} dead-lettered; "
        f"{time.monotonic() - started:.1f}s ({', '.join(f'{k} {v:.1f}' for k, v in timings.items())})"
    )
    if "process_s" in timings:
        rate = len(labels) / timings["process_s"]
        print(f"in-process path (Processor + changelog records): {rate:,.0f} events/s")
    print(render(table, args.min))
    if args.show:
        empty: frozenset[str] = frozenset()
        wrong = [e for e, truth in labels.items() if truth != detected.get(e, empty)]
        for event_id in wrong[: args.show]:
            print(
                f"  {event_id} {SCENARIOS.get(event_id, '?')}: truth {sorted(labels[event_id])}, "
                f"detected {sorted(detected.get(event_id, empty))}"
            )
    below = [c.detector for c in table.values() if c.precision < args.min or c.recall < args.min]
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "events": len(labels),
                    "seed": args.seed,
                    "users": args.users,
                    "partitions": args.partitions,
                    "mode": mode,
                    "dead_lettered": dead,
                    "detectors": {name: cell.figures() for name, cell in table.items()},
                },
                indent=2,
            )
        )
    if below:
        print(f"FAIL: precision or recall below {args.min} for {', '.join(below)}")
        return 1
    print(f"PASS: precision and recall >= {args.min} for every detector")
    return 0


if __name__ == "__main__":
    sys.exit(main())
