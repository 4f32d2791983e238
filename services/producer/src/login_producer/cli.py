"""``login-producer``: send simulated logins to Kafka or to a JSON-lines file."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from login_common.errors import ConfigError
from login_common.http import MetricsServer
from login_common.kafka import broker_reachable, stop_event
from login_common.logs import configure_logging
from login_common.settings import env_help, load_settings
from login_producer import __version__
from login_producer.config import ProducerSettings
from login_producer.metrics import ProducerMetrics
from login_producer.simulate import Simulation
from login_producer.sink import FileSink, KafkaSink, Sink

log = structlog.get_logger("login_producer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="login-producer",
        description="Simulate user logins and write them to Kafka (or to a JSON-lines file with --out).",
        epilog=env_help(ProducerSettings) + "\n\nCommand-line flags override the environment.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--rate", type=float, help="events per second (0 = as fast as possible) [RATE]")
    parser.add_argument("--count", type=int, help="stop after N events [COUNT]")
    parser.add_argument("--duration", type=float, help="stop after S seconds [DURATION]")
    parser.add_argument("--seed", type=int, help="random seed [SEED]")
    parser.add_argument("--users", type=int, help="population size [USERS]")
    parser.add_argument(
        "--format", dest="output_format", choices=["full", "fetch"], help="event format [OUTPUT_FORMAT]"
    )
    parser.add_argument("--out", help="write JSON lines to FILE ('-' = stdout) instead of Kafka")
    parser.add_argument("--topic", dest="input_topic", help="target topic [INPUT_TOPIC]")
    parser.add_argument("--bootstrap-servers", dest="bootstrap_servers", help="[BOOTSTRAP_SERVERS]")
    parser.add_argument("--metrics-port", dest="metrics_port", type=int, help="[METRICS_PORT]")
    return parser


def run(settings: ProducerSettings, out: str | None = None, registry: CollectorRegistry | None = None) -> int:
    registry = registry or CollectorRegistry()
    metrics = ProducerMetrics.create(registry)
    stop = stop_event()
    sink: Sink
    stream = None
    if out is not None:
        stream = sys.stdout if out == "-" else open(out, "w", encoding="utf-8")  # noqa: SIM115
        sink = FileSink(stream, metrics, fetch_format=settings.output_format == "fetch")
    else:
        sink = KafkaSink(
            settings.input_topic,
            {**settings.kafka_common(), "linger.ms": settings.linger_ms},
            metrics,
            fetch_format=settings.output_format == "fetch",
        )
    server = None
    if out is None:
        server = MetricsServer(
            registry,
            settings.metrics_port,
            healthz=lambda: (True, "ok"),
            ready=lambda: (
                (True, "broker reachable")
                if broker_reachable(settings.bootstrap_servers, 2.0)
                else (False, "broker unreachable")
            ),
        ).start()
    sim = Simulation(seed=settings.seed, users=settings.users)
    started = time.monotonic()
    sent = 0
    log.info("producer.start", topic=settings.input_topic, rate=settings.rate, out=out, version=__version__)
    try:
        for event in sim.events():
            if stop.is_set():
                break
            if settings.count and sent >= settings.count:
                break
            elapsed = time.monotonic() - started
            if settings.duration and elapsed >= settings.duration:
                break
            if settings.rate > 0:
                ahead = sent / settings.rate - elapsed
                if ahead > 0:
                    stop.wait(ahead)
            sink.send(event)
            sent += 1
    finally:
        undelivered = sink.close()
        if stream is not None and stream is not sys.stdout:
            stream.close()
        if server is not None:
            server.stop()
    log.info(
        "producer.stop", sent=sent, undelivered=undelivered, seconds=round(time.monotonic() - started, 2)
    )
    return 0 if undelivered == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {
        k: v for k, v in vars(args).items() if v is not None and k in ProducerSettings.model_fields
    }
    try:
        settings = load_settings(ProducerSettings, **overrides)
    except ConfigError as exc:
        print(f"login-producer: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    return run(settings, out=args.out)


if __name__ == "__main__":
    sys.exit(main())
