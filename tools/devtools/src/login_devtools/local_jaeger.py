#!/usr/bin/env python3
"""The local trace backend: Jaeger v2 (OTLP in, traces kept in memory, query API on a local port).

Why Jaeger and not the OpenTelemetry Collector writing to a file: the question a responder asks is "show
me the trace of this login", by its trace id. Jaeger answers it (``/api/traces/<id>``: every span of the
trace with its parentage, attributes, status and events), and so do the tests, through the same API; a
collector's file would need a reader of our own for that. Jaeger v2 is itself a Collector distribution,
so the OTLP endpoint the services export to is the same either way.

Jaeger is built from its Go module (tools/jaeger/build.sh, pinned in tools/jaeger/versions, cached per
user in ~/.cache/login-stream/jaeger-<version>/, niced; ``make jaeger``). The module carries no compiled
UI (its assets come from the jaeger-ui repository's npm build, which no package registry serves): the
query port answers the API and shows Jaeger's placeholder page, unless JAEGER_UI_ASSETS names a directory
holding a built jaeger-ui (Jaeger's ``assets_path``). ``trace`` below prints a trace as a tree.

    python -m login_devtools.local_jaeger serve [--port 16686]    # run in the foreground (make jaeger-run)
    python -m login_devtools.local_jaeger trace TRACE_ID [--url]  # a trace as a tree (make trace ID=...)

JAEGER_BIN overrides the binary. Ports: the query API/UI on ``--port`` (JAEGER_PORT, default 16686),
OTLP/HTTP on 4318 and OTLP/gRPC on 4317 when free, else any free port (printed; all on 127.0.0.1);
JAEGER_OTLP_PORT=<p> (or ``Jaeger.start(otlp_port=p)``) asks for OTLP/HTTP on p and OTLP/gRPC on p+1
instead, so that runs beside other people's Jaegers on a shared machine keep away from the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from login_devtools import ROOT
from login_devtools.daemons import Daemon, free_port, get_json, spawn

BUILD = ROOT / "tools" / "jaeger" / "build.sh"


class JaegerError(RuntimeError):
    """Jaeger cannot be found, started or asked."""


def find_binary(*, build: bool = False) -> str:
    """JAEGER_BIN, else the per-user build (built first when ``build``; else an error naming the step)."""
    named = os.environ.get("JAEGER_BIN")
    if named:
        if not (Path(named).is_file() and os.access(named, os.X_OK)):
            raise JaegerError(f"JAEGER_BIN={named} is not an executable file")
        return named
    args = ["bash", str(BUILD)] if build else ["bash", str(BUILD), "--print-path"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    path = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not path:
        raise JaegerError(f"building Jaeger failed: {done.stderr.strip()[-1500:]}")
    if not os.access(path, os.X_OK):
        raise JaegerError(
            f"Jaeger is not built yet ({path}): `make jaeger` builds it (minutes, once per user)"
        )
    return path


def build_config(
    *, query_port: int, otlp_http_port: int, otlp_grpc_port: int, health_port: int
) -> dict[str, Any]:
    """Jaeger v2's configuration: OTLP receivers, in-memory storage, the query extension; its own
    metrics off (no fixed port that two runs would fight over)."""
    query: dict[str, Any] = {
        "storage": {"traces": "memstore"},
        "http": {"endpoint": f"127.0.0.1:{query_port}"},
        "grpc": {"endpoint": f"127.0.0.1:{free_port(0)}"},
    }
    assets = os.environ.get("JAEGER_UI_ASSETS")
    if assets:
        query["ui"] = {"assets_path": assets}
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
        },
        "extensions": {
            "healthcheckv2": {"use_v2": True, "http": {"endpoint": f"127.0.0.1:{health_port}"}},
            "jaeger_query": query,
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100_000}}}},
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{otlp_grpc_port}"},
                    "http": {"endpoint": f"127.0.0.1:{otlp_http_port}"},
                }
            }
        },
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


@dataclass
class Jaeger(Daemon):
    """A running Jaeger child process (``url``: its query API and UI) and a small client for that API."""

    name: ClassVar[str] = "jaeger"
    error: ClassVar[type[RuntimeError]] = JaegerError

    otlp_http: str = ""  # OTEL_EXPORTER_OTLP_ENDPOINT for http/protobuf
    otlp_grpc: str = ""

    @classmethod
    def start(
        cls,
        *,
        workdir: Path | None = None,
        port: int = 0,
        binary: str | None = None,
        ready_timeout: float = 60.0,
        detach: bool = False,
        otlp_port: int | None = None,
    ) -> Jaeger:
        exe = binary or find_binary()
        workdir = workdir or Path(tempfile.mkdtemp(prefix="jaeger-"))
        workdir.mkdir(parents=True, exist_ok=True)
        if otlp_port is None:
            otlp_port = int(os.environ.get("JAEGER_OTLP_PORT") or 0)
        http, grpc = (otlp_port, otlp_port + 1) if otlp_port else (4318, 4317)
        ports = {"query_port": free_port(port), "otlp_http_port": free_port(http)}
        ports["otlp_grpc_port"] = free_port(grpc)
        ports["health_port"] = free_port(0)
        config = workdir / "jaeger.yaml"
        config.write_text(yaml.safe_dump(build_config(**ports), sort_keys=False), encoding="utf-8")
        log = workdir / "jaeger.log"
        process = spawn([exe, f"--config={config}"], log, detach=detach)
        jaeger = cls(
            process,
            f"http://127.0.0.1:{ports['query_port']}",
            workdir,
            log,
            otlp_http=f"http://127.0.0.1:{ports['otlp_http_port']}",
            otlp_grpc=f"http://127.0.0.1:{ports['otlp_grpc_port']}",
        )
        jaeger.wait_ready(ready_timeout)
        return jaeger

    def ready(self) -> bool:
        try:
            api_get(self.url, "/api/services", timeout=2)
        except JaegerError:
            return False
        return True

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        return get_trace(self.url, trace_id)


def api_get(base_url: str, path: str, timeout: float = 5.0) -> Any:
    """GET ``path`` of Jaeger's query API at ``base_url``; the decoded JSON or JaegerError."""
    return get_json(f"{base_url}{path}", JaegerError, timeout)


def get_trace(base_url: str, trace_id: str) -> dict[str, Any] | None:
    """One trace (Jaeger's JSON: spans with references, tags, logs; processes), None when not found."""
    try:
        data = api_get(base_url, f"/api/traces/{trace_id}").get("data") or []
    except JaegerError as exc:
        if "HTTP 404" in str(exc):
            return None
        raise
    return data[0] if data else None


def tracing_env(otlp_http: str, ratio: str = "1") -> dict[str, str]:
    """The OTEL_* settings that make a service export its spans to this Jaeger (OTLP/HTTP)."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_http,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": ratio,
        "OTEL_BSP_SCHEDULE_DELAY": "1000",
    }


def recent_flagged(base_url: str, limit: int = 10) -> list[tuple[str, str]]:
    """(trace id, summary) of the latest traces in which a stage rated the login high risk."""
    query = urllib.parse.urlencode(
        {"service": "login-consumer", "tags": json.dumps({"login.risk.level": "high"}), "limit": limit}
    )
    out = []
    for trace in api_get(base_url, f"/api/traces?{query}").get("data") or []:
        reasons: set[str] = set()
        for span in trace["spans"]:
            found = tags(span)
            if isinstance(found.get("login.reasons"), list):
                reasons.update(found["login.reasons"])
            if found.get("login.network.detection") not in (None, "none"):
                reasons.add(str(found["login.network.detection"]))
        out.append(
            (trace["traceID"], f"{len(trace['spans'])} spans, reasons: {', '.join(sorted(reasons)) or '-'}")
        )
    return out


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def render(trace: dict[str, Any]) -> str:
    """A trace as an indented tree: service, operation, duration, the attributes a responder reads."""
    spans = {s["spanID"]: s for s in trace["spans"]}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans.values():
        parent = next((r["spanID"] for r in span.get("references", []) if r["spanID"] in spans), None)
        children.setdefault(parent, []).append(span)
    processes = trace.get("processes", {})
    keep: tuple[str, ...] = (
        "messaging.destination.name",
        "messaging.destination.partition.id",
        "messaging.kafka.offset",
    )
    keep += ("login.queued_ms", "login.output.topic")  # a stage's wait in its topic, where it went on to
    keep += ("login.risk.score", "login.risk.level", "login.reasons", "login.network.detection", "error.type")
    labels = {"login.output.topic": "to"}
    lines = [f"trace {trace['traceID']} ({len(spans)} spans)"]

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["startTime"]):
            service = processes.get(span["processID"], {}).get("serviceName", "?")
            found = tags(span)
            shown = " ".join(
                f"{labels.get(k) or k.rsplit('.', 1)[-1]}={found[k]}" for k in keep if k in found
            )
            error = " ERROR" if found.get("error") or found.get("otel.status_code") == "ERROR" else ""
            took = f"{span['duration'] / 1000:.1f}ms"
            lines.append(f"{'  ' * depth}{service}: {span['operationName']} {took}{error} {shown}")
            walk(span["spanID"], depth + 1)

    walk(None, 1)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run Jaeger in the foreground until Ctrl-C")
    serve.add_argument("--port", type=int, default=int(os.environ.get("JAEGER_PORT", "16686")))
    show = commands.add_parser("trace", help="print one trace as a tree")
    show.add_argument("trace_id")
    show.add_argument("--url", default=os.environ.get("JAEGER_URL", "http://127.0.0.1:16686"))
    args = parser.parse_args(argv)
    try:
        if args.command == "trace":
            found = get_trace(args.url, args.trace_id)
            if found is None:
                print(
                    f"trace {args.trace_id}: not in Jaeger at {args.url} (not sampled, or not exported yet)"
                )
                return 1
            print(render(found))
            return 0
        jaeger = Jaeger.start(port=args.port, binary=find_binary(build=True))
    except JaegerError as exc:
        print(f"jaeger: {exc}", file=sys.stderr)
        return 1
    print(
        f"Jaeger query API/UI {jaeger.url}; OTLP/HTTP {jaeger.otlp_http}, OTLP/gRPC {jaeger.otlp_grpc}",
        flush=True,
    )
    return jaeger.serve()


if __name__ == "__main__":
    sys.exit(main())
