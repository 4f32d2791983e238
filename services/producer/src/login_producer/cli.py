"""``login-producer``: send simulated logins to Kafka or to a JSON-lines file."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from login_common.errors import ConfigError
from login_common.http import MetricsServer
from login_common.kafka import broker_reachable, stop_event
from login_common.logs import configure_logging
from login_common.settings import env_help, env_name, load_settings
from login_common.tracing import Tracing, TracingError, exporters_from_env, setup_tracing
from login_producer import __version__
from login_producer.config import RATIO_FIELDS, RULE_FIELDS, ProducerSettings
from login_producer.errors import ProducerError
from login_producer.metrics import ProducerMetrics
from login_producer.simulate import Simulation
from login_producer.sink import FileSink, KafkaLogs, KafkaSink, Sink
from login_producer.tracing import EventTracer

log = structlog.get_logger("login_producer")


def _flag(parser: argparse._ActionsContainer, field: str, kind: type, text: str) -> None:
    parser.add_argument(
        "--" + field.replace("_", "-"),
        dest=field,
        type=kind,
        metavar="X",
        help=f"{text} [{env_name(ProducerSettings, field)}]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="login-producer",
        description="Simulate user logins (with labelled attacks) and write them to Kafka, or to a "
        "JSON-lines file with --out. Labels travel in x-sim-* headers (Kafka) or a _label field (file).",
        epilog=env_help(ProducerSettings) + "\n\nCommand-line flags override the environment.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--rate", type=float, help="events per second (0 = simulated clock, flat out) [RATE]")
    parser.add_argument("--count", type=int, help="stop after N events [COUNT]")
    parser.add_argument("--duration", type=float, help="stop after S wall-clock seconds [DURATION]")
    parser.add_argument("--seed", type=int, help="random seed [SEED]")
    parser.add_argument("--users", type=int, help="population size, 1 to 1000000 [USERS]")
    parser.add_argument("--start-time", dest="start_time", type=int, help="epoch seconds [START_TIME]")
    parser.add_argument(
        "--logins-per-user-day", dest="logins_per_user_day", type=float, help="[LOGINS_PER_USER_DAY]"
    )
    parser.add_argument("--office-share", dest="office_share", type=float, help="[OFFICE_SHARE]")
    parser.add_argument(
        "--format", dest="output_format", choices=["full", "fetch"], help="event format [OUTPUT_FORMAT]"
    )
    parser.add_argument("--out", help="write JSON lines to FILE ('-' = stdout) instead of Kafka")
    parser.add_argument("--topic", dest="input_topic", help="target topic [INPUT_TOPIC]")
    parser.add_argument("--bootstrap-servers", dest="bootstrap_servers", help="[BOOTSTRAP_SERVERS]")
    parser.add_argument("--metrics-port", dest="metrics_port", type=int, help="[METRICS_PORT]")
    mix = parser.add_argument_group("scenario mix (share of events, 0 disables)")
    for field in RATIO_FIELDS:
        _flag(mix, field, float, ProducerSettings.model_fields[field].description or "")
    rules = parser.add_argument_group("truth rules (x-sim-truth; docs/producer.md)")
    for field in RULE_FIELDS:
        info = ProducerSettings.model_fields[field]
        kind = int if info.annotation in (int,) or field == "truth_stuffing_prefix" else float
        _flag(rules, field, kind, info.description or "")
    return parser


def _open_sink(
    settings: ProducerSettings,
    out: str | None,
    metrics: ProducerMetrics,
    stop: threading.Event,
    tracing: Tracing | None = None,
) -> tuple[Sink, Any]:
    fetch = settings.output_format == "fetch"
    if out is None:
        config = {**settings.kafka_common(), "linger.ms": settings.linger_ms}
        sink = KafkaSink(
            settings.input_topic,
            config,
            metrics,
            fetch_format=fetch,
            stop=stop,
            log=log.bind(topic=settings.input_topic),
            password_file=settings.sasl_password_file,
            tracer=EventTracer(tracing, settings.input_topic) if tracing is not None else None,
        )
        return sink, None
    stream = sys.stdout if out == "-" else open(out, "w", encoding="utf-8")  # noqa: SIM115
    batch = 512 if settings.rate <= 0 else 1  # paced output reaches the reader line by line
    return FileSink(stream, metrics, fetch_format=fetch, batch=batch), stream


def run(
    settings: ProducerSettings,
    out: str | None = None,
    registry: CollectorRegistry | None = None,
    tracing: Tracing | None = None,
) -> int:
    registry = registry or CollectorRegistry()
    metrics = ProducerMetrics.create(registry)
    stop = stop_event()
    try:
        sim = Simulation(
            seed=settings.seed,
            users=settings.users,
            start_time=settings.start_time or None,
            rate=settings.rate,
            mix=settings.scenario_mix(),
            rules=settings.truth_rules(),
            logins_per_user_day=settings.logins_per_user_day,
            office_share=settings.office_share,
        )
    except ProducerError as exc:
        log.error("producer.simulation_failed", error=str(exc))
        return 2
    server = None
    kafka_sinks: list[KafkaSink] = []  # the one Kafka sink, once made (the port is bound before)
    if out is None:

        def ready() -> tuple[bool, str]:
            if not kafka_sinks:
                return False, "starting"
            refused = kafka_sinks[0].ready()  # an access refusal says more than "unreachable"
            if refused is not None:
                return refused
            if broker_reachable({**settings.kafka_common(), "logger": KafkaLogs(log)}, 2.0):
                return True, "broker reachable"
            return False, "broker unreachable"

        try:  # first: a port that cannot be bound stops the producer before any Kafka client exists
            server = MetricsServer(
                registry, settings.metrics_port, healthz=lambda: (True, "ok"), ready=ready
            ).start()
        except OSError as exc:  # the port is taken or not ours to bind: say so in one line
            log.error(
                "producer.metrics_port_unavailable",
                error=f"METRICS_PORT={settings.metrics_port}: cannot listen ({exc.strerror or exc})",
            )
            return 2
    try:
        sink, stream = _open_sink(settings, out, metrics, stop, tracing)
    except ProducerError as exc:  # settings that can never work: one line, exit 2
        log.error("producer.settings_rejected", error=str(exc))
        if server is not None:
            server.stop()
        return 2
    if isinstance(sink, KafkaSink):
        kafka_sinks.append(sink)
    bound = log.bind(topic=settings.input_topic, out=out, seed=settings.seed, users=settings.users)
    started = time.monotonic()
    sim_start = float(sim.start_time or 0.0)
    count, duration, rate = settings.count, settings.duration, settings.rate
    sent = 0
    undelivered = 0
    bound.info(
        "producer.start",
        rate=rate,
        count=count,
        duration=duration,
        version=__version__,
        config=settings.safe_dump(),
        tracing=tracing.service if tracing is not None else "off",
    )
    try:
        for event in sim.events():
            if stop.is_set() or (count and sent >= count):
                break
            if duration and time.monotonic() - started >= duration:
                break
            if rate > 0:
                ahead = (event.time - sim_start) - (time.monotonic() - started)
                if ahead > 0 and stop.wait(ahead):
                    break
            if not sink.wait_while_refused():  # refused: hold the simulation, retry, recover
                break
            sink.send(event)
            sent += 1
    finally:
        undelivered = sink.close()
        if stream is not None and stream is not sys.stdout:
            stream.close()
        if server is not None:
            server.stop()
    seconds = time.monotonic() - started
    bound.info(
        "producer.stop",
        sent=sent,
        undelivered=undelivered,
        seconds=round(seconds, 3),
        events_per_second=round(sent / seconds) if seconds > 0 else None,
        signalled=stop.is_set(),
    )
    return 0 if undelivered == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {
        k: v for k, v in vars(args).items() if v is not None and k in ProducerSettings.model_fields
    }
    try:
        settings = load_settings(ProducerSettings, **overrides)
    except ConfigError as exc:  # one line: what is wrong, for a log collector too
        head, *rest = str(exc).splitlines()
        print(f"login-producer: {head} {'; '.join(line.strip() for line in rest)}".rstrip(), file=sys.stderr)
        return 2
    try:
        configure_logging(settings.log_format, settings.log_level, tracing=bool(exporters_from_env()))
        tracing = setup_tracing("login-producer", __version__)
    except TracingError as exc:
        print(f"login-producer: {exc}", file=sys.stderr)
        return 2
    try:
        return run(settings, out=args.out, tracing=tracing)
    finally:
        if tracing is not None:
            tracing.shutdown()


if __name__ == "__main__":
    sys.exit(main())
