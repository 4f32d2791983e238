#!/usr/bin/env python3
"""`make bench-tracing`: what tracing costs, with tracing off, on at 1 % and on at 100 % sampling.

Pipeline (the default): for each mode, login-producer preloads a fresh 6-partition topic with the P
workload (harness.py's: 100,000 users, the full event format) with that mode's tracing settings,
exporting to a real Jaeger v2 (login_devtools/local_jaeger.py) the bench starts; its CPU seconds per million
events are measured (less a 1-event run's: start-up and shutdown are paid once per process). Then
login-consumer (the real CLI, all detectors, at-least-once) drains each topic in fresh processes with
the same mode's settings (harness.py's drain: new group and output topics,
rate from the output timestamps between 10 % and 90 %, CPU seconds per million events), the modes
interleaved run by run so that a change of the machine's load hits them alike, and each run starting
once Jaeger has taken in the previous one's spans; each figure is the median of the runs. Ratios are
against "off" (``OTEL_TRACES_EXPORTER=none``).

Modes: off; 1 % (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``, ``OTEL_TRACES_SAMPLER_ARG=0.01``: the
producer decides, the consumer follows); 100 % (ratio 1). At 100 % the SDK's batch span processor drops
what its queue cannot hold (``OTEL_BSP_MAX_QUEUE_SIZE``, 2048): the spans are made and paid for either way.

``--spans``: in process, no broker. First the per-event versus per-batch choice
(login_consumer/tracing.py): the user stage on 5,000-event batches without tracing (the code path before
tracing existed, and with the tracer unset), then with one span per sampled event and stage (what
the stages do) and with one span per batch linking the sampled events, at 1 % and 100 %. Then both stages
as the consumer runs them (user stage with every user detector, its repartition records read by the
network stage): tracing off; on with the 1 % sampler but no event sampled (every ``traceparent`` flagged
00: the unsampled path alone); 1 %; 100 %; and, measured beside them but no longer what the stages do, the
chain of three spans per stage they had before (``ThreeSpansPerStage``: receive, process, send) at 1 % and
100 %. CPU microseconds per event (the process's CPU time, the span processor's export thread included,
over the batch and the export flush, each batch started after a full collection), the median of the
repeats (the minimum beside it), the ways interleaved repeat by repeat, each with its own stages and
provider; ratios against the first row of each group, and the median of each repeat's own ratio (paired:
the same events, the same minute's load), the ways' order rotated repeat by repeat. ``--only <regex>``
runs a subset. Instructions instead of CPU time (a count the machine's load does not change):
``--untimed`` runs only the ``--only`` ways, ``--repeats`` batches after one warm-up batch, and writes
nothing; under ``valgrind --tool=callgrind``, (instructions at ``--repeats 3`` - at ``--repeats 1``) /
(2 x ``--batch``) is one way's count per event (docs/observability.md, "Cost").

Writes bench/results/tracing.{json,md} (``--out``) and prints the table. Exit 0 whatever the figures.

    python -m login_bench.tracing --bootstrap 127.0.0.1:9092 [--events N] [--runs N] [--modes off,1%]
    python -m login_bench.tracing --spans
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from login_bench import ROOT
from login_bench.harness import BIN, PARTITIONS, Bench, Kafka, Plan, _commit, say
from login_bench.stats import RunResult
from login_devtools.local_jaeger import Jaeger, find_binary, tracing_env
from login_devtools.service_env import service_env

MODES: dict[str, str | None] = {"off": None, "1%": "0.01", "100%": "1"}
Runner = tuple[Any, float | None, Any]  # --spans: (run a batch, the sampled share of its inputs, provider)


def mode_env(mode: str, jaeger: Jaeger) -> dict[str, str]:
    ratio = MODES[mode]
    if ratio is None:
        return {"OTEL_TRACES_EXPORTER": "none"}
    return {**tracing_env(jaeger.otlp_http, ratio), "OTEL_SERVICE_NAME": f"bench-{mode.rstrip('%')}"}


def _producer(bench: Bench, mode: str, jaeger: Jaeger, topic: str, events: int) -> float:
    """Run login-producer (traced as ``mode``) writing ``events`` to ``topic``; its CPU seconds."""
    argv = [
        str(BIN / "login-producer"),
        "--rate", "0", "--count", str(events), "--users", str(bench.plan.p_users), "--seed", "42",
        "--start-time", str(int(time.time()) - 10 * 86_400),
        "--topic", topic, "--bootstrap-servers", bench.bootstrap, "--metrics-port", "0",
    ]  # fmt: skip
    env = service_env({"LOG_LEVEL": "WARNING", "DURATION": "0", **mode_env(mode, jaeger)})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"bench: login-producer failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def preload(bench: Bench, mode: str, jaeger: Jaeger, events: int) -> float:
    """Fill a fresh topic for ``mode`` with login-producer (traced as ``mode``); its CPU seconds per
    million events beyond its start-up and shutdown (a 1-event run's CPU, subtracted: importing the SDK
    and flushing the exporter are paid once per process, not per event)."""
    topic = f"{bench.prefix}-{mode.rstrip('%')}-input"
    scratch = f"{bench.prefix}-{mode.rstrip('%')}-scratch"
    bench.kafka.create({topic: PARTITIONS, scratch: 1})
    fixed = _producer(bench, mode, jaeger, scratch, 1)
    cpu = _producer(bench, mode, jaeger, topic, events)
    bench.kafka.delete_matching(scratch)
    bench.inputs[mode] = topic
    bench.expected[mode] = bench.kafka.count([topic])
    return max(0.0, cpu - fixed) / max(1, bench.expected[mode] - 1) * 1e6


def settle(jaeger: Jaeger, limit: float = 120.0) -> None:
    """Wait until Jaeger has taken in what the last run exported (its CPU under 10 % over a second), so
    that its work never lands in the next run's measurement."""
    proc = psutil.Process(jaeger.process.pid)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.cpu_percent(interval=1.0) > 10.0:
        pass


def _median(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def pipeline(args: argparse.Namespace) -> dict[str, Any]:
    kafka = Kafka(args.bootstrap)
    # JAEGER_PORT / JAEGER_OTLP_PORT: ports away from the defaults on a shared machine (else free ones)
    jaeger = Jaeger.start(binary=find_binary(build=True), port=int(os.environ.get("JAEGER_PORT") or 0))
    plan = Plan({"P": args.events}, args.runs, {}, {}, 1, False, ("pipeline",), max_drain_seconds=args.cap)
    bench = Bench(kafka, plan)
    producer_cpu: dict[str, float] = {}
    modes = [m for m in MODES if m in args.modes]
    if "off" not in modes:
        raise SystemExit("bench: --modes must include off (the ratios' base)")
    runs: dict[str, list[RunResult]] = {m: [] for m in modes}
    started = time.monotonic()
    try:
        for mode in modes:
            producer_cpu[mode] = preload(bench, mode, jaeger, args.events)
            settle(jaeger)
            cpu = producer_cpu[mode]
            say(f"preloaded {mode}: {bench.expected[mode]:,} events, producer {cpu:.1f} cpu s/M")
        order = modes
        for i in range(args.runs):
            turn = i % len(order)
            for mode in order[turn:] + order[:turn]:  # each mode first, middle and last in turn
                say(f"run {i + 1}/{args.runs}: tracing {mode}")
                runs[mode].append(bench.drain("pipeline", mode, extra_env=mode_env(mode, jaeger)))
                settle(jaeger)
    finally:
        for mode in modes:
            if mode in bench.inputs:
                kafka.delete_matching(bench.inputs[mode])
        jaeger.stop()
        kafka.close()
    rows: dict[str, dict[str, Any]] = {}
    for mode, results in runs.items():
        rows[mode] = {
            "events_per_s": _median([r.events_per_s for r in results]),
            "consumer_cpu_s_per_million": _median([r.cpu_s_per_million for r in results]),
            "producer_cpu_s_per_million": producer_cpu.get(mode),
            "runs": [r.as_dict() for r in results],
        }
    base = rows["off"]
    for row in rows.values():
        for key in ("events_per_s", "consumer_cpu_s_per_million", "producer_cpu_s_per_million"):
            if row[key] and base[key]:
                row[f"{key}_vs_off"] = round(row[key] / base[key], 3)
    return {
        "kind": "pipeline",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "commit": _commit(), "loadavg": os.getloadavg()},
        "config": {"events": args.events, "runs": args.runs, "max_drain_seconds": args.cap},
        "wall_seconds": round(time.monotonic() - started),
        "modes": rows,
    }


def pipeline_table(doc: dict[str, Any]) -> str:
    lines = [
        "| tracing | consumer events/s | vs off | consumer CPU s/M | vs off | producer CPU s/M | vs off |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, row in doc["modes"].items():

        def cell(key: str, row: dict[str, Any] = row) -> str:
            value = row.get(key)
            return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"

        def ratio(key: str, row: dict[str, Any] = row) -> str:
            value = row.get(f"{key}_vs_off")
            return "-" if value is None else f"{value:.3f}"

        lines.append(
            f"| {mode} | {cell('events_per_s')} | {ratio('events_per_s')} "
            f"| {cell('consumer_cpu_s_per_million')} | {ratio('consumer_cpu_s_per_million')} "
            f"| {cell('producer_cpu_s_per_million')} | {ratio('producer_cpu_s_per_million')} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- per event or per batch


def spans(args: argparse.Namespace) -> dict[str, Any]:
    """µs per event of the user stage, by way of tracing (see the module doc)."""
    import random

    import orjson
    from confluent_kafka import Message
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

    from login_common.logs import configure_logging
    from login_common.settings import load_settings
    from login_common.tracing import (
        TRACEPARENT,
        context_headers,
        is_sampled,
        parent_context,
        read_context,
    )
    from login_consumer.config import ConsumerSettings
    from login_consumer.process import Processor, tune_gc
    from login_consumer.stages.user import UserStage
    from login_consumer.tracing import StageTracer, record_attributes
    from login_consumer.wiring import build_detectors, build_network_detector, build_stages

    class Nop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    def tracer(ratio: float) -> tuple[Any, Any]:
        provider = TracerProvider(sampler=ParentBasedTraceIdRatio(ratio))
        provider.add_span_processor(BatchSpanProcessor(Nop(), max_queue_size=1 << 20))
        return provider.get_tracer("bench"), provider

    now = int(time.time())
    rng = random.Random(7)
    load = os.getloadavg()

    def values(size: int) -> list[tuple[bytes, bytes, float]]:
        """One batch's events (value, trace id and span id, a draw for the sampled flag)."""
        out = []
        for n in range(size):
            doc: dict[str, Any] = {
                "user_id": f"u{rng.randrange(50_000)}",
                "ip": f"81.2.{n % 250}.{rng.randrange(250)}",
            }
            doc |= {"timestamp": now - rng.randrange(3600), "outcome": "failure" if n % 7 == 0 else "success"}
            ids = f"{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}".encode()
            out.append((orjson.dumps(doc), ids, rng.random()))
        return out

    def batch(events: list[tuple[bytes, bytes, float]], ratio: float | None) -> list[Message]:
        """The same events for every runner of a round, with the trace context of ``ratio``."""
        out = []
        for n, (value, ids, draw) in enumerate(events):
            headers: list[tuple[str, str | bytes | None]] = (
                []
                if ratio is None
                else [(TRACEPARENT, b"00-%s-%s" % (ids, b"01" if draw < ratio else b"00"))]
            )
            out.append(Message(topic="user-login", partition=n % 6, offset=n, value=value, headers=headers))
        return out

    settings = load_settings(ConsumerSettings, metrics_port=0)
    configure_logging("json", "WARNING", tracing=True)  # as the pipeline's drains run (LOG_LEVEL=WARNING)

    def per_batch(stage: UserStage, messages: list[Message], tr: Any) -> None:
        """The alternative: one span per batch, a link per sampled event, its context on their records."""
        result = stage._route(stage.processor.process(messages))
        links, sampled = [], []
        for (msg, *_), record in zip(result.batch.outputs, result.records, strict=True):
            parent, state = read_context(msg.headers())
            if parent is None or not is_sampled(parent):
                if parent is not None:
                    record[4].append((TRACEPARENT, parent))
                continue
            ctx = trace.get_current_span(parent_context(parent, state)).get_span_context()
            links.append(trace.Link(ctx, {"messaging.kafka.offset": msg.offset() or 0}))
            sampled.append(record)
        if links:
            span = tr.start_span("process user-login", links=links)
            headers = context_headers(span)
            for record in sampled:
                record[4].extend(headers)
            span.end()

    size = args.batch
    makers: dict[str, Any] = {}  # name -> a function that builds its Runner (only the ways that run)

    def stage(tr: Any = None) -> UserStage:
        made = UserStage(Processor.from_settings(settings), output_topic="out", repartition_topic="rep")
        made.partitions = 6
        if tr is not None:
            made.tracer = StageTracer(tr, group="g", dlq_topic="dlq")
        return made

    # each way its own stage (caches) and, traced, its own provider, flushed inside the timed window: the
    # export thread's work is part of the cost, and no way's backlog runs in another's window
    def unchanged() -> Runner:
        before = stage()
        return (lambda m: before._route(before.processor.process(m)), None, None)

    def per_event(ratio: float) -> Runner:
        tr, provider = tracer(ratio)
        return (stage(tr).process, ratio, provider)

    def linked(ratio: float) -> Runner:
        tr, provider = tracer(ratio)
        alt = stage()
        return (lambda m: per_batch(alt, m, tr), ratio, provider)

    makers["before tracing (processor + routing)"] = unchanged
    makers["tracing off (tracer unset)"] = lambda: (stage().process, 0.01, None)
    for ratio, label in ((0.01, "1%"), (1.0, "100%")):
        makers[f"per event, {label}"] = lambda r=ratio: per_event(r)
        makers[f"per batch with links, {label}"] = lambda r=ratio: linked(r)

    # both stages, as the consumer runs them without Kafka: the user stage (all user detectors) writes
    # repartition records, read back as messages by the network stage (credential_stuffing)
    class ThreeSpansPerStage(StageTracer):
        """Measured beside the stages' one span, not used by them: the chain they had before (issue 22's
        third pass), per sampled event and stage ``receive <topic>`` (CONSUMER, the messaging attributes,
        from the record's timestamp to the read), ``process <topic>`` (INTERNAL, the stage and its
        verdicts) and ``send <destination>`` (PRODUCER), whose context the produced record carries."""

        def _start(
            self, msg: Message, ctx: Any, stage: str, attributes: dict[str, Any], *, started_ns: int, to: str
        ) -> Any:
            topic = msg.topic() or ""
            kind, created_ms = msg.timestamp()
            created_ns = created_ms * 1_000_000
            start = created_ns if kind and 0 < created_ns <= started_ns else started_ns
            receive = self.tracer.start_span(
                f"receive {topic}",
                context=ctx,
                kind=trace.SpanKind.CONSUMER,
                start_time=start,
                attributes=record_attributes(msg, self.group, "receive"),
            )
            if not receive.is_recording():
                return receive
            receive.end(started_ns)
            return self.tracer.start_span(
                f"process {topic}",
                context=trace.set_span_in_context(receive),
                start_time=started_ns,
                attributes={"messaging.operation.type": "process", "login.stage": stage, **attributes},
            )

        def _carried(self, span: Any, destination: str, ended_ns: int) -> list[tuple[str, Any]]:
            send = self.tracer.start_span(
                f"send {destination}",
                context=trace.set_span_in_context(span),
                kind=trace.SpanKind.PRODUCER,
                start_time=ended_ns,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": destination,
                },
            )
            send.end()
            return context_headers(send)

    def pipeline_runner(tr: Any = None, way: type[StageTracer] = StageTracer) -> Any:
        full = load_settings(ConsumerSettings, metrics_port=0, state_changelog=False)
        processor = Processor.from_settings(full, build_detectors(full))
        network = build_network_detector(full)
        user, net = build_stages(full, processor, network)
        if net is None:
            raise SystemExit("bench: DETECTORS leaves out credential_stuffing: no network stage to measure")
        user.partitions, net.ordered = 6, False
        if tr is not None:
            user.tracer = net.tracer = way(tr, group="g", dlq_topic="dlq")
        stamp = (1, now * 1000)

        def run(messages: list[Message]) -> None:
            records = user.process(messages).records
            hop = [
                Message(
                    topic=r[0], partition=r[1], offset=i, key=r[2], value=r[3], headers=r[4], timestamp=stamp
                )
                for i, r in enumerate(records)
            ]
            net.process(hop, flush=True)

        return run

    def both(ratio: float, sampled: float, way: type[StageTracer] = StageTracer) -> Runner:
        tr, provider = tracer(ratio)
        return (pipeline_runner(tr, way), sampled, provider)

    makers["both stages: tracing off"] = lambda: (pipeline_runner(), 0.01, None)
    makers["both stages: 1% sampler, none sampled"] = lambda: both(0.01, 0.0)
    for sampled, label in ((0.01, "1%"), (1.0, "100%")):
        makers[f"both stages: per event, {label}"] = lambda r=sampled: both(r, r)
    for sampled, label in ((0.01, "1%"), (1.0, "100%")):
        makers[f"both stages: three spans per stage (previous), {label}"] = lambda r=sampled: both(
            r, r, ThreeSpansPerStage
        )
    kept = set(makers)
    if args.only:  # a subset, with the first row of each group it touches (the ratios' base)
        wanted = re.compile(args.only)
        kept = {name for name in makers if wanted.search(name)}
        for base in ("before tracing (processor + routing)", "both stages: tracing off"):
            if not args.untimed and any(name.startswith("both") == base.startswith("both") for name in kept):
                kept.add(base)
    runners: dict[str, Runner] = {name: make() for name, make in makers.items() if name in kept}
    timings: dict[str, list[float]] = {name: [] for name in runners}
    tune_gc()  # as login-consumer does
    for run, sampling, provider in runners.values():  # warm the caches of each stage
        run(batch(values(size), sampling))
        if provider is not None:
            provider.force_flush()
    if args.untimed:  # for an instruction counter (see the module doc): the batches, nothing else
        for _ in range(args.repeats):
            events = values(size)
            for run, sampling, provider in runners.values():
                run(batch(events, sampling))
                if provider is not None:
                    provider.force_flush()
        return {"kind": "untimed", "ways": list(runners)}
    names = list(runners)
    for repeat in range(args.repeats):  # interleaved: a change of load hits every way alike
        events = values(size)
        turn = repeat % len(names)  # and each way first, middle and last in turn (no place's bias)
        for name in names[turn:] + names[:turn]:
            run, sampling, provider = runners[name]
            messages = batch(events, sampling)
            # each batch from the same collector state: the cyclic collector runs when allocations
            # pass a count (50,000 after tune_gc), whoever allocates; without this one way's garbage was
            # collected in the next way's time (one collection a batch, 7-10 µs/event, always charged to
            # the traced ways, never to "off", the first of its group)
            gc.collect()
            started = time.process_time()  # every thread's CPU: the export thread's work counts
            run(messages)
            if provider is not None:
                provider.force_flush()
            timings[name].append((time.process_time() - started) / size * 1e6)
    # CPU time, not wall time: the other processes of a shared machine take the cores, not this CPU time
    # (they still slow it through the caches: the median of the interleaved repeats, the minimum beside it)
    results = {name: round(statistics.median(values), 2) for name, values in timings.items()}
    minima = {name: round(min(values), 2) for name, values in timings.items()}
    # paired: each repeat's figure over its group's first in the same repeat (the same events, the same
    # minute's load), the median of those ratios; steadier than a ratio of medians on a loaded machine
    paired: dict[str, float] = {}
    for name, figures in timings.items():
        firsts = timings[_group_base(name)]
        if firsts:
            paired[name] = round(statistics.median(f / b for f, b in zip(figures, firsts, strict=True)), 4)
    for name, value in results.items():
        say(f"{name}: {value:.2f} CPU µs/event (min {minima[name]:.2f}, paired {paired.get(name, 0):.3f})")
    return {
        "kind": "spans",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "commit": _commit(), "loadavg": os.getloadavg()},
        "config": {"batch": size, "repeats": args.repeats, "loadavg_start": load, "measure": "cpu"},
        "cpu_us_per_event": results,
        "cpu_us_per_event_min": minima,
        "paired_ratio_median": paired,
    }


def _group_base(name: str) -> str:
    """The first row of ``name``'s group: the base of its ratios."""
    return "both stages: tracing off" if name.startswith("both") else "before tracing (processor + routing)"


def spans_table(doc: dict[str, Any]) -> str:
    minima = doc["cpu_us_per_event_min"]
    values = doc["cpu_us_per_event"]
    paired = doc.get("paired_ratio_median", {})
    lines = [
        f"| {doc['config']['batch']:,}-event batches | CPU µs/event (median) | vs first | min "
        "| paired ratio (median) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, value in values.items():
        first = values.get(_group_base(name))
        ratio = f"{value / first:.3f}" if first else "-"
        pair = f"{paired[name]:.3f}" if name in paired else "-"
        lines.append(f"| {name} | {value:.2f} | {ratio} | {minima[name]:.2f} | {pair} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default=os.environ.get("BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--events", type=int, default=100_000, help="events per mode (default 100,000)")
    parser.add_argument("--runs", type=int, default=3, help="drains per mode (default 3)")
    parser.add_argument("--cap", type=float, default=120.0, help="seconds a drain may take (then partial)")
    parser.add_argument(
        "--modes",
        type=lambda text: [m.strip() for m in text.split(",") if m.strip()],
        default=list(MODES),
        help="pipeline: the modes to run, comma-separated (default off,1%%,100%%)",
    )
    parser.add_argument("--spans", action="store_true", help="per event vs per batch, in process")
    parser.add_argument("--batch", type=int, default=5000, help="--spans: events per batch")
    parser.add_argument("--repeats", type=int, default=40, help="--spans: batches per figure")
    parser.add_argument("--only", help="--spans: only the ways whose name matches this regular expression")
    parser.add_argument(
        "--untimed",
        action="store_true",
        help="--spans: run the --only ways (no base added) for --repeats batches; no timing, no files",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    doc = spans(args) if args.spans else pipeline(args)
    if doc["kind"] == "untimed":
        return 0
    table = spans_table(doc) if args.spans else pipeline_table(doc)
    name = "tracing-spans" if args.spans else "tracing"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
