"""``login-consumer``: run the pipeline (default), or ``replay-dlq`` to re-feed dead letters."""

from __future__ import annotations

import argparse
import sys

import structlog
from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry

from login_common.errors import ConfigError, LoginStreamError
from login_common.http import MetricsServer
from login_common.kafka import broker_reachable, stop_event
from login_common.logs import configure_logging
from login_common.settings import env_help, load_settings
from login_common.tracing import Tracing, TracingError, exporters_from_env, setup_tracing
from login_consumer import __version__
from login_consumer.app import ConsumerApp
from login_consumer.config import ConsumerSettings
from login_consumer.errors import ConsumerError, EnrichmentError
from login_consumer.metrics import ConsumerMetrics
from login_consumer.operations.replay import replay_dlq
from login_consumer.process import tune_gc
from login_consumer.validate import ERROR_TYPES
from login_consumer.wiring import trace_stages

log = structlog.get_logger("login_consumer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="login-consumer",
        description="Validate, enrich, score and route login events from Kafka.",
        epilog=env_help(ConsumerSettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="consume, process and route events until SIGTERM/SIGINT (the default)")
    replay = commands.add_parser(
        "replay-dlq",
        help="re-feed dead letters to the input topic after a fix, and say how many moved",
        description=(
            "Re-feed messages of DLQ_TOPIC (up to its end at start) to INPUT_TOPIC with their original key, "
            "value and headers (dlq-* headers dropped, dlq-replayed-from added). The DLQ is left as is."
        ),
    )
    replay.add_argument(
        "--error-type",
        action="append",
        default=[],
        metavar="TYPE",
        help=f"only letters of this error type (repeatable; default: all). Types: {', '.join(ERROR_TYPES)}",
    )
    replay.add_argument("--to-topic", help="target topic (default: INPUT_TOPIC)")
    replay.add_argument("--limit", type=int, default=0, help="move at most N messages (0 = no limit)")
    replay.add_argument("--timeout", type=float, default=60.0, help="give up after S seconds (default 60)")
    replay.add_argument("--dry-run", action="store_true", help="count what would move; send nothing")
    return parser


def run(settings: ConsumerSettings, tracing: Tracing | None = None) -> int:
    registry = CollectorRegistry()
    try:
        app = ConsumerApp(
            settings,
            ConsumerMetrics.create(
                registry, settings.processing_guarantee, stuffing_window=settings.stuffing_window_seconds
            ),
        )
    except EnrichmentError as exc:
        print(f"login-consumer: GEOIP_DATA_FILE={settings.geoip_data_file!r}: {exc}", file=sys.stderr)
        return 2
    except KafkaException as exc:  # the client refuses its configuration (a CA file it cannot read, ...)
        print(f"login-consumer: Kafka client settings cannot work: {exc.args[0]}", file=sys.stderr)
        return 2

    if tracing is not None:
        trace_stages(settings, app.parts, tracing)

    def healthz() -> tuple[bool, str]:
        ok, detail = app.alive()
        if ok and not broker_reachable(settings.kafka_common(), 2.0):
            return False, "broker unreachable"
        return ok, detail

    server = MetricsServer(registry, settings.metrics_port, healthz=healthz, ready=app.ready).start()
    stop = stop_event()
    tune_gc()
    log.info(
        "consumer.start",
        topic=settings.input_topic,
        group=settings.group_id,
        guarantee=settings.processing_guarantee,
        metrics_port=server.port,
        version=__version__,
        config=settings.safe_dump(),
        tracing=tracing.service if tracing is not None else "off",
    )
    try:
        app.run(stop)
    except ConsumerError as exc:  # a setting that can never work (refusals are waited out, never raised)
        print(f"login-consumer: {exc}", file=sys.stderr)
        return 2
    finally:
        server.stop()
    log.info("consumer.stop")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(ConsumerSettings)
    except ConfigError as exc:
        print(f"login-consumer: {exc}", file=sys.stderr)
        return 2
    try:
        traced = bool(exporters_from_env())
        configure_logging(settings.log_format, settings.log_level, tracing=traced)
        tracing = setup_tracing("login-consumer", __version__)
    except TracingError as exc:
        print(f"login-consumer: {exc}", file=sys.stderr)
        return 2
    try:
        return _command(args, settings, tracing)
    finally:
        if tracing is not None:
            tracing.shutdown()


def _command(args: argparse.Namespace, settings: ConsumerSettings, tracing: Tracing | None) -> int:
    if args.command == "replay-dlq":
        unknown = sorted(set(args.error_type) - set(ERROR_TYPES))
        if unknown:
            print(f"login-consumer: unknown --error-type {', '.join(unknown)}", file=sys.stderr)
            return 2
        try:
            report = replay_dlq(
                settings,
                error_types=args.error_type,
                target=args.to_topic,
                dry_run=args.dry_run,
                limit=args.limit,
                timeout=args.timeout,
                tracing=tracing,
            )
        except LoginStreamError as exc:
            print(f"login-consumer: {exc}", file=sys.stderr)
            return 1
        print(report.summary())
        return 1 if report.failed else 0
    return run(settings, tracing)


if __name__ == "__main__":
    sys.exit(main())
