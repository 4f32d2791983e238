"""``login-producer`` refused by the secured broker: it says why, waits, retries and recovers; nothing lost.

Each test runs the real entry point as a process (as a pod runs it) against the session's SASL_SSL broker
(tests/integration/secured.py), refuses it one way (no ACL, ACL revoked mid-stream, wrong password, topic
missing), checks that it neither exits nor prints a traceback, that ``/ready`` answers 503 naming the
refusal and that ``login_producer_errors_total{type=...}`` counts it; then grants the right (fixes the
password file, creates the topic) and checks that the same process finishes its COUNT events with exit 0
and that the topic holds exactly the events the seed defines, each once.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from login_common.acls import producer_acls
from login_common.kafka import ensure_topics
from login_common.settings import load_settings
from login_producer.config import ProducerSettings
from login_producer.simulate import Simulation
from tests.integration.secured import SecuredKafka
from tests.kafka_utils import drain

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ENTRY = [str(Path(sys.executable).parent / "login-producer")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


START = 1_767_225_600  # 2026-01-01: with RATE>0 too, a fixed START_TIME makes the events repeat


def expected_ids(count: int, seed: int, rate: float) -> list[str]:
    """The event ids of the first ``count`` events of ``seed`` (the simulation is deterministic)."""
    s = load_settings(ProducerSettings, seed=seed, rate=rate, start_time=START)
    sim = Simulation(
        seed=s.seed,
        users=s.users,
        start_time=START,
        rate=rate,
        mix=s.scenario_mix(),
        rules=s.truth_rules(),
        logins_per_user_day=s.logins_per_user_day,
        office_share=s.office_share,
    )
    return [str(e.event["event_id"]) for e in itertools.islice(sim.events(), count)]


class ProducerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = int(env["METRICS_PORT"])
        self.log_path = log
        self._log = log.open("ab")
        self.proc = subprocess.Popen(ENTRY, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            assert self.proc.poll() is None, (
                f"login-producer exited ({self.proc.returncode}): {self.output()}"
            )
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; output:\n{self.output()[-3000:]}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def refused(self, kind: str, words: str) -> None:
        """/ready 503 naming the refusal, the metric counting it, and the process still there."""
        self.wait_for(
            lambda: self.get("/ready")[0] == 503 and words in self.get("/ready")[1], f"/ready: {words}"
        )
        assert self.metric(f'login_producer_errors_total{{type="{kind}"}}') >= 1
        assert self.get("/healthz")[0] == 200  # alive: Kubernetes must not restart it
        time.sleep(2.0)
        assert self.proc.poll() is None, "a refusal must not end the process"

    def finish(self, timeout: float = 120.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"login-producer did not finish after the grant:\n{self.output()[-3000:]}")
        self._log.close()
        out = self.output()
        assert "Traceback" not in out
        assert code == 0, f"login-producer exited {code} after the grant; its output:\n{out[-4000:]}"
        return code


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., ProducerProcess]]:
    started: list[ProducerProcess] = []

    def make(env: dict[str, str]) -> ProducerProcess:
        env = {"LOG_FORMAT": "json", "METRICS_PORT": str(_free_port()), **env}
        proc = ProducerProcess(env, tmp_path / f"producer-{len(started)}.log")
        started.append(proc)
        return proc

    yield make
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(10)


def _topic_ids(secured: SecuredKafka, topic: str, expected: int) -> Counter[str]:
    messages = drain(secured.config("admin"), topic, expected=expected, timeout=90)
    return Counter(str(orjson.loads(m.value())["event_id"]) for m in messages)


def _assert_all_once(secured: SecuredKafka, topic: str, count: int, seed: int, rate: float = 0) -> None:
    got = _topic_ids(secured, topic, count)
    want = expected_ids(count, seed, rate)
    assert set(got) == set(want), f"lost {len(set(want) - set(got))} event(s)"
    assert sum(got.values()) == count, f"{sum(got.values()) - count} duplicate(s)"


def _grant(secured: SecuredKafka, topic: str) -> None:
    secured.broker.grant({"producer": producer_acls(topic)})


def _topic(secured: SecuredKafka, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    ensure_topics(secured.config("admin"), {name: 3})
    return name


def test_missing_acl_at_start_up_is_waited_out_and_the_grant_delivers_everything(
    secured_kafka: SecuredKafka, launch: Callable[..., ProducerProcess]
) -> None:
    topic = _topic(secured_kafka, "ungranted")
    count, seed = 400, 7
    proc = launch(
        secured_kafka.process_env(
            "producer", input_topic=topic, count=str(count), seed=str(seed), rate="0", start_time=str(START)
        )
    )
    proc.refused("authorization", "authorization failed: TOPIC_AUTHORIZATION_FAILED")
    assert proc.metric("login_producer_events_delivered_total") == 0
    _grant(secured_kafka, topic)
    assert proc.finish() == 0
    out = proc.output()
    assert "kafka.authorization_failed" in out
    assert "kafka.access_restored" in out
    _assert_all_once(secured_kafka, topic, count, seed)


def test_write_acl_revoked_mid_stream_holds_the_events_until_granted_again(
    secured_kafka: SecuredKafka, launch: Callable[..., ProducerProcess]
) -> None:
    topic = _topic(secured_kafka, "revoked")
    _grant(secured_kafka, topic)
    count, seed = 3000, 11
    proc = launch(
        secured_kafka.process_env(
            "producer", input_topic=topic, count=str(count), seed=str(seed), rate="150", start_time=str(START)
        )
    )
    proc.wait_for(lambda: proc.metric("login_producer_events_delivered_total") >= 300, "progress")
    revoke = AclBindingFilter(
        ResourceType.TOPIC,
        topic,
        ResourcePatternType.LITERAL,
        "User:producer",
        "*",
        AclOperation.WRITE,
        AclPermissionType.ALLOW,
    )
    admin = AdminClient(secured_kafka.config("admin"))
    for future in admin.delete_acls([revoke]).values():
        assert len(future.result(timeout=30)) == 1
    proc.refused("authorization", "TOPIC_AUTHORIZATION_FAILED")
    stalled = proc.metric("login_producer_events_delivered_total")
    assert stalled < count
    time.sleep(2.0)
    assert proc.metric("login_producer_events_delivered_total") == stalled  # refused: nothing gets in
    _grant(secured_kafka, topic)
    assert proc.finish() == 0
    _assert_all_once(secured_kafka, topic, count, seed, rate=150)


def test_wrong_password_is_reported_and_a_fixed_password_file_is_used_without_restart(
    secured_kafka: SecuredKafka, launch: Callable[..., ProducerProcess], tmp_path: Path
) -> None:
    topic = _topic(secured_kafka, "password")
    _grant(secured_kafka, topic)
    password = tmp_path / "producer.password"
    password.touch(mode=0o600)
    password.write_text("not-the-password\n")
    count, seed = 300, 13
    env = secured_kafka.process_env(
        "producer",
        input_topic=topic,
        count=str(count),
        seed=str(seed),
        rate="0",
        start_time=str(START),
        sasl_password_file=str(password),
    )
    proc = launch(env)
    proc.refused("authentication", "authentication failed")
    password.write_text(secured_kafka.broker.password("producer") + "\n")  # the Secret rotated in place
    assert proc.finish() == 0
    assert "kafka.password_reloaded" in proc.output()
    _assert_all_once(secured_kafka, topic, count, seed)


def test_missing_topic_is_reported_until_an_admin_creates_it(
    secured_kafka: SecuredKafka, launch: Callable[..., ProducerProcess]
) -> None:
    topic = f"absent-{uuid.uuid4().hex[:8]}"
    _grant(secured_kafka, topic)  # the rights are there, the topic is not (the broker creates none itself)
    count, seed = 300, 17
    proc = launch(
        secured_kafka.process_env(
            "producer", input_topic=topic, count=str(count), seed=str(seed), rate="0", start_time=str(START)
        )
    )
    proc.refused("missing_topic", "topic missing")
    ensure_topics(secured_kafka.config("admin"), {topic: 3})
    assert proc.finish() == 0
    _assert_all_once(secured_kafka, topic, count, seed)


def test_mutual_tls_without_a_client_certificate_is_an_authentication_refusal(
    secured_kafka: SecuredKafka, launch: Callable[..., ProducerProcess]
) -> None:
    """The mutual-TLS listener refuses a producer that brings no certificate: reported as an
    authentication failure (TLS alert "bad certificate"), the process alive and NotReady."""
    broker = secured_kafka.broker
    assert broker.mtls
    env = secured_kafka.process_env(
        "producer", input_topic="user-login", count="10", rate="0", start_time=str(START)
    )
    for name in ("SASL_USERNAME", "SASL_PASSWORD_FILE", "SASL_MECHANISM"):
        env.pop(name, None)
    env |= {"SECURITY_PROTOCOL": "SSL", "BOOTSTRAP_SERVERS": f"127.0.0.1:{broker.mtls_port}"}
    proc = launch(env)
    proc.refused("authentication", "authentication failed")
    assert proc.metric("login_producer_events_delivered_total") == 0
