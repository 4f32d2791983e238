"""Alerts that reach a person, end to end with real processes: producer and consumer on the real broker,
a real Prometheus with the rule file, a real Alertmanager with the routing tree
(monitoring/alertmanager/alertmanager.yml, built by login_devtools/local_alertmanager.py), and a webhook
receiver this test runs (an HTTP server that records every notification).

One run (module fixture) drives, through the live pipeline:

1. two credential-stuffing waves from two networks and a brute-force burst: the webhook gets one
   notification per network (group labels: the network and the detector), from both security receivers
   (the wave is critical: pager and chat), with the runbook link and the labels a responder needs; the
   burst reaches chat only, grouped by detector; once the waves are over (the consumer's stuffing window,
   20 s here) the resolved notifications arrive;
2. a backlog the consumer reports as lag, then the consumer stopped (SIGSTOP: it answers no scrape):
   LoginStreamConsumerDown is notified to the platform pager and chat, LoginStreamConsumerLagHigh fires
   in Prometheus but Alertmanager holds it inhibited and the webhook never gets it; once the consumer is
   resumed, the resolved LoginStreamConsumerDown arrives.

Only the timings are shortened, never the thresholds: the rules' `for:` (the alerts driven here), the
routes' group_wait/group_interval, the stuffing window. Every wait polls with a deadline; preconditions
(the lag was seen above the threshold when the consumer stopped) are checked, not assumed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from login_devtools import daemons, local_alertmanager, local_prometheus
from tests.observability import traffic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
lp, la = local_prometheus, local_alertmanager

STUFFING_WINDOW_S = 20
# The alerts this test drives, with the `for:` used here (the rule file's thresholds stay).
FOR = {
    "LoginStreamCredentialStuffingWave": "2s",
    "LoginStreamBruteForceBurst": "2s",
    "LoginStreamConsumerDown": "3s",
    # longer than the backlog is visible before the consumer is stopped, so that it fires while
    # LoginStreamConsumerDown already does: the inhibition, not the order of arrival, keeps it quiet
    "LoginStreamConsumerLagHigh": "15s",
}
TIMINGS = {"group_wait": "2s", "group_interval": "5s", "repeat_interval": "1h"}
NETWORKS = {"185.220.101.0/24": "185.220.101.{}", "5.255.255.0/24": "5.255.255.{}"}
LAG_THRESHOLD = 10_000  # the rule's


class Webhook:
    """Alertmanager's webhook receiver: records every notification (JSON payload, version 4)."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook.lock:
                    hook.notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.notifications)

    def find(self, alertname: str, status: str = "firing", since: int = 0) -> list[dict[str, Any]]:
        """The notifications about ``alertname`` with ``status``, from the ``since``-th one received on."""
        return [
            n
            for n in self.received()[since:]
            if n["status"] == status and any(a["labels"]["alertname"] == alertname for a in n["alerts"])
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Run:
    kafka: str
    topics: dict[str, str]
    group: str
    webhook: Webhook
    prom: Any
    am: Any
    consumer: subprocess.Popen[bytes]
    procs: dict[Path, subprocess.Popen[bytes]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


def wait_for(what: str, check: Callable[[], Any], timeout: float, run: Run) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``, with the logs, if a
    process exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for log, proc in run.procs.items():
            if proc.poll() is not None and proc.returncode not in (None, -signal.SIGSTOP):
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                pytest.fail(f"{proc.args!r} exited with {proc.returncode} while waiting for {what}:\n{tail}")
        with contextlib.suppress(Exception):
            result = check()
            if result:
                return result
        time.sleep(0.5)
    summary = [
        (n["receiver"], n["status"], sorted({a["labels"]["alertname"] for a in n["alerts"]}))
        for n in run.webhook.received()
    ]
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; webhook got: {summary}")


def spawn(name: str, env: dict[str, str], log: Path, args: list[str]) -> subprocess.Popen[bytes]:
    exe = shutil.which(name, path=str(BIN)) or name
    with open(log, "wb") as out:
        return subprocess.Popen([exe, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def short_rules(path: Path) -> Path:
    """The rule file with the `for:` of the alerts driven here shortened; nothing else changed."""
    doc = yaml.safe_load(lp.RULES.read_text(encoding="utf-8"))
    seen = set()
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in FOR:
                rule["for"] = FOR[rule["alert"]]
                seen.add(rule["alert"])
    assert seen == set(FOR), f"not in the rule file: {set(FOR) - seen}"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def produce(kafka: str, topic: str, records: list[tuple[str, dict[str, Any]]]) -> None:
    producer = Producer({"bootstrap.servers": kafka, "acks": "all", "linger.ms": 20})
    for key, event in records:
        producer.produce(topic, value=json.dumps(event).encode(), key=key.encode())
        producer.poll(0)
    assert producer.flush(60) == 0


def attacks(now: float) -> list[tuple[str, dict[str, Any]]]:
    """30 accounts failing from each of two networks (credential stuffing) and 60 failures of one
    account from one address (brute force: 56 detections, the burst threshold is 50)."""
    tag = uuid.uuid4().hex[:6]
    out = []
    for n, pattern in enumerate(NETWORKS.values()):
        for i in range(30):
            user = f"stuffed-{tag}-{n}-{i}"
            ip = pattern.format(10 + i % 5)
            out.append(
                (user, traffic._event(user, ip, now - 10 + i * 0.3, "failure", user_agent=traffic.BOT_AGENT))
            )
    victim = f"guessed-{tag}"
    out += [
        (victim, traffic._event(victim, traffic.IP_JP, now - 10 + i * 0.15, "failure")) for i in range(60)
    ]
    return out


def backlog(count: int) -> list[tuple[str, dict[str, Any]]]:
    now = time.time()
    tag = uuid.uuid4().hex[:6]
    return [(f"b-{tag}-{i}", traffic._event(f"b-{tag}-{i}", traffic.IP_US, now)) for i in range(count)]


@pytest.fixture(scope="module")
def run(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    from login_common.kafka import ensure_topics

    for finder in (lp.find_binary, la.find_binary):
        try:
            finder()
        except (lp.PrometheusError, la.AlertmanagerError) as exc:
            pytest.fail(str(exc))
    suffix = os.urandom(4).hex()
    topics = {"input": f"alerts-in-{suffix}", "output": f"alerts-out-{suffix}", "dlq": f"alerts-dlq-{suffix}"}
    ensure_topics(kafka, {topics["input"]: 3, topics["output"]: 3, topics["dlq"]: 1})
    group = f"alerts-group-{suffix}"
    work = tmp_path_factory.mktemp("alert-routing")
    ports = {"consumer": daemons.free_port(), "producer": daemons.free_port()}
    base = {
        **os.environ,
        "BOOTSTRAP_SERVERS": kafka,
        "INPUT_TOPIC": topics["input"],
        "OUTPUT_TOPIC": topics["output"],
        "DLQ_TOPIC": topics["dlq"],
        "GROUP_ID": group,
        "LOG_FORMAT": "json",
    }
    webhook = Webhook()
    started: list[Any] = []
    consumer = spawn(
        "login-consumer",
        {**base, "METRICS_PORT": str(ports["consumer"]), "STUFFING_WINDOW_SECONDS": str(STUFFING_WINDOW_S)},
        work / "consumer.log",
        [],
    )
    producer = spawn(
        "login-producer",
        {**base, "METRICS_PORT": str(ports["producer"])},
        work / "producer.log",
        ["--rate", "50"],
    )
    try:
        am = la.Alertmanager.start(
            la.build_config(la.AlertingSettings(webhook_url=webhook.url), TIMINGS),
            workdir=work / "alertmanager",
        )
        started.append(am)
        prom = lp.Prometheus.start(
            {
                lp.CONSUMER_JOB: [f"127.0.0.1:{ports['consumer']}"],
                lp.PRODUCER_JOB: [f"127.0.0.1:{ports['producer']}"],
            },
            workdir=work / "prometheus",
            scrape_interval="1s",
            rules=[short_rules(work / "rules.yaml")],
            labels={lp.CONSUMER_JOB: {"consumer_group": group}},
            alertmanagers=[am.address],
        )
        started.append(prom)
        state = Run(kafka, topics, group, webhook, prom, am, consumer)
        state.procs = {
            work / "consumer.log": consumer,
            work / "producer.log": producer,
            prom.log: prom.process,
            am.log: am.process,
        }

        def ready() -> bool:
            targets = prom.api("targets", state="active")["activeTargets"]
            am_up = prom.api("alertmanagers")["activeAlertmanagers"]
            return len(targets) == 2 and all(t["health"] == "up" for t in targets) and bool(am_up)

        wait_for("both targets up and the Alertmanager discovered", ready, 90, state)
        wait_for(
            "the consumer to process events",
            lambda: (
                float(
                    prom.api("query", query="sum(login_consumer_events_processed_total)")["result"][0][
                        "value"
                    ][1]
                )
                > 0
            ),
            90,
            state,
        )
        yield state
    finally:
        for proc in (producer, consumer):
            stop(proc)
        for thing in reversed(started):
            thing.stop()
        webhook.close()


# --- 1. security: stuffing waves per network, a brute-force burst, resolved ---------------------------


@pytest.fixture(scope="module")
def attacked(run: Run) -> Run:
    produce(run.kafka, run.topics["input"], attacks(time.time()))

    def both_waves() -> list[dict[str, Any]]:
        notes = run.webhook.find("LoginStreamCredentialStuffingWave")
        networks = {n["groupLabels"].get("network") for n in notes if n["receiver"] == "security"}
        return notes if networks >= set(NETWORKS) else []

    run.notes["waves"] = wait_for("a stuffing-wave notification per network", both_waves, 150, run)
    run.notes["burst"] = wait_for(
        "the brute-force burst", lambda: run.webhook.find("LoginStreamBruteForceBurst"), 90, run
    )
    return run


def test_a_stuffing_wave_arrives_grouped_by_network_with_runbook_and_labels(attacked: Run) -> None:
    for note in attacked.notes["waves"]:
        network = note["groupLabels"]["network"]
        assert network in NETWORKS
        assert note["groupLabels"] == {
            "alertname": "LoginStreamCredentialStuffingWave",
            "network": network,
            "detector": "credential_stuffing",
        }
        for alert in note["alerts"]:  # grouped: this network's alerts only
            labels = alert["labels"]
            assert labels["network"] == network
            assert labels["detector"] == "credential_stuffing"
            assert labels["consumer_group"] == attacked.group
            assert labels["severity"] == "critical"
            assert labels["category"] == "security"
            assert int(alert["annotations"]["summary"].rsplit(": ", 1)[1].split()[0]) >= 20
            assert alert["annotations"]["runbook_url"] == "docs/runbooks.md#loginstreamcredentialstuffingwave"
            assert network in alert["annotations"]["description"]
        assert (
            note["commonAnnotations"]["runbook_url"] == "docs/runbooks.md#loginstreamcredentialstuffingwave"
        )


def test_a_critical_wave_pages_and_goes_to_chat(attacked: Run) -> None:
    def receivers_per_network() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for note in attacked.webhook.find("LoginStreamCredentialStuffingWave"):
            out.setdefault(note["groupLabels"]["network"], set()).add(note["receiver"])
        return out

    expected = {net: {"security-pager", "security"} for net in NETWORKS}
    wait_for(
        "both security receivers for both networks", lambda: receivers_per_network() == expected, 30, attacked
    )
    assert not any(
        n["receiver"].startswith("platform")
        for n in attacked.webhook.find("LoginStreamCredentialStuffingWave")
    )


def test_a_brute_force_burst_goes_to_chat_grouped_by_detector(attacked: Run) -> None:
    notes = attacked.notes["burst"]
    assert {n["receiver"] for n in notes} == {"security"}  # a warning: no page
    for note in notes:
        assert note["groupLabels"] == {"alertname": "LoginStreamBruteForceBurst", "detector": "brute_force"}
        assert note["commonAnnotations"]["runbook_url"] == "docs/runbooks.md#loginstreambruteforceburst"


def test_the_waves_resolve_once_over(attacked: Run) -> None:
    def resolved() -> bool:
        notes = attacked.webhook.find("LoginStreamCredentialStuffingWave", "resolved")
        return {n["groupLabels"]["network"] for n in notes if n["receiver"] == "security"} >= set(NETWORKS)

    wait_for(
        "resolved stuffing-wave notifications for both networks", resolved, STUFFING_WINDOW_S + 90, attacked
    )
    for note in attacked.webhook.find("LoginStreamCredentialStuffingWave", "resolved"):
        assert all(a["status"] == "resolved" for a in note["alerts"])
        assert all(a["endsAt"] > a["startsAt"] for a in note["alerts"])


# --- 2. platform: a stopped consumer, its lag alert inhibited -------------------------------------------


def lag_seen(run: Run, query: str) -> float:
    result = run.prom.api("query", query=query)["result"]
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture(scope="module")
def stopped(attacked: Run) -> Iterator[Run]:
    """A backlog the consumer reports as lag above the threshold, then the consumer stopped. Retried
    with a bigger backlog (bounded) when the consumer drained it before Prometheus saw the lag."""
    run = attacked
    group = run.group
    # per topic, as the rule sums it (the input's lag and the repartition topic's are separate alerts: a
    # sum over both passed here at 10,515 while no topic reached the threshold, and the rule never fired)
    live_lag = f'max(sum by (topic) (login_consumer_lag_messages{{consumer_group="{group}"}}))'
    selector = f'login_consumer_lag_messages{{consumer_group="{group}"}}'
    held_lag = f"max(sum by (topic) (max by (topic, partition) (last_over_time({selector}[15m]))))"
    for attempt, size in enumerate((40_000, 80_000, 160_000)):
        produce(run.kafka, run.topics["input"], backlog(size))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and lag_seen(run, live_lag) <= LAG_THRESHOLD:
            time.sleep(0.2)
        run.notes["stopped_at"] = len(run.webhook.received())  # what came before is not about this stop
        os.kill(run.consumer.pid, signal.SIGSTOP)
        wait_for(
            "the stopped consumer's target down",
            lambda: (
                lag_seen(run, f'max(up{{job="login-consumer",consumer_group="{group}"}})') == 0
                and bool(run.prom.api("query", query=f'up{{consumer_group="{group}"}}')["result"])
            ),
            30,
            run,
        )
        held = lag_seen(run, held_lag)
        run.notes.setdefault("attempts", []).append((size, held))
        if held > LAG_THRESHOLD:
            break
        os.kill(run.consumer.pid, signal.SIGCONT)  # drained too fast: again, with more
        wait_for(
            "the consumer back", lambda: lag_seen(run, f'max(up{{consumer_group="{group}"}})') == 1, 30, run
        )
        assert attempt < 2, (
            f"the consumer drained every backlog before a scrape saw it: {run.notes['attempts']}"
        )
    try:
        yield run
    finally:
        with contextlib.suppress(OSError):
            os.kill(run.consumer.pid, signal.SIGCONT)


def test_consumer_down_is_notified_to_the_platform_pager_and_chat(stopped: Run) -> None:
    since = stopped.notes["stopped_at"]

    def both() -> bool:
        notes = stopped.webhook.find("LoginStreamConsumerDown", since=since)
        return {n["receiver"] for n in notes} >= {"platform-pager", "platform"}

    wait_for("LoginStreamConsumerDown at both platform receivers", both, 60, stopped)
    for note in stopped.webhook.find("LoginStreamConsumerDown", since=since):
        assert note["groupLabels"] == {
            "alertname": "LoginStreamConsumerDown",
            "consumer_group": stopped.group,
        }
        assert note["commonAnnotations"]["runbook_url"] == "docs/runbooks.md#loginstreamconsumerdown"
        assert not note["receiver"].startswith("security")


def test_the_lag_alert_fires_but_is_inhibited_and_never_notified(stopped: Run) -> None:
    run = stopped

    def inhibited() -> dict[str, Any] | None:
        for alert in la.api_get(run.am.url, "alerts"):
            if alert["labels"]["alertname"] == "LoginStreamConsumerLagHigh":
                status = alert["status"]
                if status["state"] == "suppressed" and status["inhibitedBy"]:
                    return dict(alert)
        return None

    held = wait_for("LoginStreamConsumerLagHigh held inhibited by Alertmanager", inhibited, 60, run)
    assert held["labels"]["consumer_group"] == run.group
    # firing in Prometheus all along: the silence is Alertmanager's inhibition, not a quiet rule
    firing = run.prom.api("query", query='ALERTS{alertname="LoginStreamConsumerLagHigh",alertstate="firing"}')
    assert firing["result"], "LoginStreamConsumerLagHigh is not firing in Prometheus"
    # give the platform route its group_wait and more than one group_interval to (wrongly) notify it
    time.sleep(2 + 2 * 5 + 2)
    assert inhibited() is not None
    assert run.webhook.find("LoginStreamConsumerLagHigh") == []


def test_consumer_down_resolves_once_the_consumer_is_back(stopped: Run) -> None:
    since = len(stopped.webhook.received())
    assert stopped.webhook.find("LoginStreamConsumerDown", since=stopped.notes["stopped_at"])
    os.kill(stopped.consumer.pid, signal.SIGCONT)

    def resolved() -> bool:
        notes = stopped.webhook.find("LoginStreamConsumerDown", "resolved", since=since)
        return {n["receiver"] for n in notes} >= {"platform-pager", "platform"}

    wait_for("resolved LoginStreamConsumerDown notifications", resolved, 90, stopped)
