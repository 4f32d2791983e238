#!/usr/bin/env python3
"""A local Prometheus scraping login-consumer and login-producer, with the alert rules loaded.

Used by ``make demo`` (demo.py), ``make prometheus`` and the real-Prometheus test
(tests/observability). The binary is ``PROMETHEUS_BIN`` if set, else ``prometheus`` on PATH, else
/usr/bin/prometheus (Debian's package). Scrape jobs are named ``login-consumer`` and ``login-producer``,
as on Kubernetes (docs/observability.md). The consumer's targets carry the target label
``consumer_group`` (its GROUP_ID), as the chart's ServiceMonitor sets it: the alert rules group and
inhibit by it. Firing alerts go to the Alertmanagers named (local_alertmanager.py).

    login-prometheus --consumer 127.0.0.1:8000 --producer 127.0.0.1:8001
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from login_devtools import ROOT
from login_devtools.daemons import Daemon, free_port, spawn

RULES = ROOT / "monitoring" / "rules" / "login-stream.rules.yaml"
CONSUMER_JOB = "login-consumer"
PRODUCER_JOB = "login-producer"
KAFKA_JOB = "kafka"
# The labels the Kafka dashboards (dashboards/strimzi/) filter on. On Kubernetes the PodMonitor of
# k8s/monitoring/podmonitors.yaml derives them from Strimzi's pod labels (prometheus-operator adds
# `namespace`); here the local broker's scrape job carries them, with values of its own.
LOCAL_KAFKA_LABELS = {
    "namespace": "local",
    "strimzi_io_cluster": "local",
    "strimzi_io_kind": "Kafka",
    "strimzi_io_name": "local-kafka",
    "kubernetes_pod_name": "local-broker-0",
}
# A broker's page is large (a summary per request type): on a busy 2-core machine it takes about 1 s.
KAFKA_SCRAPE = {"scrape_interval": "2s", "scrape_timeout": "2s"}


class PrometheusError(RuntimeError):
    """Prometheus could not be found, started, or answered an API call with an error."""


def find_binary() -> str:
    named = os.environ.get("PROMETHEUS_BIN")
    if named:
        if not (Path(named).is_file() and os.access(named, os.X_OK)):
            raise PrometheusError(f"PROMETHEUS_BIN={named} is not an executable file")
        return named
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if not found:
        raise PrometheusError(
            "no prometheus binary: install Debian's `prometheus` package or set PROMETHEUS_BIN"
        )
    return found


def config_yaml(
    jobs: Mapping[str, Iterable[str]],
    rules: Iterable[Path],
    scrape_interval: str = "5s",
    labels: Mapping[str, Mapping[str, str]] | None = None,
    settings: Mapping[str, Mapping[str, str]] | None = None,
    *,
    alertmanagers: Iterable[str] = (),
) -> str:
    """Prometheus configuration (JSON is valid YAML, so no YAML library is needed); ``labels`` adds
    target labels to a job's targets, ``settings`` scrape settings (e.g. scrape_timeout) to a job,
    ``alertmanagers`` (host:port) where alerts are sent (API v2)."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "rule_files": [str(p) for p in rules],
        "scrape_configs": [
            {
                "job_name": job,
                **(settings or {}).get(job, {}),
                "static_configs": [{"targets": list(targets), "labels": dict((labels or {}).get(job, {}))}],
            }
            for job, targets in jobs.items()
        ],
    }
    targets = list(alertmanagers)
    if targets:
        config["alerting"] = {
            "alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": targets}]}]
        }
    return json.dumps(config, indent=2) + "\n"


@dataclass
class Prometheus(Daemon):
    """A running Prometheus child process and a tiny client for its HTTP API."""

    name: ClassVar[str] = "prometheus"
    error: ClassVar[type[RuntimeError]] = PrometheusError

    @classmethod
    def start(
        cls,
        jobs: Mapping[str, Iterable[str]],
        *,
        workdir: Path | None = None,
        port: int = 0,
        scrape_interval: str = "5s",
        rules: Iterable[Path] = (RULES,),
        binary: str | None = None,
        ready_timeout: float = 30.0,
        labels: Mapping[str, Mapping[str, str]] | None = None,
        settings: Mapping[str, Mapping[str, str]] | None = None,
        alertmanagers: Iterable[str] = (),
        detach: bool = False,
    ) -> Prometheus:
        """Start Prometheus and wait until it is ready; ``detach`` puts it in a session of its own, so it
        outlives the caller (``make run``)."""
        exe = binary or find_binary()
        workdir = workdir or Path(tempfile.mkdtemp(prefix="prometheus-"))
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(
            config_yaml(jobs, rules, scrape_interval, labels, settings, alertmanagers=alertmanagers),
            encoding="utf-8",
        )
        port = free_port(port)
        log = workdir / "prometheus.log"
        process = spawn(
            [
                exe,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1d",
                "--web.enable-lifecycle",
            ],
            log,
            detach=detach,
        )
        prom = cls(process, f"http://127.0.0.1:{port}", workdir, log)
        prom.wait_ready(ready_timeout)
        return prom

    def api(self, path: str, **params: str | float) -> Any:
        """GET /api/v1/<path>; returns ``data`` or raises PrometheusError with Prometheus' message."""
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:  # noqa: S310
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType', '?')}: {body.get('error', body)}")
        return body["data"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--consumer", action="append", default=[], help="host:port of a consumer (repeatable)"
    )
    parser.add_argument(
        "--producer", action="append", default=[], help="host:port of a producer (repeatable)"
    )
    parser.add_argument(
        "--kafka",
        action="append",
        default=[],
        help="host:port of a broker's Strimzi Metrics Reporter (repeatable; the Kafka dashboards)",
    )
    parser.add_argument(
        "--alertmanager", action="append", default=[], help="host:port of an Alertmanager (repeatable)"
    )
    parser.add_argument(
        "--consumer-group",
        default=os.environ.get("GROUP_ID", "login-consumer"),
        help="the consumer targets' consumer_group label (default: GROUP_ID, else login-consumer)",
    )
    parser.add_argument("--port", type=int, default=9090, help="listen port (another free one if taken)")
    parser.add_argument("--scrape-interval", default="5s")
    parser.add_argument("--dir", type=Path, default=ROOT / ".cache" / "prometheus", help="config and data")
    args = parser.parse_args(argv)
    jobs = {
        CONSUMER_JOB: args.consumer or ["127.0.0.1:8000"],
        PRODUCER_JOB: args.producer or ["127.0.0.1:8001"],
    }
    if args.kafka:
        jobs[KAFKA_JOB] = args.kafka
    try:
        prom = Prometheus.start(
            jobs,
            workdir=args.dir,
            port=args.port,
            scrape_interval=args.scrape_interval,
            labels={KAFKA_JOB: LOCAL_KAFKA_LABELS, CONSUMER_JOB: {"consumer_group": args.consumer_group}},
            settings={KAFKA_JOB: KAFKA_SCRAPE},
            alertmanagers=[a for a in args.alertmanager if a],
        )
    except PrometheusError as exc:
        print(f"local_prometheus: {exc}", file=sys.stderr)
        return 1
    print(f"prometheus: {prom.url}  (scraping {jobs}; rules {RULES.relative_to(ROOT)}; log {prom.log})")
    print("Ctrl-C stops it.")
    return prom.serve()


if __name__ == "__main__":
    sys.exit(main())
