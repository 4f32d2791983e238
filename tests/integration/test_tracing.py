"""Tracing end to end with real processes: login-producer and login-consumer (their CLIs) on the real
broker export OTLP to a real Jaeger v2 (login_devtools/local_jaeger.py, built by `make jaeger`), and each
trace is read back from Jaeger's query API.

* one event's trace spans producer -> user stage -> repartition hop -> network stage, one span each (the
  producer's send, each stage's process span), each the child of the one before, with the topic,
  partition and offset of the record it is about, the topic it went on to, its wait and the verdicts;
  a flagged login's consumer log line carries that trace's id;
* a dead-lettered event's trace shows the error, the dead letter carries it on, and ``replay-dlq``
  continues it;
* sampling off (ratio 0): no span reaches Jaeger, the records say "not sampled", and outputs, the dead
  letter and its replay carry their input's context on byte for byte.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Message, Producer

from login_common.contract import HEADER_DLQ_REPLAYED_FROM
from login_common.tracing import TRACEPARENT, is_sampled, read_context
from login_devtools import local_jaeger
from tests.integration.conftest import wait_for
from tests.kafka_utils import drain

pytestmark = pytest.mark.integration

jaeger_script = local_jaeger
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        binary = jaeger_script.find_binary()
    except jaeger_script.JaegerError as exc:
        pytest.fail(f"{exc} (`make setup`/`make test` build it: `make jaeger`)", pytrace=False)
    backend = jaeger_script.Jaeger.start(workdir=tmp_path_factory.mktemp("jaeger"), binary=binary)
    yield backend
    backend.stop()


def _env(kafka: str, jaeger: Any, service: str, ratio: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(jaeger_script.tracing_env(jaeger.otlp_http, ratio))
    env.update(
        {"OTEL_SERVICE_NAME": service, "BOOTSTRAP_SERVERS": kafka, "LOG_FORMAT": "json", "METRICS_PORT": "0"}
    )
    env.update(extra)
    return env


def _produce(kafka: str, topic: str, env: dict[str, str], count: int) -> None:
    argv = [
        str(BIN / "login-producer"),
        "--count", str(count), "--rate", "0", "--users", "20", "--seed", "7",
        "--start-time", str(int(time.time()) - 2 * 86_400),
        "--brute-force-ratio", "0.3", "--credential-stuffing-ratio", "0.3",
        "--topic", topic, "--bootstrap-servers", kafka, "--metrics-port", "0",
    ]  # fmt: skip
    done = subprocess.run(
        argv, env={**env, "DURATION": "0"}, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]


class Consumer:
    """login-consumer as a process, its JSON log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "login_consumer"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


def _topics(topic_factory: Callable[..., str]) -> dict[str, str]:
    return {
        "INPUT_TOPIC": topic_factory("user-login", partitions=2),
        "OUTPUT_TOPIC": topic_factory("processed-logins", partitions=2),
        "DLQ_TOPIC": topic_factory("dlq"),
    }


def _trace(jaeger: Any, trace_id: str, want: int) -> dict[str, Any]:
    """The trace once Jaeger holds at least ``want`` spans of it."""

    def found() -> dict[str, Any] | None:
        trace: dict[str, Any] | None = jaeger.trace(trace_id)
        return trace if trace is not None and len(trace["spans"]) >= want else None

    return wait_for(found, 30, f"trace {trace_id} with {want} spans in Jaeger", interval=0.5)


def _by_name(trace: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["operationName"]: s for s in trace["spans"]}


def _parent(span: dict[str, Any]) -> str | None:
    refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def _service(trace: dict[str, Any], span: dict[str, Any]) -> str:
    return str(trace["processes"][span["processID"]]["serviceName"])


def _trace_id(msg: Message) -> str:
    parent, _ = read_context(msg.headers())
    assert parent is not None, f"record without traceparent: {msg.headers()}"
    return parent[3:35].decode()


def test_one_events_trace_spans_producer_user_stage_and_network_stage(
    kafka: str,
    jaeger: Any,
    topic_factory: Callable[..., str],
    group_factory: Callable[[str], str],
    tmp_path: Path,
) -> None:
    topics = _topics(topic_factory)
    group = group_factory("traced")
    run = uuid.uuid4().hex[:6]
    consumer = Consumer(
        _env(kafka, jaeger, f"login-consumer-{run}", "1", GROUP_ID=group, **topics), tmp_path / "consumer.log"
    )
    try:
        _produce(kafka, topics["INPUT_TOPIC"], _env(kafka, jaeger, f"login-producer-{run}", "1"), 300)
        outputs = drain(kafka, topics["OUTPUT_TOPIC"], expected=300, timeout=120)
    finally:
        consumer.stop()
    assert outputs, "no output"
    assert all(is_sampled(read_context(m.headers())[0]) for m in outputs)  # ratio 1: every event traced

    repartition = f"{group}-network-repartition"
    msg = outputs[0]
    trace = _trace(jaeger, _trace_id(msg), want=3)
    spans = _by_name(trace)
    # one span per stage: the producer's send, the user stage's and the network stage's process spans
    chain = [
        f"send {topics['INPUT_TOPIC']}",
        f"process {topics['INPUT_TOPIC']}",
        f"process {repartition}",
    ]
    assert sorted(spans) == sorted(chain), sorted(spans)
    assert _service(trace, spans[chain[0]]) == f"login-producer-{run}"
    assert {_service(trace, spans[name]) for name in chain[1:]} == {f"login-consumer-{run}"}
    assert _parent(spans[chain[0]]) is None  # the producer starts the trace
    for parent, child in itertools.pairwise(chain):
        assert _parent(spans[child]) == spans[parent]["spanID"], f"{child} is not a child of {parent}"
    # the output record carries the last span's context
    assert read_context(msg.headers())[0][36:52].decode() == spans[chain[-1]]["spanID"]  # type: ignore[index]

    tags = {name: jaeger_script.tags(span) for name, span in spans.items()}
    sent, user, network = (tags[name] for name in chain)
    assert all(tags[name]["span.kind"] == "consumer" for name in chain[1:])
    assert user["messaging.destination.name"] == topics["INPUT_TOPIC"]
    assert user["messaging.destination.partition.id"] == sent["messaging.destination.partition.id"]
    assert user["messaging.kafka.offset"] == sent["messaging.kafka.offset"]  # the same record
    assert user["messaging.consumer.group.name"] == group
    assert user["messaging.operation.type"] == "process"
    assert user["login.stage"] == "user"
    assert user["login.output.topic"] == repartition
    assert user["login.queued_ms"] >= 0  # the time the record waited in the topic
    assert network["messaging.destination.name"] == repartition
    assert {"messaging.destination.partition.id", "messaging.kafka.offset", "login.queued_ms"} <= set(network)
    assert network["login.stage"] == "network"
    assert network["login.output.topic"] == topics["OUTPUT_TOPIC"]
    assert user["login.risk.level"] in ("low", "medium", "high")
    assert "login.risk.score" in user
    assert network["login.network.detection"] in ("none", "credential_stuffing")
    consumer_process = trace["processes"][spans[chain[1]]["processID"]]
    resource = {t["key"]: t["value"] for t in consumer_process["tags"]}
    assert {"service.version", "k8s.pod.name"} <= set(resource)

    # a flagged login: its trace shows the verdict, and the consumer's log line names that trace
    docs = [orjson.loads(m.value() or b"{}") for m in outputs]
    flagged = [m for m, d in zip(outputs, docs, strict=True) if d["risk_level"] == "high" or d["detections"]]
    seen = sorted({(d["risk_level"], tuple(d["reasons"])) for d in docs})
    assert flagged, f"the attack scenarios flagged no login: {seen}"
    flagged_id = _trace_id(flagged[0])
    logged = {line.get("trace_id") for line in consumer.lines() if line.get("event") == "event.flagged"}
    assert flagged_id in logged
    found = [jaeger_script.tags(s) for s in _trace(jaeger, flagged_id, 3)["spans"]]
    assert any(
        f.get("login.risk.level") == "high" or f.get("login.detections") or f.get("login.network.risk")
        for f in found
    ), found


def test_a_dead_letters_trace_shows_the_error_and_replay_continues_it(
    kafka: str,
    jaeger: Any,
    topic_factory: Callable[..., str],
    group_factory: Callable[[str], str],
    tmp_path: Path,
) -> None:
    topics = _topics(topic_factory)
    run = uuid.uuid4().hex[:6]
    trace_id = uuid.uuid4().hex
    upstream = f"{uuid.uuid4().hex[:16]}"
    producer = Producer({"bootstrap.servers": kafka})
    producer.produce(
        topics["INPUT_TOPIC"],
        b'{"user_id": 42, "not": "an event"}',
        b"u1",
        headers=[(TRACEPARENT, f"00-{trace_id}-{upstream}-01".encode())],
    )
    assert producer.flush(10) == 0
    env = _env(kafka, jaeger, f"login-consumer-{run}", "1", GROUP_ID=group_factory("dead"), **topics)
    consumer = Consumer(env, tmp_path / "consumer.log")
    try:
        (letter,) = drain(kafka, topics["DLQ_TOPIC"], expected=1, timeout=60)
    finally:
        consumer.stop()
    assert _trace_id(letter) == trace_id  # the dead letter carries the event's trace on

    trace = _trace(jaeger, trace_id, want=1)
    spans = _by_name(trace)
    assert sorted(spans) == [f"process {topics['INPUT_TOPIC']}"]  # the stage's one span
    process = spans[f"process {topics['INPUT_TOPIC']}"]
    assert _parent(process) == upstream
    found = jaeger_script.tags(process)
    assert found.get("error") is True or found.get("otel.status_code") == "ERROR"
    assert found["error.type"] == "missing_field"
    assert found["login.output.topic"] == topics["DLQ_TOPIC"]
    assert any(
        field["key"] == "event" and field["value"] == "exception"
        for log in process.get("logs", [])
        for field in log["fields"]
    )
    # the dead letter carries the process span's context
    assert read_context(letter.headers())[0][36:52].decode() == process["spanID"]  # type: ignore[index]
    lines = [line for line in consumer.lines() if line.get("event") == "event.dead_lettered"]
    assert [line["trace_id"] for line in lines] == [trace_id]

    replayed = subprocess.run(
        [sys.executable, "-m", "login_consumer", "replay-dlq", "--timeout", "20"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    again = drain(kafka, topics["INPUT_TOPIC"], expected=2, timeout=30)[-1]
    assert _trace_id(again) == trace_id
    spans = _by_name(_trace(jaeger, trace_id, want=2))
    replay = spans[f"send {topics['INPUT_TOPIC']}"]
    assert _parent(replay) == process["spanID"]
    assert read_context(again.headers())[0][36:52].decode() == replay["spanID"]  # type: ignore[index]


def test_sampling_off_exports_no_span_and_every_record_carries_its_context_on(
    kafka: str,
    jaeger: Any,
    topic_factory: Callable[..., str],
    group_factory: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """Ratio 0: nothing is recorded, yet every output and dead letter carries its input's context byte for
    byte (same trace id, parent id and flags: the consumer forwards an unsampled context as it came), and
    ``replay-dlq`` carries the dead letter's on, so the event's records still join on one trace id."""
    topics = _topics(topic_factory)
    run = uuid.uuid4().hex[:6]
    names = {f"login-consumer-{run}", f"login-producer-{run}"}
    bad_context = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-02".encode()  # random-id flag, unsampled
    producer = Producer({"bootstrap.servers": kafka})
    producer.produce(
        topics["INPUT_TOPIC"],
        b'{"user_id": 42, "not": "an event"}',
        b"u1",
        headers=[(TRACEPARENT, bad_context)],
    )
    assert producer.flush(10) == 0
    env = _env(kafka, jaeger, f"login-consumer-{run}", "0", GROUP_ID=group_factory("unsampled"), **topics)
    consumer = Consumer(env, tmp_path / "consumer.log")
    try:
        _produce(kafka, topics["INPUT_TOPIC"], _env(kafka, jaeger, f"login-producer-{run}", "0"), 100)
        outputs = drain(kafka, topics["OUTPUT_TOPIC"], expected=100, timeout=120)
        (letter,) = drain(kafka, topics["DLQ_TOPIC"], expected=1, timeout=60)
    finally:
        consumer.stop()  # the exporter flushes on the way out: anything recorded would be sent now
    assert len(outputs) == 100
    contexts = [read_context(m.headers())[0] for m in outputs]
    assert all(c is not None and not is_sampled(c) for c in contexts)  # "not sampled" travels on
    # the producer's unsampled contexts go through both stages untouched, byte for byte
    inputs = drain(kafka, topics["INPUT_TOPIC"], expected=101, timeout=30)
    sent = {read_context(m.headers())[0] for m in inputs}
    assert set(contexts) == sent - {bad_context}
    assert len(set(contexts)) == 100
    assert read_context(letter.headers())[0] == bad_context  # the dead letter keeps the event's context

    replayed = subprocess.run(
        [sys.executable, "-m", "login_consumer", "replay-dlq", "--timeout", "20"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    (again,) = [
        m
        for m in drain(kafka, topics["INPUT_TOPIC"], expected=102, timeout=30)
        if HEADER_DLQ_REPLAYED_FROM in dict(m.headers() or [])
    ]
    assert read_context(again.headers())[0] == bad_context  # replay-dlq joins the same trace

    # (the first test of this module shows the same backend taking spans)
    services = set(jaeger_script.api_get(jaeger.url, "/api/services").get("data") or [])
    assert not names & services, f"spans were exported with sampling off: {names & services}"
    assert not [line for line in consumer.lines() if line.get("event") == "event.flagged"]
