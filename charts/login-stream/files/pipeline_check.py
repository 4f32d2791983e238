#!/usr/bin/env python3
"""End-to-end check of a running login-stream pipeline: marked events in, the same events out.

Used by the chart's `helm test` hook (``check``), by `make e2e` (``mark``/``produce``/``verify`` around a
consumer scale-up) and by the offline test suite against a local broker. Needs only the standard
library and confluent-kafka, both present in the service images; with SECURITY_PROTOCOL set it takes the
services' own Kafka security settings (SASL_*, SSL_*: login_common.security, also in the images).

    pipeline_check.py check --count 20 --timeout 120 --dlq --ready-url http://svc:8000/ready
    pipeline_check.py mark                      # JSON: current end offsets of output and DLQ topics
    pipeline_check.py produce --marker M --count 1000
    pipeline_check.py verify --marker M --count 1000 --offsets '<JSON from mark>'

Every event carries ``event_id`` ``<marker>-<n>``; ``verify`` reads the output topic from the marked
offsets and succeeds when every one of the ``count`` ids arrived (duplicates are reported, not fatal:
at-least-once). With ``--dlq`` one unparseable message keyed ``<marker>-dlq`` is sent too and must arrive,
byte for byte, on the dead-letter topic. Exit codes: 0 ok, 1 events missing, 2 usage or Kafka error.
The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

Offsets = dict[str, dict[str, int]]


def bad_message(marker: str) -> bytes:
    return b'{"check-marker": "' + marker.encode() + b'", this is not JSON'


def event(marker: str, n: int) -> dict[str, Any]:
    return {
        "event_id": f"{marker}-{n:07d}",
        "user_id": f"{marker}-user-{n % 50}",
        "ip": f"198.51.100.{1 + n % 200}",
        "timestamp": int(time.time()),
        "app_version": "2.3.0",
        "locale": "RI",
        "device_id": f"{marker}-device-{n % 50}",
        "device_type": "android",
        "outcome": "success",
        "auth_method": "password",
    }


def wait_ready(urls: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - URLs come from the caller
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"pipeline_check: {url} not ready within {timeout:.0f}s")
            time.sleep(2)


def kafka_config(bootstrap: str) -> dict[str, Any]:
    """The broker address, plus the services' security settings when SECURITY_PROTOCOL asks for them."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap}
    if os.environ.get("SECURITY_PROTOCOL", "PLAINTEXT").upper() != "PLAINTEXT":
        from login_common.security import KafkaSecurity  # only when secured

        config.update(KafkaSecurity().client_security())
    return config


def end_offsets(bootstrap: str, topic: str) -> dict[str, int]:
    consumer = Consumer({**kafka_config(bootstrap), "group.id": f"pipeline-check-{uuid.uuid4().hex}"})
    try:
        meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaException(f"topic {topic} not found")
        out = {}
        for partition in meta.partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
            out[str(partition)] = int(high)
        return out
    finally:
        consumer.close()


def mark(args: argparse.Namespace) -> Offsets:
    return {
        "output": end_offsets(args.bootstrap, args.output_topic),
        "dlq": end_offsets(args.bootstrap, args.dlq_topic),
    }


def produce(args: argparse.Namespace) -> int:
    producer = Producer({**kafka_config(args.bootstrap), "acks": "all", "enable.idempotence": True})
    failed: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    started = time.monotonic()
    for n in range(args.start, args.start + args.count):
        body = event(args.marker, n)
        producer.produce(
            args.input_topic,
            key=body["user_id"].encode(),
            value=json.dumps(body, separators=(",", ":")).encode(),
            on_delivery=on_delivery,
        )
        producer.poll(0)
        if interval:
            delay = started + (n - args.start + 1) * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    if args.dlq:
        producer.produce(args.input_topic, key=f"{args.marker}-dlq".encode(), value=bad_message(args.marker))
    remaining = producer.flush(args.flush_timeout)
    if remaining or failed:
        raise KafkaException(f"{remaining} undelivered, {len(failed)} failed: {failed[:3]}")
    return args.count


def read_from(
    bootstrap: str, topic: str, offsets: dict[str, int], done: Any, timeout: float
) -> tuple[bool, float]:
    """Feed every message of ``topic`` after ``offsets`` to ``done(msg)`` until it returns True."""
    consumer = Consumer(
        {
            **kafka_config(bootstrap),
            "group.id": f"pipeline-check-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    started = time.monotonic()
    try:
        consumer.assign([TopicPartition(topic, int(p), int(o)) for p, o in offsets.items()])
        while time.monotonic() - started < timeout:
            for msg in consumer.consume(500, 0.5):
                if msg.error() is None and done(msg):
                    return True, time.monotonic() - started
        return False, time.monotonic() - started
    finally:
        consumer.close()


def longest_gap(stamps_ms: list[int]) -> float:
    """The longest time (s) between two consecutive outputs, by their record timestamps: the stall."""
    ordered = sorted(stamps_ms)
    return round(max((b - a for a, b in itertools.pairwise(ordered)), default=0) / 1000, 1)


def verify(args: argparse.Namespace, offsets: Offsets) -> dict[str, Any]:
    prefix = f"{args.marker}-"
    seen: dict[str, int] = {}
    stamps: list[int] = []  # the outputs' record timestamps (ms), for the longest time without output

    def on_output(msg: Any) -> bool:
        try:
            event_id = json.loads(msg.value()).get("event_id")
        except (ValueError, AttributeError):
            return False
        if isinstance(event_id, str) and event_id.startswith(prefix):
            seen[event_id] = seen.get(event_id, 0) + 1
            kind, ms = msg.timestamp()
            if kind != 0:  # TIMESTAMP_NOT_AVAILABLE
                stamps.append(ms)
        return len(seen) >= args.count

    complete, seconds = read_from(
        args.bootstrap, args.output_topic, offsets["output"], on_output, args.timeout
    )
    wanted = {f"{args.marker}-{n:07d}" for n in range(args.count)}
    missing = sorted(wanted - set(seen))
    summary: dict[str, Any] = {
        "marker": args.marker,
        "expected": args.count,
        "processed": len(wanted & set(seen)),
        "duplicates": sum(c - 1 for c in seen.values()),
        "missing": len(missing),
        "missing_sample": missing[:5],
        "seconds": round(seconds, 1),
        "max_gap_s": longest_gap(stamps),
    }
    ok = complete and not missing
    if args.dlq:
        key = f"{args.marker}-dlq".encode()
        expected_value = bad_message(args.marker)
        found: list[bool] = []

        def on_dlq(msg: Any) -> bool:
            if msg.key() == key:
                found.append(msg.value() == expected_value)
                return True
            return False

        dlq_ok, _ = read_from(
            args.bootstrap, args.dlq_topic, offsets["dlq"], on_dlq, max(5.0, args.timeout / 2)
        )
        summary["dlq"] = "untouched" if dlq_ok and all(found) else ("altered" if found else "missing")
        ok = ok and summary["dlq"] == "untouched"
    summary["result"] = "ok" if ok else "failed"
    return summary


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="pipeline_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=env("BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--input-topic", default=env("INPUT_TOPIC", "user-login"))
    p.add_argument("--output-topic", default=env("OUTPUT_TOPIC", "processed-logins"))
    p.add_argument("--dlq-topic", default=env("DLQ_TOPIC", "user-login-dlq"))
    sub = p.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="mark, produce and verify in one go")
    sub.add_parser("mark", help="print the output and DLQ topics' end offsets as JSON")
    prod = sub.add_parser("produce", help="send COUNT marked events")
    ver = sub.add_parser("verify", help="wait for COUNT marked events after the marked offsets")
    for cmd in (check, prod, ver):
        cmd.add_argument("--count", type=int, default=20)
        cmd.add_argument("--dlq", action="store_true", help="also check the dead-letter path")
    for cmd in (prod, ver):
        cmd.add_argument("--marker", required=True)
    for cmd in (check, prod):
        cmd.add_argument("--rate", type=float, default=0.0, help="events per second (0 = no limit)")
        cmd.add_argument(
            "--flush-timeout", type=float, default=60.0,
            help="seconds to wait for the last deliveries (longer while a broker restarts)",
        )  # fmt: skip
    prod.add_argument("--start", type=int, default=0, help="number of the first event")
    for cmd in (check, ver):
        cmd.add_argument("--timeout", type=float, default=120.0)
    check.add_argument("--ready-url", action="append", default=[], help="wait for these to answer 200")
    ver.add_argument("--offsets", required=True, help="JSON printed by `mark`")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "mark":
            print(json.dumps(mark(args)))
            return 0
        if args.command == "produce":
            print(json.dumps({"marker": args.marker, "sent": produce(args)}))
            return 0
        if args.command == "verify":
            summary = verify(args, json.loads(args.offsets))
        else:
            wait_ready(args.ready_url, args.timeout)
            args.marker = f"check-{uuid.uuid4().hex[:12]}"
            args.start = 0
            offsets = mark(args)
            produce(args)
            summary = verify(args, offsets)
    except KafkaException as exc:
        print(json.dumps({"result": "error", "error": str(exc)}))
        return 2
    print(json.dumps(summary))
    return 0 if summary["result"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
