#!/usr/bin/env python3
"""``make demo``: the whole pipeline on the local broker with a live terminal view.

Starts login-consumer and login-producer as child processes (each with its own metrics port) and a
Prometheus scraping both with the alert rules of monitoring/rules loaded (PROMETHEUS_BIN overrides
/usr/bin/prometheus; without one the demo runs on and says so; --no-prometheus skips it). Shows rates,
counts and consumer lag once a second, and stops cleanly on Ctrl-C or after --duration seconds,
printing a summary whose ``processed: N`` line scripts can read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from local_prometheus import CONSUMER_JOB, PRODUCER_JOB, Prometheus, PrometheusError
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.live import Live
from rich.table import Table

from login_common.kafka import ensure_topics

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", preferred))  # noqa: S104 - probing the port the service will bind
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """Sum every sample of every metric (labels folded) from one /metrics endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


@dataclass
class Lag:
    bootstrap: str
    topic: str
    group: str
    _consumer: Consumer = field(init=False)

    def __post_init__(self) -> None:
        self._consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})

    def total(self) -> int | None:
        try:
            md = self._consumer.list_topics(self.topic, timeout=2)
            parts = [TopicPartition(self.topic, p) for p in md.topics[self.topic].partitions]
            committed = self._consumer.committed(parts, timeout=2)
            lag = 0
            for tp in committed:
                _low, high = self._consumer.get_watermark_offsets(tp, timeout=2)
                lag += high - tp.offset if tp.offset >= 0 else high
            return lag
        except Exception:  # noqa: BLE001 - lag is best effort in the live view
            return None

    def close(self) -> None:
        self._consumer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = Ctrl-C)")
    parser.add_argument("--rate", type=float, default=float(os.environ.get("DEMO_RATE", "500")))
    parser.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    args = parser.parse_args()

    bootstrap = os.environ.get("BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    topics = {
        "input": os.environ.get("INPUT_TOPIC", "user-login"),
        "output": os.environ.get("OUTPUT_TOPIC", "processed-logins"),
        "dlq": os.environ.get("DLQ_TOPIC", "user-login-dlq"),
    }
    group = os.environ.get("GROUP_ID", "login-consumer")
    ensure_topics(bootstrap, {topics["input"]: 6, topics["output"]: 6, topics["dlq"]: 1})
    cport, pport = free_port(8000), free_port(8001)
    logs = ROOT / ".cache" / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    base_env = {**os.environ, "BOOTSTRAP_SERVERS": bootstrap, "LOG_FORMAT": "json", "GROUP_ID": group}

    def spawn(name: str, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
        exe = shutil.which(name, path=str(BIN)) or name
        with open(logs / f"{name}.log", "wb") as out:
            return subprocess.Popen(
                [exe, *extra],
                env={**base_env, "METRICS_PORT": str(port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    consumer = spawn("login-consumer", cport, [])
    producer = spawn("login-producer", pport, ["--rate", str(args.rate)])
    console = Console()
    prometheus: Prometheus | None = None
    if not args.no_prometheus:
        shutil.rmtree(logs / "prometheus" / "data", ignore_errors=True)  # no stale series from earlier runs
        try:
            prometheus = Prometheus.start(
                {CONSUMER_JOB: [f"127.0.0.1:{cport}"], PRODUCER_JOB: [f"127.0.0.1:{pport}"]},
                workdir=logs / "prometheus",
                port=int(os.environ.get("PROMETHEUS_PORT", "9090")),
                scrape_interval="2s",
            )
            print(f"prometheus: {prometheus.url}  (alerts: {prometheus.url}/alerts; log: {prometheus.log})")
        except PrometheusError as exc:
            print(f"prometheus: not started ({exc})")
    lag = Lag(bootstrap, topics["input"], group)
    stopping = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    started = time.monotonic()
    prev: dict[str, float] = {}
    prev_t = started
    last: dict[str, float] = {}

    def view(p: dict[str, float], c: dict[str, float], rates: dict[str, float], lag_now: int | None) -> Table:
        t = Table(
            title=f"login-stream demo — {bootstrap} — {time.monotonic() - started:5.0f}s (Ctrl-C stops)"
        )
        t.add_column("metric")
        t.add_column("total", justify="right")
        t.add_column("per second", justify="right")
        t.add_row(
            "produced", f"{p.get('login_producer_events_delivered_total', 0):.0f}", f"{rates['produced']:.0f}"
        )
        t.add_row(
            "consumed", f"{c.get('login_consumer_events_consumed_total', 0):.0f}", f"{rates['consumed']:.0f}"
        )
        t.add_row(
            "processed",
            f"{c.get('login_consumer_events_processed_total', 0):.0f}",
            f"{rates['processed']:.0f}",
        )
        t.add_row(
            "dead-lettered", f"{c.get('login_consumer_events_dlq_total', 0):.0f}", f"{rates['dlq']:.0f}"
        )
        t.add_row("consumer lag", "?" if lag_now is None else str(lag_now), "")
        if prometheus is not None:
            t.caption = f"Prometheus: {prometheus.url}"
        return t

    keys = {
        "produced": ("p", "login_producer_events_delivered_total"),
        "consumed": ("c", "login_consumer_events_consumed_total"),
        "processed": ("c", "login_consumer_events_processed_total"),
        "dlq": ("c", "login_consumer_events_dlq_total"),
    }

    def tick() -> Table:
        nonlocal prev, prev_t, last
        p = scrape(pport) or {k[2:]: v for k, v in last.items() if k.startswith("p:")}
        c = scrape(cport) or {k[2:]: v for k, v in last.items() if k.startswith("c:")}
        now = time.monotonic()
        merged = {**{f"p:{k}": v for k, v in p.items()}, **{f"c:{k}": v for k, v in c.items()}}
        dt = max(now - prev_t, 1e-6)
        rates = {
            name: max(0.0, (merged.get(f"{src}:{m}", 0) - prev.get(f"{src}:{m}", 0)) / dt)
            for name, (src, m) in keys.items()
        }
        prev, prev_t, last = merged, now, merged
        return view(p, c, rates, lag.total())

    code = 0
    try:
        with Live(tick(), console=console, refresh_per_second=2, transient=not console.is_terminal) as live:
            while not stopping:
                if args.duration and time.monotonic() - started >= args.duration:
                    break
                if consumer.poll() is not None or producer.poll() is not None:
                    console.print("[red]a service exited early; see .cache/demo/*.log[/red]")
                    code = 1
                    break
                time.sleep(1)
                live.update(tick())
            # drain: stop producing, let the consumer catch up (bounded), then stop it
            producer.send_signal(signal.SIGTERM)
            producer.wait(30)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and (lag.total() or 0) > 0:
                time.sleep(0.5)
            live.update(tick())
    finally:
        for proc in (producer, consumer):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (producer, consumer):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if prometheus is not None:
            prometheus.stop()
        lag_final = lag.total()
        lag.close()

    produced = last.get("p:login_producer_events_delivered_total", 0)
    processed = last.get("c:login_consumer_events_processed_total", 0)
    dlq = last.get("c:login_consumer_events_dlq_total", 0)
    print("summary")
    print(f"  seconds:   {time.monotonic() - started:.1f}")
    print(f"produced: {produced:.0f}")
    print(f"processed: {processed:.0f}")
    print(f"dead-lettered: {dlq:.0f}")
    print(f"lag: {lag_final if lag_final is not None else '?'}")
    print(f"logs: {logs}")
    if prometheus is not None:
        print(f"prometheus: {prometheus.url} (stopped; data in {prometheus.workdir / 'data'})")
    if code == 0 and args.duration and processed <= 0:
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
