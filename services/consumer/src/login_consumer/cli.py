"""``login-consumer``: run the pipeline."""

from __future__ import annotations

import argparse
import sys

import structlog
from prometheus_client import CollectorRegistry

from login_common.errors import ConfigError
from login_common.http import MetricsServer
from login_common.kafka import broker_reachable, stop_event
from login_common.logs import configure_logging
from login_common.settings import env_help, load_settings
from login_consumer import __version__
from login_consumer.app import ConsumerApp
from login_consumer.config import ConsumerSettings
from login_consumer.metrics import ConsumerMetrics

log = structlog.get_logger("login_consumer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="login-consumer",
        description="Validate, enrich, score and route login events from Kafka.",
        epilog=env_help(ConsumerSettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    try:
        settings = load_settings(ConsumerSettings)
    except ConfigError as exc:
        print(f"login-consumer: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    registry = CollectorRegistry()
    app = ConsumerApp(settings, ConsumerMetrics.create(registry))
    server = MetricsServer(
        registry,
        settings.metrics_port,
        healthz=lambda: (
            (True, "ok")
            if broker_reachable(settings.bootstrap_servers, 2.0)
            else (False, "broker unreachable")
        ),
        ready=lambda: (True, "assigned") if app.assigned.is_set() else (False, "not in group yet"),
    ).start()
    stop = stop_event()
    log.info("consumer.start", topic=settings.input_topic, group=settings.group_id, version=__version__)
    try:
        app.run(stop)
    finally:
        server.stop()
    log.info("consumer.stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
