#!/usr/bin/env python3
"""The local pipeline without a cluster: ``run``, ``stop``, ``health``, ``logs``, ``monitor``.

``run`` makes sure a broker answers (local_kafka.py), creates the topics, starts a Jaeger
(local_jaeger.py: the trace backend, OTLP in; both services export their spans to it),
login-consumer, login-producer, an Alertmanager with the routing tree (local_alertmanager.py) and
a Prometheus scraping both services (alert rules loaded, alerts sent to that Alertmanager) in the
background, waits until both services report /ready, prints where everything is, and returns. The
processes, their ports and logs are recorded in .cache/run/pipeline.json (RUN_DIR overrides the
folder), which the other commands read:
``make stop`` ends them (and the broker, if ``run`` started it), ``make health`` checks each part,
``make logs`` follows the logs, ``make monitor`` prints links into Prometheus' graph UI, the alerts that
fire and where Alertmanager routed them, ``make watch`` (live_view.py) shows the stream,
``make trace`` lists the traces of recent high-risk logins and ``make trace ID=<trace id>`` prints one.

Settings (environment): BOOTSTRAP_SERVERS, INPUT_TOPIC, OUTPUT_TOPIC, DLQ_TOPIC, GROUP_ID as for the
services; CONSUMER_PORT (8000), PRODUCER_PORT (8001) and PROMETHEUS_PORT (9090) are tried first, another
free port is taken when one is busy; ALERTMANAGER_PORT (9093) likewise, and the receivers' settings of
local_alertmanager.py (ALERT_WEBHOOK_URL, SLACK_API_URL_FILE, PAGERDUTY_ROUTING_KEY_FILE, ...).
Tracing: JAEGER_PORT (16686) likewise; TRACING=0 starts no Jaeger and leaves tracing off; the sampling
ratio is OTEL_TRACES_SAMPLER_ARG (default 1: every login's trace, so any flagged one can be opened).
The services get the environment without make's command-line variables and with the run's own settings
set explicitly (service_env.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from login_devtools import ROOT, local_kafka, service_env
from login_devtools.daemons import free_port
from login_devtools.local_alertmanager import (
    AlertingSettings,
    Alertmanager,
    AlertmanagerError,
    build_config,
    describe,
    routed_alerts,
)
from login_devtools.local_jaeger import Jaeger, JaegerError, recent_flagged, tracing_env
from login_devtools.local_jaeger import main as jaeger_main
from login_devtools.local_prometheus import CONSUMER_JOB, PRODUCER_JOB, Prometheus, PrometheusError

BIN = Path(sys.executable).parent
RUN_DIR = Path(os.environ.get("RUN_DIR", ROOT / ".cache" / "run"))

# Ready-made Prometheus graph queries: (title, PromQL), shown by `make demo`, `make run`, `make monitor`.
GRAPHS: dict[str, list[str]] = {
    "throughput": [
        "sum(rate(login_producer_events_delivered_total[1m]))",
        "sum(rate(login_consumer_events_processed_total[1m]))",
        "sum(rate(login_consumer_events_dlq_total[1m]))",
    ],
    "lag": ["sum(login_consumer_lag_messages)"],
    "risk": [
        "sum by (level) (rate(login_consumer_risk_level_total[1m]))",
        "sum by (detector) (increase(login_consumer_detections_total[1m]))",
    ],
}


def graph_link(base_url: str, exprs: list[str], minutes: int = 15) -> str:
    """A link into Prometheus' own graph page with one panel per expression (``g0.expr``, ``g1.expr`` ...),
    as its UI decodes them (tests/unit/test_graph_links.py names the source)."""
    params: dict[str, str] = {}
    for i, expr in enumerate(exprs):
        params |= {f"g{i}.expr": expr, f"g{i}.tab": "0", f"g{i}.range_input": f"{minutes}m"}
    return f"{base_url}/graph?{urllib.parse.urlencode(params)}"


def graph_links(base_url: str) -> dict[str, str]:
    return {title: graph_link(base_url, exprs) for title, exprs in GRAPHS.items()}


def get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URLs we built
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(getattr(exc, "reason", exc))


def alive(pid: int, name: str) -> bool:
    """True when ``pid`` runs and is the process we started (its command line names ``name``)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    out = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return name in out.stdout and "<defunct>" not in out.stdout


@dataclass
class Proc:
    name: str  # login-consumer, login-producer, prometheus, alertmanager, jaeger
    pid: int
    port: int
    log: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def running(self) -> bool:
        return alive(self.pid, self.name)


@dataclass
class Pipeline:
    """What ``run`` started; persisted as JSON in the run folder."""

    bootstrap: str
    topics: dict[str, str]
    group: str
    procs: list[Proc] = field(default_factory=list)
    broker_started: bool = False
    started_at: float = field(default_factory=time.time)

    def proc(self, name: str) -> Proc | None:
        return next((p for p in self.procs if p.name == name), None)

    @property
    def prometheus_url(self) -> str | None:
        prom = self.proc("prometheus")
        return prom.url if prom else None

    @property
    def alertmanager_url(self) -> str | None:
        am = self.proc("alertmanager")
        return am.url if am else None

    @property
    def jaeger_url(self) -> str | None:
        jaeger = self.proc("jaeger")
        return jaeger.url if jaeger else None

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "pipeline.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Pipeline | None:
        try:
            raw = json.loads((directory / "pipeline.json").read_text())
        except (OSError, ValueError):
            return None
        raw["procs"] = [Proc(**p) for p in raw.get("procs", [])]
        return cls(**raw)


def settings() -> tuple[str, dict[str, str], str]:
    bootstrap = os.environ.get("BOOTSTRAP_SERVERS") or local_kafka.local_bootstrap()
    topics = {
        "input": os.environ.get("INPUT_TOPIC", "user-login"),
        "output": os.environ.get("OUTPUT_TOPIC", "processed-logins"),
        "dlq": os.environ.get("DLQ_TOPIC", "user-login-dlq"),
    }
    return bootstrap, topics, os.environ.get("GROUP_ID", "login-consumer")


def spawn(
    name: str, port: int, args: list[str], env: dict[str, str], log: Path, *, detach: bool
) -> subprocess.Popen[bytes]:
    exe = shutil.which(name, path=str(BIN)) or name
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [exe, *args],
            env={**env, "METRICS_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=detach,
        )


def start(
    directory: Path,
    *,
    rate: float,
    detach: bool,
    with_prometheus: bool = True,
    scrape_interval: str = "2s",
) -> tuple[Pipeline, list[subprocess.Popen[bytes]], Prometheus | None]:
    """Broker (if none answers), topics, consumer, producer, Alertmanager and Prometheus. Returns the
    record, the two service processes (consumer first) and Prometheus (None when not wanted or not
    installed: said). Alertmanager runs with Prometheus (not installed or badly configured: said, and
    Prometheus runs without it)."""
    from login_common.kafka import ensure_topics

    bootstrap, topics, group = settings()
    broker_started = False
    if not local_kafka.answers(bootstrap):
        os.environ.pop("BOOTSTRAP_SERVERS", None)  # let local_kafka start its own on KAFKA_PORT
        bootstrap = local_kafka.up()
        broker_started = True
    ensure_topics(bootstrap, {topics["input"]: 6, topics["output"]: 6, topics["dlq"]: 1})
    # What this launcher decides for the run is set explicitly; make's command-line variables (DURATION of
    # `make demo DURATION=30`) never reach the services (service_env.py says why). The producer
    # runs until the launcher stops it: DURATION and COUNT are 0 whatever the environment holds.
    owned = {
        "BOOTSTRAP_SERVERS": bootstrap,
        "INPUT_TOPIC": topics["input"],
        "OUTPUT_TOPIC": topics["output"],
        "DLQ_TOPIC": topics["dlq"],
        "GROUP_ID": group,
        "LOG_FORMAT": "json",
        "RATE": f"{rate:g}",
        "DURATION": "0",
        "COUNT": "0",
    }
    env = service_env.service_env(owned)
    if note := service_env.note(owned):
        print(note, flush=True)
    jaeger = start_jaeger(directory, detach=detach) if os.environ.get("TRACING", "1") != "0" else None
    if jaeger is not None:
        env.update(tracing_env(jaeger.otlp_http, os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1")))
    every = "0.0.0.0"  # noqa: S104 - probing the ports the services bind on every interface
    cport = free_port(int(os.environ.get("CONSUMER_PORT", "8000")), host=every)
    pport = free_port(int(os.environ.get("PRODUCER_PORT", "8001")), host=every)
    if pport == cport:
        pport = free_port(0)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in ("login-consumer.log", "login-producer.log"):
        (directory / stale).unlink(missing_ok=True)
    consumer = spawn("login-consumer", cport, [], env, directory / "login-consumer.log", detach=detach)
    producer = spawn(
        "login-producer", pport, ["--rate", str(rate)], env, directory / "login-producer.log", detach=detach
    )
    pipeline = Pipeline(bootstrap, topics, group, broker_started=broker_started)
    pipeline.procs = [
        Proc("login-consumer", consumer.pid, cport, str(directory / "login-consumer.log")),
        Proc("login-producer", producer.pid, pport, str(directory / "login-producer.log")),
    ]
    if jaeger is not None:
        port = int(jaeger.url.rsplit(":", 1)[1])
        pipeline.procs.append(Proc("jaeger", jaeger.process.pid, port, str(jaeger.log)))
    prometheus: Prometheus | None = None
    if with_prometheus:
        alertmanagers = []
        shutil.rmtree(directory / "alertmanager" / "data", ignore_errors=True)  # no stale alerts
        try:
            am = Alertmanager.start(
                build_config(AlertingSettings.from_env()),
                workdir=directory / "alertmanager",
                port=int(os.environ.get("ALERTMANAGER_PORT", "9093")),
                detach=detach,
            )
            pipeline.procs.append(
                Proc("alertmanager", am.process.pid, int(am.url.rsplit(":", 1)[1]), str(am.log))
            )
            alertmanagers.append(am.address)
        except AlertmanagerError as exc:
            print(f"alertmanager: not started ({exc})", flush=True)
        shutil.rmtree(directory / "prometheus" / "data", ignore_errors=True)  # no stale series
        try:
            prometheus = Prometheus.start(
                {CONSUMER_JOB: [f"127.0.0.1:{cport}"], PRODUCER_JOB: [f"127.0.0.1:{pport}"]},
                workdir=directory / "prometheus",
                port=int(os.environ.get("PROMETHEUS_PORT", "9090")),
                scrape_interval=scrape_interval,
                labels={CONSUMER_JOB: {"consumer_group": group}},
                alertmanagers=alertmanagers,
                detach=detach,
            )
            port = int(prometheus.url.rsplit(":", 1)[1])
            pipeline.procs.append(Proc("prometheus", prometheus.process.pid, port, str(prometheus.log)))
        except PrometheusError as exc:
            print(f"prometheus: not started ({exc})", flush=True)
    pipeline.save(directory)
    return pipeline, [consumer, producer], prometheus


def start_jaeger(directory: Path, *, detach: bool) -> Jaeger | None:
    """The trace backend (None, said, when it is not built or does not start: tracing stays off)."""
    try:
        return Jaeger.start(
            workdir=directory / "jaeger", port=int(os.environ.get("JAEGER_PORT", "16686")), detach=detach
        )
    except JaegerError as exc:
        print(f"jaeger: not started, tracing off ({exc})", flush=True)
        return None


def wait_ready(pipeline: Pipeline, timeout: float = 90.0) -> str:
    """'' once both services answer /ready; else what is wrong (a process exited, or the time ran out)."""
    deadline = time.monotonic() + timeout
    pending = [p for p in pipeline.procs if p.name.startswith("login-")]
    while pending:
        for proc in list(pending):
            if not proc.running():
                return (
                    f"{proc.name} exited during start-up; its log ({proc.log}):\n{tail(Path(proc.log), 15)}"
                )
            if get(f"{proc.url}/ready", timeout=10)[0] == 200:
                pending.remove(proc)
        if pending and time.monotonic() > deadline:
            return f"not ready within {timeout:.0f}s: {', '.join(p.name for p in pending)}"
        if pending:
            time.sleep(0.5)
    return wait_scraped(pipeline, deadline)


def wait_scraped(pipeline: Pipeline, deadline: float) -> str:
    """'' once Prometheus is ready and has scraped every target up, so that `make health` right after
    `make run` reports every part ok; else what is still missing when ``deadline`` passes."""
    proms = [p for p in pipeline.procs if p.name == "prometheus"]
    for proc in proms:
        while True:
            if not proc.running():
                return f"prometheus exited during start-up; its log ({proc.log}):\n{tail(Path(proc.log), 15)}"
            targets = prometheus_targets(proc.url) if get(f"{proc.url}/-/ready")[0] == 200 else []
            if targets and all(t == "up" for t in targets):
                break
            if time.monotonic() > deadline:
                up = sum(1 for t in targets if t == "up")
                return f"prometheus has not scraped every target up in time (up {up}/{len(targets)})"
            time.sleep(0.5)
    return ""


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def terminate(procs: list[Proc], timeout: float = 20.0) -> list[str]:
    """SIGTERM each running process (producer first), SIGKILL after ``timeout``; returns what was stopped."""
    order = {"login-producer": 0, "login-consumer": 1, "prometheus": 2, "alertmanager": 3, "jaeger": 4}
    stopped = []
    for proc in sorted(procs, key=lambda p: order.get(p.name, 3)):
        if not proc.running():
            continue
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.running():
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGKILL)
        stopped.append(f"{proc.name} (pid {proc.pid})")
    return stopped


# --- commands ---------------------------------------------------------------------------------------


def cmd_run(directory: Path, rate: float) -> int:
    existing = Pipeline.load(directory)
    if existing and any(p.running() for p in existing.procs):
        print(f"a local pipeline already runs (started from {directory}): `make watch`, `make stop`")
        return 0
    pipeline, _procs, _prom = start(directory, rate=rate, detach=True)
    problem = wait_ready(pipeline)
    if problem:
        print(f"make run: {problem}", file=sys.stderr)
        terminate(pipeline.procs)
        (directory / "pipeline.json").unlink(missing_ok=True)
        return 1
    print(f"local pipeline running (broker {pipeline.bootstrap}, {rate:g} events/s):")
    for proc in pipeline.procs:
        print(f"  {proc.name:<15} pid {proc.pid:<7} {proc.url}  log {proc.log}")
    if pipeline.prometheus_url:
        print_links(pipeline.prometheus_url)
    if pipeline.alertmanager_url:
        print(f"Alertmanager {pipeline.alertmanager_url} (routing: monitoring/alertmanager/alertmanager.yml)")
    if pipeline.jaeger_url:
        print(f"Jaeger {pipeline.jaeger_url} (API /api/traces/<trace id>; `make trace` lists flagged logins)")
    print("next: `make watch` (live view), `make health`, `make logs`, `make monitor`, `make stop`")
    return 0


def print_links(url: str) -> None:
    print(f"Prometheus {url} (alerts: {url}/alerts); graphs:")
    for title, link in graph_links(url).items():
        print(f"  {title:<10} {link}")


def cmd_stop(directory: Path) -> int:
    pipeline = Pipeline.load(directory)
    if pipeline is None:
        print("no local pipeline recorded (nothing to stop)")
        return 0
    stopped = terminate(pipeline.procs)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    if pipeline.broker_started:
        local_kafka.down()
    (directory / "pipeline.json").unlink()
    return 0


def cmd_health(directory: Path) -> int:
    pipeline = Pipeline.load(directory)
    if pipeline is None:
        print("no local pipeline: `make run` starts one", file=sys.stderr)
        return 1
    rows: list[tuple[str, bool, str]] = []
    broker_ok = local_kafka.answers(pipeline.bootstrap)
    rows.append((f"kafka {pipeline.bootstrap}", broker_ok, "answers" if broker_ok else "does not answer"))
    for proc in pipeline.procs:
        label = f"{proc.name} pid {proc.pid} :{proc.port}"
        if not proc.running():
            rows.append((label, False, f"not running (log {proc.log})"))
            continue
        if proc.name == "prometheus":
            status, _ = get(f"{proc.url}/-/ready")
            targets = prometheus_targets(proc.url)
            up = sum(1 for t in targets if t == "up")
            ok = status == 200 and bool(targets) and up == len(targets)
            rows.append((label, ok, f"ready {status == 200}, targets up {up}/{len(targets)}"))
        elif proc.name == "alertmanager":
            status, _ = get(f"{proc.url}/-/ready")
            rows.append((label, status == 200, f"/-/ready {status or 'no answer'}"))
        elif proc.name == "jaeger":
            status, _ = get(f"{proc.url}/api/services")
            rows.append((label, status == 200, f"/api/services {status or 'no answer'}"))
        else:
            status, body = get(f"{proc.url}/ready")
            rows.append((label, status == 200, f"/ready {status or 'no answer'}: {body.strip()[:60]}"))
    for label, ok, detail in rows:
        print(f"{'ok  ' if ok else 'FAIL'} {label:<38} {detail}")
    return 0 if all(ok for _, ok, _ in rows) else 1


def prometheus_targets(url: str) -> list[str]:
    status, body = get(f"{url}/api/v1/targets?state=active")
    if status != 200:
        return []
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return [str(t["health"]) for t in json.loads(body)["data"]["activeTargets"]]
    return []


def log_files(pipeline: Pipeline) -> dict[str, Path]:
    files = {p.name: Path(p.log) for p in pipeline.procs}
    if pipeline.bootstrap == local_kafka.local_bootstrap() and local_kafka.log_file().exists():
        files["kafka"] = local_kafka.log_file()
    return files


def follow(files: dict[str, Path], lines: int, *, keep_following: bool) -> Iterator[str]:
    """The last ``lines`` of each file, prefixed with its name; then, if asked, what gets appended."""
    width = max(len(n) for n in files)
    offsets: dict[str, int] = {}
    for name, path in files.items():
        for line in tail(path, lines).splitlines():
            yield f"{name:<{width}} | {line}"
        offsets[name] = path.stat().st_size if path.exists() else 0
    while keep_following:
        for name, path in files.items():
            size = path.stat().st_size if path.exists() else 0
            if size < offsets[name]:
                offsets[name] = 0  # truncated or replaced
            if size > offsets[name]:
                with open(path, "rb") as fh:
                    fh.seek(offsets[name])
                    chunk = fh.read(size - offsets[name])
                cut = chunk.rfind(b"\n") + 1  # whole lines only; the rest comes next round
                offsets[name] += cut
                for line in chunk[:cut].decode(errors="replace").splitlines():
                    yield f"{name:<{width}} | {line}"
        time.sleep(0.5)


def cmd_logs(directory: Path, lines: int, keep_following: bool) -> int:
    pipeline = Pipeline.load(directory)
    if pipeline is None:
        print("no local pipeline: `make run` starts one", file=sys.stderr)
        return 1
    with contextlib.suppress(KeyboardInterrupt):
        for line in follow(log_files(pipeline), lines, keep_following=keep_following):
            print(line, flush=True)
    return 0


def cmd_monitor(directory: Path) -> int:
    pipeline = Pipeline.load(directory)
    url = pipeline.prometheus_url if pipeline else None
    if pipeline is None or url is None:
        print("no local pipeline with Prometheus: `make run` starts one", file=sys.stderr)
        return 1
    print_links(url)
    status, body = get(f"{url}/api/v1/alerts")
    alerts = json.loads(body)["data"]["alerts"] if status == 200 else []
    firing = [a for a in alerts if a.get("state") == "firing"]
    pending = [a for a in alerts if a.get("state") == "pending"]
    print(f"alerts: {len(firing)} firing, {len(pending)} pending")
    for alert in firing + pending:
        labels = alert.get("labels", {})
        print(f"  {alert['state']:<8} {labels.get('alertname', '?')} ({labels.get('severity', '-')})")
    am_url = pipeline.alertmanager_url
    if am_url is None:
        print("Alertmanager: not running (`make run` starts it when it is installed: `make setup`)")
        return 0
    try:
        routed = routed_alerts(am_url)
    except AlertmanagerError as exc:
        print(f"Alertmanager {am_url}: {exc}")
        return 1
    print(f"Alertmanager {am_url}: {len(routed)} alert(s), routed to")
    for item in routed:
        print(f"  {describe(item)}")
    return 0


def cmd_trace(directory: Path, trace_id: str) -> int:
    """One trace as a tree, or (no id) the trace ids of the latest high-risk logins."""
    pipeline = Pipeline.load(directory)
    url = pipeline.jaeger_url if pipeline else None
    if url is None:
        print("no local pipeline with Jaeger: `make run` starts one", file=sys.stderr)
        return 1
    if trace_id:
        return jaeger_main(["trace", trace_id, "--url", url])
    try:
        flagged = recent_flagged(url)
    except JaegerError as exc:
        print(f"Jaeger {url}: {exc}", file=sys.stderr)
        return 1
    print(f"Jaeger {url}: {len(flagged)} recent high-risk login(s); `make trace ID=<trace id>` shows one")
    for trace_id_, summary in flagged:
        print(f"  {trace_id_}  {summary}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the pipeline in the background")
    run.add_argument("--rate", type=float, default=200.0, help="events per second of the producer")
    sub.add_parser("stop", help="stop what run started")
    sub.add_parser("health", help="check every part; exit 1 if one is down")
    logs = sub.add_parser("logs", help="the logs of every part")
    logs.add_argument("--lines", type=int, default=20)
    logs.add_argument("--no-follow", action="store_true")
    sub.add_parser("monitor", help="Prometheus links and alerts")
    trace = sub.add_parser("trace", help="a trace from Jaeger (no id: the latest high-risk logins)")
    trace.add_argument("trace_id", nargs="?", default="")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(RUN_DIR, args.rate)
        if args.command == "stop":
            return cmd_stop(RUN_DIR)
        if args.command == "health":
            return cmd_health(RUN_DIR)
        if args.command == "logs":
            return cmd_logs(RUN_DIR, args.lines, not args.no_follow)
        if args.command == "trace":
            return cmd_trace(RUN_DIR, args.trace_id)
        return cmd_monitor(RUN_DIR)
    except local_kafka.KafkaSetupError as exc:
        print(f"local_pipeline: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
