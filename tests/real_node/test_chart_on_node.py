"""The chart's pipeline on a real kubelet: pods that run, as the design promises, and lose nothing.

Everything here is read from what runs, not from the spec: the uid and the read-only root come from
the pods' processes (/proc, inside the pod and from the host by the containerd task's PID), the events
from the topics, the metrics through `kubectl port-forward`, the logs through `kubectl logs`.
"Nothing lost" is counted, not sampled: after each disruption the producer stops, the consumer group
drains the input (lag 0, read from the broker), and every event id the producer pod wrote since the
test's start offsets must be on the output topic (or, if the consumer rejected it, on the DLQ).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import jsonschema
import pytest
from confluent_kafka import Consumer, TopicPartition

from login_common.contract import processed_schema
from tests.control_plane.conftest import wait_for
from tests.observability.traffic import attack_round
from tests.real_node.conftest import Release, install_args

pytestmark = pytest.mark.timeout(1800)
RUNTIME_SOCK = "/run/login-stream-node/containerd.sock"


# --- helpers -------------------------------------------------------------------------------------------


def release_env(release: Release) -> dict[str, str]:
    deploy = release.node.kubectl_json(
        "-n", release.namespace, "get", "deployment", f"{release.name}-consumer"
    )
    env = deploy["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e["value"] for e in env if "value" in e}


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "real-node-probe", "enable.auto.commit": False}
    )
    try:
        meta = consumer.list_topics(topic, timeout=15).topics[topic]
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1]
            for p in meta.partitions
        }
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, start: dict[int, int] | None = None) -> list[bytes]:
    """Every record from ``start`` (default: the beginning) to the end offsets read first."""
    end = end_offsets(bootstrap, topic)
    begin = start or dict.fromkeys(end, 0)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "real-node-probe", "enable.auto.commit": False}
    )
    wanted = {p: e for p, e in end.items() if e > begin.get(p, 0)}
    consumer.assign([TopicPartition(topic, p, begin.get(p, 0)) for p in wanted])
    values: list[bytes] = []
    deadline = time.monotonic() + 120
    try:
        while wanted and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1.0):
                if msg.error():
                    continue
                if msg.offset() < wanted.get(msg.partition(), -1):
                    values.append(msg.value() or b"")
                if msg.offset() >= wanted.get(msg.partition(), 0) - 1:
                    wanted.pop(msg.partition(), None)
    finally:
        consumer.close()
    assert not wanted, f"could not read {topic} to its end offsets {end} (left: {wanted})"
    return values


def behind(bootstrap: str, group: str, topic: str, ends: dict[int, int]) -> int:
    """Records of ``topic`` below ``ends`` that the group has not committed yet."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=15)
        return sum(max(0, ends[tp.partition] - max(tp.offset, 0)) for tp in committed)
    finally:
        consumer.close()


def event_ids(values: list[bytes]) -> list[str]:
    ids = []
    for raw in values:
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("event_id"), str):
            ids.append(doc["event_id"])
    return ids


def set_producer_replicas(release: Release, replicas: int) -> None:
    release.node.kubectl(
        "-n", release.namespace, "scale", f"deployment/{release.name}-producer", f"--replicas={replicas}"
    )
    if replicas:
        wait_for("producer ready", lambda: len(release.ready_pods("producer")) == replicas, 180)
    else:
        wait_for("producer stopped", lambda: not release.pods("producer"), 180)


def drained(release: Release, env: dict[str, str]) -> None:
    """Waits until the consumer group has committed the end offsets of the input (user stage), then the
    end offsets its repartition topic had at that moment (network stage, which writes the outputs): only
    then is every output out. Not "lag 0" on the repartition topic: each user stage keeps writing progress
    records there while idle (stages/user.py), so its end moves on and a zero lag is only seen by luck."""
    bootstrap, group, source = release.node.bootstrap, env["GROUP_ID"], env["INPUT_TOPIC"]
    sent = end_offsets(bootstrap, source)  # no writer is left: the producer pods are scaled to 0
    wait_for(
        f"the consumer group to drain {source}", lambda: behind(bootstrap, group, source, sent) == 0, 600, 2
    )
    repartition = f"{group}-network-repartition"
    routed = end_offsets(bootstrap, repartition)  # every event record is below these: the input was drained
    wait_for(
        f"the consumer group to drain {repartition}",
        lambda: behind(bootstrap, group, repartition, routed) == 0,
        600,
        2,
    )


def assert_nothing_lost(
    release: Release, env: dict[str, str], start: dict[str, dict[int, int]]
) -> dict[str, int]:
    bootstrap = release.node.bootstrap
    sent = event_ids(read_topic(bootstrap, env["INPUT_TOPIC"], start["input"]))
    out = event_ids(read_topic(bootstrap, env["OUTPUT_TOPIC"], start["output"]))
    dlq = read_topic(bootstrap, env["DLQ_TOPIC"], start["dlq"])
    missing = set(sent) - set(out) - set(event_ids(dlq))
    assert sent, "the producer pod wrote nothing during the test"
    assert not missing, f"{len(missing)} of {len(set(sent))} events lost, e.g. {sorted(missing)[:5]}"
    return {"sent": len(sent), "outputs": len(out), "dlq": len(dlq), "duplicates": len(out) - len(set(out))}


def marks(release: Release, env: dict[str, str]) -> dict[str, dict[int, int]]:
    """End offsets to count from. The outputs' are read before the input's: an event written after the
    input's mark can only come out after the outputs' mark (read the other way round, one processed in
    between would look lost)."""
    bootstrap = release.node.bootstrap
    output = end_offsets(bootstrap, env["OUTPUT_TOPIC"])
    dlq = end_offsets(bootstrap, env["DLQ_TOPIC"])
    return {"output": output, "dlq": dlq, "input": end_offsets(bootstrap, env["INPUT_TOPIC"])}


def host_pid(release: Release, pod: str) -> int:
    """The PID, on this host, of the pod's first container's main process (containerd's task)."""
    doc = release.node.kubectl_json("-n", release.namespace, "get", "pod", pod)
    container_id = doc["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    tasks = subprocess.run(
        ["ctr", "--address", RUNTIME_SOCK, "--namespace", "k8s.io", "tasks", "list"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    for line in tasks.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container_id:
            return int(fields[1])
    pytest.fail(f"no containerd task for {pod}'s container {container_id}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- tests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("component", ["producer", "consumer"])
def test_pods_run_and_are_ready_in_a_restricted_namespace(release: Release, component: str) -> None:
    ns = release.node.kubectl_json("get", "namespace", release.namespace)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deploy = release.node.kubectl_json(
        "-n", release.namespace, "get", "deployment", f"{release.name}-{component}"
    )
    want = deploy["spec"]["replicas"]
    ready = wait_for(
        f"{want} ready {component} pods",
        lambda: len(release.ready_pods(component)) == want and release.ready_pods(component),
        180,
    )
    for pod in release.pods(component):
        assert pod["spec"]["nodeName"] == "login-stream-node", "a pod ran somewhere else than the real node"
    assert len(ready) == want


@pytest.mark.parametrize("component", ["producer", "consumer"])
def test_processes_run_as_uid_10001_on_a_read_only_root(release: Release, component: str) -> None:
    probe = (
        "import json,os\n"
        "status=dict(l.split(':',1) for l in open('/proc/1/status').read().splitlines() if ':' in l)\n"
        "root=[l.split() for l in open('/proc/1/mountinfo') if l.split()[4]=='/'][-1]\n"
        "try:\n open('/probe-write','w')\n wrote=True\nexcept OSError as e:\n wrote=e.strerror\n"
        "print(json.dumps({'uid':status['Uid'].split(),'gid':status['Gid'].split(),"
        "'root_options':root[5],'write':wrote,'cmd':open('/proc/1/cmdline').read().split(chr(0))}))\n"
    )
    for pod in release.ready_pods(component):
        seen = json.loads(release.exec(pod, "python", "-c", probe).strip().splitlines()[-1])
        assert seen["uid"] == ["10001"] * 4, seen
        assert seen["gid"] == ["10001"] * 4, seen
        assert "ro" in seen["root_options"].split(","), seen
        assert seen["write"] == "Read-only file system", seen
        assert any(f"login-{component}" in part for part in seen["cmd"]), seen
        # the same process seen from the host, by the PID containerd gives its task
        status = open(f"/proc/{host_pid(release, pod)}/status").read()  # noqa: SIM115
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == ["10001"] * 4, uid_line


def test_events_from_the_producer_pod_come_out_of_the_consumer_pods_per_contract(release: Release) -> None:
    env = release_env(release)
    bootstrap = release.node.bootstrap

    def outputs() -> list[bytes] | None:
        values = read_topic(bootstrap, env["OUTPUT_TOPIC"])
        return values if len(values) >= 200 else None

    values = wait_for("200 processed events on the output topic", outputs, 240, 3)
    inputs = set(event_ids(read_topic(bootstrap, env["INPUT_TOPIC"])))
    schema = processed_schema()
    for raw in values[:500]:
        doc = json.loads(raw)
        jsonschema.validate(doc, schema)
        assert doc["event_id"] in inputs, (
            f"an output for an event the producer pod never wrote: {doc['event_id']}"
        )


def test_helm_test_runs_its_pod_and_passes(release: Release) -> None:
    out = release.node.helm(
        "test", release.name, "--namespace", release.namespace, "--logs", "--timeout", "5m"
    )
    assert "Phase:          Succeeded" in out.stdout or "Phase: Succeeded" in " ".join(out.stdout.split()), (
        out.stdout
    )
    hooks = [
        p for p in release.node.kubectl_json("-n", release.namespace, "get", "pods")["items"]
        if "helm.sh/hook" in p["metadata"].get("annotations", {})
    ]  # fmt: skip
    assert hooks, "helm test left no pod to inspect"
    terminated = hooks[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    assert terminated["startedAt"], terminated


def test_port_forward_serves_the_consumers_metrics(release: Release) -> None:
    port = free_port()
    proc = subprocess.Popen(
        ["kubectl", "-n", release.namespace, "port-forward", f"svc/{release.name}-consumer", f"{port}:8000"],
        env=release.node.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def scrape() -> str | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                body = resp.read().decode()
            return body if "login_consumer_" in body else None

        body = wait_for("/metrics through kubectl port-forward", scrape, 60)
        assert "# TYPE" in body
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("component", ["producer", "consumer"])
def test_kubectl_logs_are_json(release: Release, component: str) -> None:
    pod = release.ready_pods(component)[0]
    logs = release.node.kubectl("-n", release.namespace, "logs", pod, "--tail=50")
    lines = [line for line in logs.splitlines() if line.strip()]
    assert lines, f"{pod} logged nothing"
    for line in lines:
        doc = json.loads(line)
        assert {"event", "level", "timestamp"} <= doc.keys(), doc


def test_a_consumer_pod_force_deleted_mid_stream_loses_nothing(release: Release) -> None:
    env = release_env(release)
    start = marks(release, env)
    time.sleep(5)  # the producer keeps writing meanwhile; the victim is mid-batch, not idle
    victim = release.ready_pods("consumer")[0]
    release.node.kubectl("-n", release.namespace, "delete", "pod", victim, "--grace-period=0", "--force")
    wait_for(
        "a replacement consumer pod",
        lambda: victim not in release.ready_pods("consumer") and len(release.ready_pods("consumer")) == 2,
        240,
        2,
    )
    time.sleep(5)
    set_producer_replicas(release, 0)
    try:
        drained(release, env)
        figures = assert_nothing_lost(release, env, start)
        print(f"\nforce-deleted {victim}: {figures}")
    finally:
        set_producer_replicas(release, 1)


def test_upgrade_to_three_consumers_mid_stream_loses_nothing_and_still_detects_stuffing(
    release: Release,
) -> None:
    """Credential-stuffing waves (40 accounts from one address, keyed by user, so spread over every input
    partition and so over every replica's user stage; only the network stage sees them together) before,
    during and after the 2 -> 3 rebalance. The first wave primes the address's window; every failing
    account of the later waves must then be flagged, whatever order the network stage sees them in: the
    window already holds at least STUFFING_ACCOUNTS accounts. A network stage whose new owner lost the
    window in the handover (state not restored, or restored short) leaves the first accounts of the next
    wave unflagged.

    Not asserted on the priming wave: its events are backdated 0-20 s (``attack_round``) behind the live
    traffic of their partitions, so the event-time merge cannot put them back in order across partitions
    (stages/merge.py) and an account is counted against the accounts of its own event-time window applied
    so far (stores/networks.py): how many of the first wave are flagged depends on arrival order. The same
    happens with no rebalance at all (the local pipeline: 18 of its 36 failures flagged)."""
    env = release_env(release)
    start = marks(release, env)
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": release.node.bootstrap, "acks": "all"})
    tag = f"rn{int(time.time())}"
    waves: dict[str, set[str]] = {}

    def send(wave: str) -> None:
        waves[wave] = set()
        for key, value in attack_round(f"{tag}-{wave}"):
            if key.startswith("cs-user-"):
                waves[wave].add(key)
            producer.produce(env["INPUT_TOPIC"], value=value, key=key.encode())
        producer.flush(30)

    send("prime")
    time.sleep(5)
    to_three = install_args(release.name, release.namespace, "--reuse-values", "--set", "consumer.replicas=3")
    upgrade = subprocess.Popen(
        [release.node.helm_binary(), *to_three],
        env=release.node.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for wave in ("during-1", "during-2", "during-3"):
        send(wave)
        time.sleep(5)
    _, err = upgrade.communicate(timeout=600)
    assert upgrade.returncode == 0, err[-2000:]
    wait_for("3 ready consumer pods", lambda: len(release.ready_pods("consumer")) == 3, 300, 3)
    for wave in ("after-1", "after-2"):
        send(wave)
        time.sleep(5)
    set_producer_replicas(release, 0)
    try:
        drained(release, env)
        figures = assert_nothing_lost(release, env, start)
        outputs = [
            json.loads(v) for v in read_topic(release.node.bootstrap, env["OUTPUT_TOPIC"], start["output"])
        ]
        flagged = {
            o["user_id"]
            for o in outputs
            if any(d["detector"] == "credential_stuffing" for d in o.get("detections", []))
        }
        pods = {p["spec"]["nodeName"] for p in release.pods("consumer")}
        assert pods == {"login-stream-node"}

        def failing(keys: set[str]) -> set[str]:  # accounts 0, 10, 20, 30 of a wave log in successfully
            return {k for k in keys if int(k.rsplit("-", 1)[1]) % 10}

        report = {w: f"{len(failing(k) & flagged)}/{len(failing(k))}" for w, k in waves.items()}
        print(f"\nupgrade to 3: {figures}; failing accounts flagged per wave: {report}")
        missed = sorted(k for w, keys in waves.items() if w != "prime" for k in failing(keys) - flagged)
        assert not missed, f"not flagged after the priming wave: {missed[:10]} ({report})"
    finally:
        set_producer_replicas(release, 1)


def test_network_policy_objects_are_accepted_but_the_bridge_cni_does_not_enforce_them(
    release: Release,
) -> None:
    """The bridge CNI plugin has no policy engine: docs/kubernetes.md says so, and this keeps it true.
    With the chart's NetworkPolicy on, the pipeline still works (its allowed paths), and a pod of another
    namespace still reaches the consumer's metrics port, which the policy would refuse where enforced."""
    release.node.helm(
        *install_args(
            release.name, release.namespace, "--reuse-values", "--set", "networkPolicy.enabled=true"
        )
    )
    policies = release.node.kubectl_json("-n", release.namespace, "get", "networkpolicy")["items"]
    assert policies, "the chart rendered no NetworkPolicy"
    pod_ip = release.node.kubectl_json(
        "-n", release.namespace, "get", "pod", release.ready_pods("consumer")[0]
    )["status"]["podIP"]
    probe_ns = f"{release.namespace}-probe"
    release.node.kubectl("create", "namespace", probe_ns, check=False)
    release.node.kubectl(
        "label", "--overwrite", "namespace", probe_ns, "pod-security.kubernetes.io/enforce=restricted"
    )
    try:
        spec = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe", "namespace": probe_ns},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "probe",
                        "image": "localhost/login-producer:dev",
                        "imagePullPolicy": "Never",
                        "command": [
                            "python",
                            "-c",
                            f"import urllib.request;print(urllib.request.urlopen('http://{pod_ip}:8000/metrics',timeout=5).status)",
                        ],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
        release.node.kubectl("apply", "-f", "-", stdin=json.dumps(spec))
        phase = wait_for(
            "the probe pod to finish",
            lambda: (
                release.node.kubectl_json("-n", probe_ns, "get", "pod", "probe")["status"].get("phase")
                in ("Succeeded", "Failed")
                and release.node.kubectl_json("-n", probe_ns, "get", "pod", "probe")["status"]["phase"]
            ),
            120,
        )
        logs = release.node.kubectl("-n", probe_ns, "logs", "probe")
        refused = (
            f"the probe was refused ({phase}: {logs.strip()}): this CNI enforces NetworkPolicy now — "
            "update docs/kubernetes.md and turn this test into an enforcement test"
        )
        assert phase == "Succeeded", refused
        assert logs.strip() == "200", refused
    finally:
        release.node.kubectl("delete", "namespace", probe_ns, "--wait=false", check=False)
        release.node.helm(
            *install_args(
                release.name, release.namespace, "--reuse-values", "--set", "networkPolicy.enabled=false"
            )
        )
