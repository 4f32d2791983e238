#!/usr/bin/env python3
"""A local Kubernetes control plane for tests/control_plane/: ``build``, ``up``, ``down``, ``status``.

Five real processes on 127.0.0.1, no containers: etcd, kube-apiserver (RBAC + Node authorization,
PodSecurity and NodeRestriction admission), kube-controller-manager, kube-scheduler and kwok, which plays
the kubelet of K8S_API_NODES fake nodes (default 3) so that Deployments roll out and become Available.
Binaries are built once by tools/k8s/build.sh (versions in tools/k8s/versions) and kept per user outside
the clone; certificates, etcd data, logs, pid files and the admin kubeconfig live in .cache/k8s-api/.

Ports: kube-apiserver on K8S_API_PORT (default KAFKA_PORT + 10, so that worktrees with their own Kafka
port get their own control plane); etcd client and peer on +1 and +2; the controller manager's and
the scheduler's health endpoints on +3 and +4.

``up`` is idempotent: components already running are left alone, missing ones are started, and it
returns once the API is ready and every fake node is Ready without the not-ready taint (cleared by the
node lifecycle controller). ``down`` stops what ``up`` started (``--purge`` also deletes etcd's data).
``build --timeout S`` gives up after S seconds with exit code 124 (the next build resumes from Go's cache).
Only the standard library and the ``openssl`` command are used.

Node mode (``K8S_API_NODE_IP``, set by k8s_node.py for a real kubelet): the API server listens on
every address and advertises the node's IP, so that pods reach it through the ``kubernetes`` Service (its
endpoints come from the lease reconciler), it authenticates to the kubelet with a client certificate and
verifies the kubelet's serving certificate against the same CA, and the PKI also holds the kubelet's and
kube-proxy's certificates. ``K8S_API_NODES=0`` then starts no kwok and creates no fake node.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from login_devtools import ROOT

TOOLS = ROOT / "tools" / "k8s"
STATE = Path(os.environ.get("K8S_API_DIR", ROOT / ".cache" / "k8s-api"))
BIN = STATE / "bin"
PKI = STATE / "pki"
LOGS = STATE / "logs"
RUN = STATE / "run"
KUBECONFIG = STATE / "kubeconfig"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
BUILD_TIMEOUT_EXIT = 124


class ControlPlaneError(Exception):
    pass


def versions() -> dict[str, str]:
    """KEY=VALUE lines of tools/k8s/versions."""
    pairs = {}
    for raw in (TOOLS / "versions").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65530:
        raise ControlPlaneError(f"{name}={raw!r}: must be a port number 1-65529")
    return int(raw)


def api_port() -> int:
    return _env_port("K8S_API_PORT", _env_port("KAFKA_PORT", 9092) + 10)


def node_count() -> int:
    raw = os.environ.get("K8S_API_NODES", "3")
    if not raw.isdigit() or not 0 <= int(raw) <= 20:
        raise ControlPlaneError(f"K8S_API_NODES={raw!r}: must be a number of fake nodes, 0-20")
    return int(raw)


def node_ip() -> str:
    """The real node's IP in node mode (k8s_node.py), else ''."""
    return os.environ.get("K8S_API_NODE_IP", "")


# node mode: the real node's name, fixed (one kubelet per machine); its certificates name it
NODE_NAME = os.environ.get("K8S_NODE_NAME", "login-stream-node")


def server() -> str:
    return f"https://127.0.0.1:{api_port()}"


# --- certificates (openssl) ---------------------------------------------------------------------------

CLIENTS = {
    # file name: (common name = user, organisation = group)
    "admin": ("login-stream-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", ""),
    "kube-scheduler": ("system:kube-scheduler", ""),
    "kwok": ("kwok-controller", "system:masters"),  # plays every node's kubelet
}
# node mode only: the kubelet (Node authorizer + NodeRestriction), kube-proxy (bound to
# system:node-proxier by the default RBAC policy) and the API server's client to the kubelets
NODE_CLIENTS = {
    "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
    "kube-proxy": ("system:kube-proxy", ""),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
}


def _openssl(*args: str) -> None:
    if not shutil.which("openssl"):
        raise ControlPlaneError("openssl not found: the control plane's certificates are made with it")
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False, timeout=60)
    if out.returncode:
        raise ControlPlaneError(f"openssl {args[0]} failed: {out.stderr.strip()[-500:]}")


def _sign(name: str, subject: str, ext: str, ca: str = "ca") -> None:
    key, csr, crt = PKI / f"{name}.key", PKI / f"{name}.csr", PKI / f"{name}.crt"
    _openssl("genrsa", "-out", str(key), "2048")
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    extfile = PKI / f"{name}.ext"
    extfile.write_text(ext)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(PKI / f"{ca}.crt"), "-CAkey", str(PKI / f"{ca}.key"),
        "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", str(extfile), "-out", str(crt),
    )  # fmt: skip
    csr.unlink()
    extfile.unlink()


FRONT_PROXY_CLIENT = "front-proxy-client"


def ensure_front_proxy() -> None:
    """Node mode: the aggregation layer's front proxy, so that API services (KEDA's metrics API server,
    external.metrics.k8s.io, read by the HPA controller) get requests they can authenticate. A CA of
    its own (not the client CA: a certificate it signs is trusted only to vouch for the X-Remote-*
    headers) and the API server's proxy client certificate, CN front-proxy-client. Made once, beside a
    PKI made before it existed."""
    if (PKI / f"{FRONT_PROXY_CLIENT}.crt").exists():
        return
    _openssl("genrsa", "-out", str(PKI / "front-proxy-ca.key"), "2048")
    _openssl(
        "req", "-x509", "-new", "-key", str(PKI / "front-proxy-ca.key"),
        "-subj", "/CN=login-stream-front-proxy-ca", "-days", "3650", "-sha256",
        "-out", str(PKI / "front-proxy-ca.crt"),
    )  # fmt: skip
    _sign(
        FRONT_PROXY_CLIENT,
        f"/CN={FRONT_PROXY_CLIENT}",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
        ca="front-proxy-ca",
    )


def ensure_pki() -> None:
    """A CA, the API server's serving certificate, one client certificate per component, the
    service-account signing key; in node mode also the front proxy's (``ensure_front_proxy``). Made
    once; a PKI without its last file is made again."""
    if (PKI / "done").exists():
        if node_ip():
            ensure_front_proxy()
        return
    shutil.rmtree(PKI, ignore_errors=True)
    PKI.mkdir(parents=True)
    _openssl("genrsa", "-out", str(PKI / "ca.key"), "2048")
    _openssl(
        "req", "-x509", "-new", "-key", str(PKI / "ca.key"), "-subj", "/CN=login-stream-k8s-api-ca",
        "-days", "3650", "-sha256", "-out", str(PKI / "ca.crt"),
    )  # fmt: skip
    names = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = ["127.0.0.1", "10.96.0.1", *([node_ip()] if node_ip() else [])]
    san = ",".join([*(f"IP:{ip}" for ip in ips), "DNS:localhost", *(f"DNS:{n}" for n in names)])
    _sign(
        "apiserver",
        "/CN=kube-apiserver",
        f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={san}\n",
    )
    clients = {**CLIENTS, **(NODE_CLIENTS if node_ip() else {})}
    for name, (user, group) in clients.items():
        subject = f"/CN={user}" + (f"/O={group}" if group else "")
        _sign(
            name,
            subject,
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
        )
    if node_ip():
        # the kubelet's serving certificate: the API server checks it (--kubelet-certificate-authority)
        # when it proxies logs, exec and port-forward to the node's InternalIP
        _sign(
            "kubelet-serving",
            f"/CN=system:node:{NODE_NAME}/O=system:nodes",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{node_ip()},DNS:{NODE_NAME}\n",
        )
        ensure_front_proxy()
    _openssl("genrsa", "-out", str(PKI / "sa.key"), "2048")
    _openssl("rsa", "-in", str(PKI / "sa.key"), "-pubout", "-out", str(PKI / "sa.pub"))
    (PKI / "done").write_text("ok\n")


def write_kubeconfig(path: Path, client: str, context: str = "login-stream-k8s-api") -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": context, "cluster": {"server": server(), "certificate-authority": str(PKI / "ca.crt")}}
        ],
        "users": [
            {
                "name": client,
                "user": {
                    "client-certificate": str(PKI / f"{client}.crt"),
                    "client-key": str(PKI / f"{client}.key"),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": client}}],
        "current-context": context,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")  # JSON is YAML: every client reads it


# --- talking to the API (standard library) ------------------------------------------------------------


def _admin_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    return ctx


def api(method: str, path: str, body: Any = None, timeout: float = 10.0, content_type: str = "") -> Any:
    """One request to kube-apiserver as the admin; the decoded JSON answer (or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server() + path, data=data, method=method)  # noqa: S310 - https only
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", content_type or "application/json")
    with urllib.request.urlopen(req, context=_admin_context(), timeout=timeout) as resp:  # noqa: S310
        raw = resp.read().decode()
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _get_ok(url: str, context: ssl.SSLContext | None = None, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError, ssl.SSLError):
        return False


def _insecure() -> ssl.SSLContext:
    # the controller manager's and scheduler's /healthz use self-signed certificates of their own
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- components ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    name: str
    args: Callable[[], list[str]]
    healthy: Callable[[], bool]
    address: Callable[[], str]

    @property
    def log(self) -> Path:
        return LOGS / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def args_file(self) -> Path:
        """The arguments it was started with: ``up`` restarts a running one whose arguments changed."""
        return RUN / f"{self.name}.args"


def _etcd_args() -> list[str]:
    p = api_port()
    return [
        "--name=login-stream",
        f"--data-dir={STATE / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{p + 1}",
        f"--advertise-client-urls=http://127.0.0.1:{p + 1}",
        f"--listen-peer-urls=http://127.0.0.1:{p + 2}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{p + 2}",
        f"--initial-cluster=login-stream=http://127.0.0.1:{p + 2}",
        "--unsafe-no-fsync=true",  # a throw-away test store: durability is not wanted, speed is
        "--quota-backend-bytes=1073741824",
        "--log-level=warn",
    ]


def _apiserver_args() -> list[str]:
    p = api_port()
    args = [
        f"--etcd-servers=http://127.0.0.1:{p + 1}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={p}",
        f"--tls-cert-file={PKI / 'apiserver.crt'}",
        f"--tls-private-key-file={PKI / 'apiserver.key'}",
        f"--client-ca-file={PKI / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction,PodSecurity",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={PKI / 'sa.pub'}",
        f"--service-account-signing-key-file={PKI / 'sa.key'}",
        "--endpoint-reconciler-type=none",  # 127.0.0.1 is no address for the kubernetes Service's endpoints
        "--allow-privileged=false",
        "--profiling=false",
        "--v=1",
    ]
    if not node_ip():
        return args
    # node mode: reachable from pods (KUBE-FIREWALL drops pod traffic to 127/8), the kubernetes Service's
    # endpoint is the node's IP, and the API server talks to the kubelet with certificates both ways
    node_args = {
        "--bind-address": "0.0.0.0",  # noqa: S104 - pods connect through the node's IP
        "--advertise-address": node_ip(),
        "--endpoint-reconciler-type": "lease",
        "--kubelet-client-certificate": str(PKI / "apiserver-kubelet-client.crt"),
        "--kubelet-client-key": str(PKI / "apiserver-kubelet-client.key"),
        "--kubelet-certificate-authority": str(PKI / "ca.crt"),
        "--kubelet-preferred-address-types": "InternalIP,Hostname",
        # the aggregation layer (ensure_front_proxy): the API server forwards requests for API services
        # with its proxy client certificate and the caller in X-Remote-* headers, which the service
        # trusts through kube-system/extension-apiserver-authentication; without it KEDA's metrics API
        # server answers 403 and the HPA KEDA makes never gets a metric (FailedGetExternalMetric)
        "--requestheader-client-ca-file": str(PKI / "front-proxy-ca.crt"),
        "--requestheader-allowed-names": FRONT_PROXY_CLIENT,
        "--requestheader-username-headers": "X-Remote-User",
        "--requestheader-group-headers": "X-Remote-Group",
        "--requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "--proxy-client-cert-file": str(PKI / f"{FRONT_PROXY_CLIENT}.crt"),
        "--proxy-client-key-file": str(PKI / f"{FRONT_PROXY_CLIENT}.key"),
    }
    kept = [a for a in args if a.split("=", 1)[0] not in node_args]
    return kept + [f"{key}={value}" for key, value in node_args.items()]


def _component_kubeconfig(name: str) -> Path:
    path = STATE / f"{name}.kubeconfig"
    write_kubeconfig(path, name)
    return path


def _controller_manager_args() -> list[str]:
    kc = _component_kubeconfig("kube-controller-manager")
    return [
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={api_port() + 3}",
        f"--cert-dir={STATE / 'controller-manager-certs'}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",  # each controller acts as its own ServiceAccount
        f"--service-account-private-key-file={PKI / 'sa.key'}",
        f"--root-ca-file={PKI / 'ca.crt'}",
        f"--cluster-signing-cert-file={PKI / 'ca.crt'}",
        f"--cluster-signing-key-file={PKI / 'ca.key'}",
        "--controllers=*",
        "--node-monitor-grace-period=40s",
        "--v=1",
    ]


def _scheduler_args() -> list[str]:
    kc = _component_kubeconfig("kube-scheduler")
    return [
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={api_port() + 4}",
        f"--cert-dir={STATE / 'scheduler-certs'}",
        "--leader-elect=false",
        "--v=1",
    ]


def _kwok_args() -> list[str]:
    kc = _component_kubeconfig("kwok")
    config = STATE / "kwok.yaml"
    config.write_text("")  # an explicit (empty) config: a user's ~/.kwok/kwok.yaml does not leak in
    return [
        f"--config={config}",
        f"--kubeconfig={kc}",
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION[0]}={KWOK_ANNOTATION[1]}",
        f"--cidr={POD_CIDR.replace('0.0/16', '0.1/16')}",
        "--node-ip=127.0.0.1",
        "--node-lease-duration-seconds=40",
    ]


def _api_ready() -> bool:
    try:
        return _get_ok(server() + "/readyz", _admin_context())
    except (OSError, ssl.SSLError):
        return False


def _kwok_alive() -> bool:
    return running(COMPONENTS[-1]) is not None


def components() -> list[Component]:
    """What ``up`` starts: kwok only when there are fake nodes to play."""
    return COMPONENTS if node_count() else COMPONENTS[:-1]


COMPONENTS = [
    Component(
        "etcd",
        _etcd_args,
        lambda: _get_ok(f"http://127.0.0.1:{api_port() + 1}/health"),
        lambda: f"http://127.0.0.1:{api_port() + 1}",
    ),
    Component("kube-apiserver", _apiserver_args, _api_ready, server),
    Component(
        "kube-controller-manager",
        _controller_manager_args,
        lambda: _get_ok(f"https://127.0.0.1:{api_port() + 3}/healthz", _insecure()),
        lambda: f"https://127.0.0.1:{api_port() + 3}/healthz",
    ),
    Component(
        "kube-scheduler",
        _scheduler_args,
        lambda: _get_ok(f"https://127.0.0.1:{api_port() + 4}/healthz", _insecure()),
        lambda: f"https://127.0.0.1:{api_port() + 4}/healthz",
    ),
    Component("kwok", _kwok_args, _kwok_alive, lambda: f"{node_count()} fake nodes"),
]


def running(component: Component) -> int | None:
    """The pid of ``component`` when the process that ``up`` started is still alive; else None."""
    try:
        pid = int(component.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    # the pid must still be our binary (a pid may be reused after a reboot)
    exe = os.fsencode(str(BIN / component.name))
    return pid if cmdline and cmdline[0] == exe else None


def build(timeout: float | None = None) -> None:
    # its own process group, so that a timeout (or Ctrl-C) stops the go commands it started too
    proc = subprocess.Popen(["bash", str(TOOLS / "build.sh"), str(BIN)], start_new_session=True)
    try:
        returncode = proc.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        print(
            f"k8s-api: build stopped after {timeout}s; the next build resumes from Go's cache",
            file=sys.stderr,
        )
        raise SystemExit(BUILD_TIMEOUT_EXIT) from exc
    if returncode:
        raise ControlPlaneError(
            f"building the control plane failed (exit {returncode}): see the output above"
        )


def built() -> bool:
    """True when every binary is linked into BIN; links the per-user cached ones first (a fresh clone
    finds the binaries another clone built), compiling nothing."""
    if all(os.access(BIN / c.name, os.X_OK) for c in COMPONENTS):
        return True
    cmd = ["bash", str(TOOLS / "build.sh"), "--link-only", str(BIN)]
    linked = subprocess.run(cmd, capture_output=True, check=False, timeout=60)
    return linked.returncode == 0 and all(os.access(BIN / c.name, os.X_OK) for c in COMPONENTS)


def _start(component: Component, timeout: float) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    with component.log.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {component.name}\n".encode())
        proc = subprocess.Popen(
            [str(BIN / component.name), *component.args()],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=STATE,
            start_new_session=True,  # outlives `make k8s-api-up`; stopped by `down`
        )
    component.pid_file.write_text(f"{proc.pid}\n")
    component.args_file.write_text("\n".join(component.args()) + "\n")
    deadline = time.monotonic() + timeout
    while not component.healthy():
        if proc.poll() is not None:
            raise ControlPlaneError(
                f"{component.name} exited with code {proc.returncode}; its log: {component.log}\n"
                + _tail(component.log)
            )
        if time.monotonic() > deadline:
            raise ControlPlaneError(
                f"{component.name} not healthy after {timeout:.0f}s; its log: {component.log}"
            )
        time.sleep(0.5)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
        },
    }


def node_names() -> list[str]:
    return [f"kwok-node-{i}" for i in range(node_count())]


def nodes_ready() -> list[str]:
    """Names of the fake nodes that are Ready and no longer carry the not-ready taint."""
    ready = []
    for node in api("GET", "/api/v1/nodes")["items"]:
        conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        taints = {t["key"] for t in node.get("spec", {}).get("taints", [])}
        if conditions.get("Ready") == "True" and NOT_READY_TAINT not in taints:
            ready.append(node["metadata"]["name"])
    return ready


def ensure_nodes(timeout: float) -> None:
    existing = {n["metadata"]["name"] for n in api("GET", "/api/v1/nodes")["items"]}
    for name in node_names():
        if name not in existing:
            api("POST", "/api/v1/nodes", _node(name))
    deadline = time.monotonic() + timeout
    while not set(node_names()) <= set(nodes_ready()):
        if time.monotonic() > deadline:
            raise ControlPlaneError(
                f"fake nodes not Ready and untainted after {timeout:.0f}s (ready: {nodes_ready()}); "
                f"logs: {LOGS}/kwok.log, {LOGS}/kube-controller-manager.log"
            )
        time.sleep(1)


def up(timeout: float) -> None:
    api_port(), node_count()  # bad settings fail here, naming the variable, before any work
    if not built():
        build()
    ensure_pki()
    write_kubeconfig(KUBECONFIG, "admin")
    deadline = time.monotonic() + timeout
    for component in components():
        if (pid := running(component)) is not None:
            started_with = component.args_file.read_text() if component.args_file.exists() else None
            if started_with in (None, "\n".join(component.args()) + "\n"):
                continue  # (None: started before the arguments were recorded)
            print(f"k8s-api: {component.name}'s arguments changed: restarting it", flush=True)
            _stop_pid(pid, 15.0)
        remaining = max(deadline - time.monotonic(), 5.0)
        print(f"k8s-api: starting {component.name} (log: {component.log})", flush=True)
        _start(component, remaining)
    ensure_nodes(max(deadline - time.monotonic(), 30.0))
    info = api("GET", "/version")
    nodes = f"{node_count()} fake nodes Ready" if node_count() else "no fake nodes"
    print(f"k8s-api: Kubernetes {info['gitVersion']} at {server()}, {nodes}")
    print(f"k8s-api: export KUBECONFIG={KUBECONFIG}")


def _stop_pid(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def down(purge: bool) -> None:
    for component in reversed(COMPONENTS):
        pid = running(component)
        if pid is not None:
            print(f"k8s-api: stopping {component.name} (pid {pid})")
            _stop_pid(pid, 15.0)
        component.pid_file.unlink(missing_ok=True)
        component.args_file.unlink(missing_ok=True)
    if purge:
        shutil.rmtree(STATE / "etcd", ignore_errors=True)
        print("k8s-api: etcd data deleted")


def status() -> bool:
    all_up = True
    print(
        f"k8s-api: state {STATE}, binaries {BIN} ({'built' if built() else 'not built: make k8s-api-build'})"
    )
    for component in components():
        pid = running(component)
        state = f"running (pid {pid})" if pid is not None else "stopped"
        all_up &= pid is not None
        print(f"  {component.name:24} {state:22} {component.address():40} log: {component.log}")
    if all_up:
        print(f"  nodes Ready: {', '.join(nodes_ready()) or 'none'}")
    print(f"  kubeconfig: {KUBECONFIG}")
    return all_up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build (or find cached) binaries")
    b.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 124)")
    u = sub.add_parser("up", help="start every component that is not running; wait until nodes are Ready")
    u.add_argument("--timeout", type=float, default=180.0)
    d = sub.add_parser("down", help="stop the components")
    d.add_argument("--purge", action="store_true", help="also delete etcd's data")
    sub.add_parser("status", help="which components run, their addresses and logs")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig's path")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build(args.timeout)
        elif args.command == "up":
            up(args.timeout)
        elif args.command == "down":
            down(args.purge)
        elif args.command == "status":
            return 0 if status() else 1
        elif args.command == "kubeconfig":
            print(KUBECONFIG)
    except ControlPlaneError as exc:
        print(f"k8s-api: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
