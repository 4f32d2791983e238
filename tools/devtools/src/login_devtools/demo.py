#!/usr/bin/env python3
"""``make demo``: the whole pipeline on the local broker, in the foreground, with the live view.

Starts login-consumer, login-producer, an Alertmanager with the routing tree and a Prometheus scraping
both (local_pipeline.py; the alert rules loaded, alerts sent to the Alertmanager; without a
prometheus binary the demo runs on and says so; --no-prometheus skips both),
prints links into Prometheus' graph UI for throughput, lag and risk, and shows the live view of
live_view.py once a second. On Ctrl-C (which reaches the demo only: the services run in sessions
of their own) or after --duration seconds it stops the producer, waits until every event of the run
is out, processed or dead-lettered (bounded: --drain-timeout; the network stage can still be reading
when the input is), reads the figures once more and prints a summary whose ``processed: N`` line
scripts can read. ``produced`` is what this run appended to the input topic, so ``processed`` +
``dead-lettered`` = ``produced`` (+ any backlog the group had).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition
from rich.console import Console, Group
from rich.live import Live

from login_common.kafka import ensure_topics
from login_devtools import ROOT, local_pipeline
from login_devtools.daemons import StopRequest
from login_devtools.live_view import HighRiskTail, View, render

DEMO_DIR = ROOT / ".cache" / "demo"


class Offsets:
    """End offsets of the input topic and the consumer group's committed position on it."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.topic = topic
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})

    def _partitions(self) -> list[TopicPartition]:
        md = self._consumer.list_topics(self.topic, timeout=5)
        return [TopicPartition(self.topic, p) for p in md.topics[self.topic].partitions]

    def _watermarks(self, tp: TopicPartition, attempts: int = 20) -> tuple[int, int]:
        """(low, high) of a partition; a topic created a moment ago may have no leader yet: retried."""
        for attempt in range(attempts):
            try:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=5)
                return int(low), int(high)
            except KafkaException:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5)
        raise AssertionError  # unreachable

    def end(self) -> int:
        """Messages ever written to the topic (sum of the high watermarks)."""
        return sum(self._watermarks(tp)[1] for tp in self._partitions())

    def lag(self) -> int | None:
        """Messages the group has not committed yet; None when the broker does not answer."""
        try:
            lag = 0
            for tp in self._consumer.committed(self._partitions(), timeout=5):
                low, high = self._watermarks(tp, attempts=1)
                lag += high - (tp.offset if tp.offset >= 0 else low)
            return lag
        except Exception:  # noqa: BLE001 - reported as unknown
            return None

    def close(self) -> None:
        self._consumer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = Ctrl-C)")
    parser.add_argument("--rate", type=float, default=float(os.environ.get("DEMO_RATE", "500")))
    parser.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    args = parser.parse_args()

    bootstrap, topics, group = local_pipeline.settings()
    running = local_pipeline.Pipeline.load(local_pipeline.RUN_DIR)
    if running and running.group == group and any(p.running() for p in running.procs):
        print(
            f"`make run` has a pipeline running in consumer group {group}: `make watch` shows it, "
            "`make stop` ends it (a demo beside it would share its partitions)",
            file=sys.stderr,
        )
        return 1
    ensure_topics(bootstrap, {topics["input"]: 6, topics["output"]: 6, topics["dlq"]: 1})
    offsets = Offsets(bootstrap, topics["input"], group)
    start_end, backlog = offsets.end(), offsets.lag() or 0

    # The services run in sessions of their own: a terminal's Ctrl-C goes to its whole foreground process
    # group, and the consumer must keep running until it has drained what the producer wrote. The demo
    # stops them itself (below); what a killed demo left behind is stopped by the next one.
    # From here on, Ctrl-C and SIGTERM only ask the demo to stop, so that it always stops them.
    stop = StopRequest.install()
    previous = local_pipeline.Pipeline.load(DEMO_DIR)
    if previous is not None:
        local_pipeline.terminate(previous.procs)
    pipeline, (consumer, producer), prometheus = local_pipeline.start(
        DEMO_DIR, rate=args.rate, detach=True, with_prometheus=not args.no_prometheus
    )
    if prometheus is not None:
        local_pipeline.print_links(prometheus.url)
    cproc, pproc = pipeline.procs[0], pipeline.procs[1]
    view = View(pproc.url, cproc.url, HighRiskTail(bootstrap, topics["output"]), pipeline.alertmanager_url)
    console = Console()
    started = time.monotonic()
    title = f"login-stream demo · {bootstrap}"
    footer = (
        f"Prometheus {prometheus.url} · graph links printed above (scroll up)"
        if prometheus
        else "Prometheus: not running"
    )

    def frame(note: str) -> Group:
        return render(view.tick(), f"{title} · {time.monotonic() - started:4.0f}s · {note}", footer)

    code = 0
    problem = local_pipeline.wait_ready(pipeline)  # --duration counts from here
    if problem:
        console.print(f"[red]{problem}[/red]")
        stop.requested, code = True, 1
    started = time.monotonic()
    final = view.tick()
    try:
        with Live(
            frame("starting"), console=console, refresh_per_second=2, transient=not console.is_terminal
        ) as live:
            while not stop.requested:
                if args.duration and time.monotonic() - started >= args.duration:
                    break
                if consumer.poll() is not None or producer.poll() is not None:
                    console.print(f"[red]a service exited early; see {DEMO_DIR}/*.log[/red]")
                    code = 1
                    break
                time.sleep(1)
                live.update(frame("Ctrl-C stops"))
            # drain: stop producing, let the consumer catch up (bounded), then read the figures
            producer.send_signal(signal.SIGTERM)
            try:
                producer.wait(30)
            except subprocess.TimeoutExpired:
                producer.kill()
            deadline = time.monotonic() + args.drain_timeout

            def drained() -> bool:
                """The input read, and every event of this run out (processed or dead-lettered): the
                network stage may still hold or be reading what the user stage wrote."""
                if (offsets.lag() or 0) > 0:
                    return False
                seen = view.tick()
                return seen.processed + seen.dead_lettered >= offsets.end() - start_end

            while time.monotonic() < deadline and not drained() and consumer.poll() is None:
                live.update(frame("draining"))
                time.sleep(0.5)
            final = view.tick()
            # the producer is gone: what this run produced is what it appended to the input topic
            final.produced = offsets.end() - start_end
            live.update(render(final, f"{title} · drained", footer))
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
        local_pipeline.terminate([p for p in pipeline.procs if p.name in ("alertmanager", "jaeger")])
        lag_final = offsets.lag()
        offsets.close()
        view.close()

    if not console.is_terminal:  # the live frames were transient: leave the last one in the output
        console.print(render(final, f"{title} · drained", footer))
    print("summary (read after the consumer drained)")
    print(f"  seconds:   {time.monotonic() - started:.1f}")
    if backlog:
        print(f"backlog: {backlog} (left in group {group} by an earlier run, consumed too)")
    print(f"produced: {final.produced:.0f}")
    print(f"processed: {final.processed:.0f}")
    print(f"dead-lettered: {final.dead_lettered:.0f}")
    print(f"lag: {lag_final if lag_final is not None else '?'}")
    print("risk: " + ", ".join(f"{level} {n:.0f}" for level, n in final.risk.items()))
    print("detections (last minute): " + ", ".join(f"{d} {n:.0f}" for d, n in final.detections.items()))
    print(f"logs: {DEMO_DIR}")
    if prometheus is not None:
        print(f"prometheus: {prometheus.url} (stopped; data in {prometheus.workdir / 'data'})")
    if code == 0 and args.duration and final.processed <= 0:
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
