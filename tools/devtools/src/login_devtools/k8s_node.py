#!/usr/bin/env python3
"""A real Kubernetes node on this machine: ``up``, ``down``, ``status`` (make k8s-node-up/-down/-status).

kind needs ``docker run --privileged``, which this kind of machine refuses; a kubelet on the host does
not. ``up`` starts, in order, each step idempotent:

1. the control plane of k8s_api.py in *node mode* (its own state in .cache/k8s-node/api, port
   K8S_NODE_API_PORT, default 6443; no kwok: the only node is this one);
2. a bridge ``lsnode0`` holding the node's IP (K8S_NODE_IP, default 10.250.0.1/32). The kubelet refuses a
   loopback node IP and ``dummy`` links are not supported here; an empty bridge with a /32 works, and
   pods reach the API server there (kube-proxy's KUBE-FIREWALL drops pod traffic to 127/8);
3. containerd from Debian with a config of its own (``containerd.toml`` in the state folder, root under
   .cache/k8s-node, socket under /run/login-stream-node): ``restrict_oom_score_adj = true`` because this
   machine's bounding set lacks CAP_SYS_RESOURCE and runc otherwise fails writing ``oom_score_adj``
   (``can't get final child's PID from pipe: EOF``); the cgroupfs driver (no systemd here); CNI from
   Debian's plugins (bridge ``lspods0`` + host-local 10.244.0.0/24 + portmap + loopback); the pause image
   imported from an OCI archive (no registry needed, none is reachable);
4. the kubelet: cgroups are v1 here, so ``failCgroupV1: false``; ``cgroupDriver: cgroupfs`` like
   containerd; ``failSwapOn: false``, ``localStorageCapacityIsolation: false`` (no quota on the root
   filesystem of a sandbox), ``protectKernelDefaults: false`` and ``evictionHard: {}`` (a shared test
   machine's disk and memory are not the node's to defend); webhook authentication and authorization (no
   anonymous access), a client certificate ``system:node:<name>`` and a serving certificate signed by the
   control plane's CA, so ``kubectl logs``, ``exec`` and ``port-forward`` work through the API server;
5. kube-proxy (iptables mode), so Services and ClusterIPs work; CoreDNS (built from its Go module) as a
   Deployment behind 10.96.0.10, so ``*.svc.cluster.local`` resolves in pods; a default StorageClass with
   statically provisioned local PersistentVolumes (documented in docs/kubernetes.md: no provisioner runs).

One kubelet per machine: cgroup roots, iptables and sysctls are global. ``up`` records the owner in
/run/login-stream-node/owner.json, and refuses while another clone's node runs. ``down`` stops every
process it started (by PID, and the container shims of its containerd), unmounts what lies under its
folders, deletes the pods' network namespaces, both bridges, the KUBE-*/CNI-* iptables chains and the
kubepods cgroups, and puts back the sysctls it changed (the kubelet sets kernel.panic,
kernel.panic_on_oops and vm.overcommit_memory; the bridge plugin ip_forward). A second ``up`` after a
``down`` starts clean.

Only the standard library, the control plane script and the commands ip, iptables(-save/-restore),
containerd, ctr and openssl are used; images come from the project's builder, tools/images (see ``IMAGES``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from login_devtools import ROOT

NODE_DIR = Path(os.environ.get("K8S_NODE_DIR", ROOT / ".cache" / "k8s-node"))
RUNTIME = Path(os.environ.get("K8S_NODE_RUNTIME", "/run/login-stream-node"))
OWNER = RUNTIME / "owner.json"
NODE_CIDR = os.environ.get("K8S_NODE_IP", "10.250.0.1/32")
NODE_IP = NODE_CIDR.split("/")[0]
NODE_BRIDGE = "lsnode0"
POD_BRIDGE = "lspods0"
POD_SUBNET = "10.244.0.0/24"
CLUSTER_DNS = "10.96.0.10"
CNI_BIN = Path(os.environ.get("CNI_BIN_DIR", "/usr/lib/cni"))

# the control plane in node mode, with a state of its own (tests/control_plane keeps its per-port one)
os.environ.setdefault("K8S_API_DIR", str(NODE_DIR / "api"))
os.environ.setdefault("K8S_API_PORT", os.environ.get("K8S_NODE_API_PORT", "6443"))
os.environ["K8S_API_NODES"] = "0"
os.environ["K8S_API_NODE_IP"] = NODE_IP

from login_devtools import k8s_api  # noqa: E402 - reads the environment above at import

NODE_NAME = k8s_api.NODE_NAME
PKI = k8s_api.PKI
CONTAINERD_DIR = NODE_DIR / "containerd"
CONTAINERD_SOCK = RUNTIME / "containerd.sock"
KUBELET_DIR = NODE_DIR / "kubelet"
CNI_CONF = NODE_DIR / "cni"
LOGS = NODE_DIR / "logs"
RUN = NODE_DIR / "run"
SYSCTL_RECORD = NODE_DIR / "sysctls.json"
PV_DIR = NODE_DIR / "volumes"
PV_COUNT = 8
# sysctls the kubelet (kernel.*, vm.*), kube-proxy and the CNI bridge plugin change; `down` restores them
SYSCTLS = (
    "kernel/panic",
    "kernel/panic_on_oops",
    "vm/overcommit_memory",
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/ipv4/conf/all/route_localnet",
)
IPTABLES_PREFIXES = ("KUBE-", "CNI-")
NEEDS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "ip": "iproute2",
    "iptables": "iptables",
    "iptables-save": "iptables",
    "conntrack": "conntrack",
    "openssl": "openssl",
}


class NodeError(Exception):
    pass


# --- helpers ------------------------------------------------------------------------------------------


def _run(*cmd: str, check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(cmd), capture_output=True, text=True, check=False, timeout=timeout, **kw)
    if check and out.returncode:
        raise NodeError(
            f"{' '.join(cmd)} failed ({out.returncode}): {(out.stderr or out.stdout).strip()[-600:]}"
        )
    return out


def preflight() -> None:
    """One message naming everything missing, before any change to the machine."""
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root: a kubelet manages cgroups, mounts, network namespaces and iptables")
    missing = sorted({pkg for cmd, pkg in NEEDS.items() if not shutil.which(cmd)})
    if not (CNI_BIN / "bridge").exists():
        missing.append("containernetworking-plugins")
    if missing:
        problems.append(f"missing packages: apt-get install -y {' '.join(sorted(set(missing)))}")
    if problems:
        raise NodeError("the real node cannot start here:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Process:
    name: str
    binary: Callable[[], Path]
    args: Callable[[], list[str]]

    @property
    def pid_file(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return LOGS / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ValueError, IndexError):
            return None
        return pid if exe == os.fsencode(str(self.binary())) else None

    def start(self) -> int:
        if (pid := self.pid()) is not None:
            return pid
        LOGS.mkdir(parents=True, exist_ok=True)
        RUN.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self.name}\n".encode())
            proc = subprocess.Popen(
                [str(self.binary()), *self.args()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=NODE_DIR,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def alive_or_fail(self) -> None:
        if self.pid() is None:
            raise NodeError(f"{self.name} exited; its log: {self.log}\n{k8s_api._tail(self.log)}")


def _wait(what: str, probe: Callable[[], bool], timeout: float, process: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if process is not None:
            process.alive_or_fail()
        if time.monotonic() > deadline:
            hint = f"; log: {process.log}" if process else ""
            raise NodeError(f"{what} not ready after {timeout:.0f}s{hint}")
        time.sleep(0.5)


def _node_bin(name: str) -> Path:
    return k8s_api.BIN / name


# --- the machine's state: sysctls, links, iptables, mounts, cgroups -----------------------------------


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key


def record_sysctls() -> None:
    """What the node will change, as it was before (kept across up/up: the first record wins)."""
    if SYSCTL_RECORD.exists():
        return
    values = {k: _sysctl_path(k).read_text().strip() for k in SYSCTLS if _sysctl_path(k).exists()}
    SYSCTL_RECORD.write_text(json.dumps(values, indent=2) + "\n")


def restore_sysctls() -> None:
    if not SYSCTL_RECORD.exists():
        return
    for key, value in json.loads(SYSCTL_RECORD.read_text()).items():
        try:
            _sysctl_path(key).write_text(value + "\n")
        except OSError as exc:
            print(f"k8s-node: could not restore {key}={value}: {exc}", file=sys.stderr)
    SYSCTL_RECORD.unlink()


def _link_exists(name: str) -> bool:
    return _run("ip", "link", "show", name, check=False).returncode == 0


def ensure_node_bridge() -> None:
    if not _link_exists(NODE_BRIDGE):
        _run("ip", "link", "add", NODE_BRIDGE, "type", "bridge")
    if NODE_IP not in _run("ip", "-4", "addr", "show", NODE_BRIDGE).stdout:
        _run("ip", "addr", "add", NODE_CIDR, "dev", NODE_BRIDGE)
    _run("ip", "link", "set", NODE_BRIDGE, "up")
    # pods talk to Services on their own bridge: without bridge netfilter, a reply from a pod on the
    # same bridge would skip the DNAT's reverse translation (kube-proxy's documented requirement)
    _sysctl_path("net/bridge/bridge-nf-call-iptables").write_text("1\n")


def delete_links() -> None:
    for name in (POD_BRIDGE, NODE_BRIDGE):
        if _link_exists(name):
            _run("ip", "link", "delete", name, check=False)


def remove_iptables_chains() -> list[str]:
    """Drop every KUBE-*/CNI-* chain and every rule that jumps to one, table by table, atomically per table
    (iptables-restore of the table without them); other rules on the machine stay as they are."""
    removed = []
    for save, restore in (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore")):
        if not shutil.which(save):
            continue
        for table in ("filter", "nat", "mangle", "raw"):
            dump = _run(save, "-t", table, check=False).stdout
            if not any(p in dump for p in IPTABLES_PREFIXES):
                continue
            kept = []
            for line in dump.splitlines():
                ours = line.startswith((":KUBE-", ":CNI-", "-A KUBE-", "-A CNI-")) or any(
                    f"-j {p}" in line or f"-g {p}" in line for p in IPTABLES_PREFIXES
                )
                if ours:
                    removed.append(f"{table}: {line}")
                else:
                    kept.append(line)
            _run(restore, "-T", table, input="\n".join(kept) + "\n", check=False)
    return removed


def _mounts_under(*roots: Path) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(r) or point.startswith(str(r) + "/") for r in roots):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)  # deepest first


def unmount_all(*roots: Path) -> int:
    count = 0
    for _ in range(3):  # stacked mounts need more than one pass
        points = _mounts_under(*roots)
        if not points:
            break
        for point in points:
            if _run("umount", point, check=False).returncode:
                _run("umount", "-l", point, check=False)
            count += 1
    return count


def delete_netns() -> list[str]:
    """The pods' network namespaces (CNI names them cni-<uuid>; only this node makes them here)."""
    gone = []
    netns = Path("/run/netns")
    for entry in sorted(netns.glob("cni-*")) if netns.is_dir() else []:
        _run("umount", str(entry), check=False)
        entry.unlink(missing_ok=True)
        gone.append(entry.name)
    return gone


def remove_cgroups() -> int:
    """The kubelet's cgroup tree (``kubepods`` and its QoS children) in every v1 hierarchy."""
    removed = 0
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / "kubepods"
        if not top.is_dir():
            continue
        for path in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            try:
                path.rmdir()
                removed += 1
            except OSError:
                pass
        try:
            top.rmdir()
            removed += 1
        except OSError as exc:
            print(f"k8s-node: could not remove {top}: {exc}", file=sys.stderr)
    return removed


# --- configuration files ------------------------------------------------------------------------------


def write_containerd_config() -> Path:
    """containerd's own config: nothing system-wide (/etc/containerd stays untouched)."""
    path = CONTAINERD_DIR / "config.toml"
    CONTAINERD_DIR.mkdir(parents=True, exist_ok=True)
    RUNTIME.mkdir(parents=True, exist_ok=True)
    CNI_CONF.mkdir(parents=True, exist_ok=True)
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    path.write_text(
        f"""# written by k8s_node.py: the real node's containerd (see its docstring)
version = 2
root = "{CONTAINERD_DIR / "root"}"
state = "{RUNTIME / "containerd-state"}"
[grpc]
  address = "{CONTAINERD_SOCK}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{CONTAINERD_DIR / "opt"}"
{cri}
  sandbox_image = "{IMAGES["pause"]}"
  # no CAP_SYS_RESOURCE here: runc must not lower oom_score_adj below containerd's own
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  max_container_log_line_size = 16384
{cri[:-1]}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
{cri[:-1]}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
{cri[:-1]}.containerd.runtimes.runc.options]
  SystemdCgroup = false
{cri[:-1]}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{CNI_CONF}"
"""
    )
    (CNI_CONF / "10-login-stream.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "login-stream",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": POD_BRIDGE,
                        "isGateway": True,
                        "ipMasq": True,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": POD_SUBNET}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": str(NODE_DIR / "cni-ipam"),
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
            indent=2,
        )
        + "\n"
    )
    return path


def write_kubelet_config() -> Path:
    KUBELET_DIR.mkdir(parents=True, exist_ok=True)
    k8s_api.write_kubeconfig(NODE_DIR / "kubelet.kubeconfig", "kubelet")
    resolv = NODE_DIR / "resolv.conf"
    shutil.copyfile("/etc/resolv.conf", resolv)  # pods' upstream resolvers: the host's, read once
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(PKI / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(PKI / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(PKI / "kubelet-serving.key"),
        "address": NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCK}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,  # this machine has cgroup v1 (hybrid); 1.35+ refuses v1 unless told
        "failSwapOn": False,
        "localStorageCapacityIsolation": False,
        "protectKernelDefaults": False,
        "evictionHard": {},
        "clusterDNS": [CLUSTER_DNS],
        "clusterDomain": "cluster.local",
        "resolvConf": str(resolv),
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,  # images arrive by import, never by pull: keep them
        "imageGCLowThresholdPercent": 99,
        "maxPods": 110,
        "podPidsLimit": 4096,
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "shutdownGracePeriod": "0s",
    }
    path = NODE_DIR / "kubelet.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def write_kube_proxy_config() -> Path:
    k8s_api.write_kubeconfig(NODE_DIR / "kube-proxy.kubeconfig", "kube-proxy")
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(NODE_DIR / "kube-proxy.kubeconfig")},
        "mode": "iptables",
        "clusterCIDR": "10.244.0.0/16",
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # NodePorts on the node's IP only: on 127.0.0.1 kube-proxy would set route_localnet
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # leave the machine's conntrack table size alone (0 = do not touch the sysctls)
        "conntrack": {"maxPerCore": 0, "min": 0},
    }
    path = NODE_DIR / "kube-proxy.yaml"
    text = json.dumps(config, indent=2) + "\n"
    # kube-proxy watches its configuration file and exits when it is written at all ("content of the
    # proxy server's configuration file was updated"): a second `up` must leave an unchanged one alone
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


CONTAINERD = Process(
    "containerd",
    lambda: Path(shutil.which("containerd") or "/usr/bin/containerd"),
    lambda: ["--config", str(CONTAINERD_DIR / "config.toml")],
)
KUBELET = Process(
    "kubelet",
    lambda: _node_bin("kubelet"),
    lambda: [
        f"--config={NODE_DIR / 'kubelet.yaml'}",
        f"--kubeconfig={NODE_DIR / 'kubelet.kubeconfig'}",
        f"--root-dir={KUBELET_DIR}",
        f"--cert-dir={NODE_DIR / 'kubelet-pki'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={NODE_IP}",
        "--node-labels=login-stream.dev/node=real",
        "--v=1",
    ],
)
KUBE_PROXY = Process(
    "kube-proxy",
    lambda: _node_bin("kube-proxy"),
    lambda: [f"--config={NODE_DIR / 'kube-proxy.yaml'}", "--v=1"],
)
PROCESSES = (CONTAINERD, KUBELET, KUBE_PROXY)


# --- images: OCI archives imported into the node's containerd (no registry is needed) -----------------

VERSIONS = k8s_api.versions()
# named localhost/<name>: the local-image convention (a short name would be looked up under the
# default registry); none is ever asked, the kubelet finds them imported (pullPolicy Never)
IMAGES = {
    "pause": f"localhost/pause:{VERSIONS['PAUSE_VERSION']}",
    "coredns": f"localhost/coredns:{VERSIONS['COREDNS_VERSION']}",
}
IMAGE_DIR = NODE_DIR / "images"


def ctr(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(
        "ctr", "--address", str(CONTAINERD_SOCK), "--namespace", "k8s.io", *args, timeout=timeout, check=check
    )


def image_present(ref: str) -> bool:
    return ref in ctr("images", "list", "--quiet", check=False).stdout.split()


def import_archive(archive: Path) -> None:
    ctr("images", "import", "--no-unpack=false", str(archive), timeout=900)


def node_images() -> dict[str, Path]:
    """The node's own images (pause, CoreDNS) as OCI archives: binaries that tools/k8s/build.sh compiled
    (pause.c of the pinned kubernetes module, CoreDNS), packed by the project's image builder
    (tools/images) from the specs in k8s/node/images/."""
    out = {}
    for name, ref in IMAGES.items():
        archive = IMAGE_DIR / f"{name}.oci.tar"
        if not archive.exists():
            IMAGE_DIR.mkdir(parents=True, exist_ok=True)
            binary = _node_bin(name).resolve()
            if not binary.exists():
                raise NodeError(f"{binary} missing: run `make k8s-api-build` (it builds the node's binaries)")
            spec = ROOT / "k8s" / "node" / "images" / f"{name}.toml"
            cmd = [
                "--spec",
                str(spec),
                "--context",
                str(binary.parent),
                "--name",
                ref,
                "--output",
                str(archive),
            ]
            _run(sys.executable, "-m", "login_images", "build", *cmd, timeout=600, env=IMAGE_BUILDER_ENV)
        out[name] = archive
    return out


IMAGE_BUILDER_ENV = {**os.environ, "PYTHONPATH": str(ROOT / "tools" / "images" / "src")}


def ensure_images(extra: list[Path] | None = None) -> list[str]:
    imported = []
    for name, archive in node_images().items():
        if not image_present(IMAGES[name]):
            import_archive(archive)
            imported.append(IMAGES[name])
    for archive in extra or []:
        import_archive(archive)
        imported.append(archive.name)
    return imported


# --- cluster add-ons: DNS, storage ---------------------------------------------------------------------


def kubectl(*args: str, stdin: str | None = None, timeout: float = 120) -> str:
    cmd = ["kubectl", f"--kubeconfig={k8s_api.KUBECONFIG}", *args]
    return _run(*cmd, input=stdin, timeout=timeout).stdout


def apply_addons() -> None:
    coredns = (
        (ROOT / "k8s" / "node" / "coredns.yaml").read_text().replace("@COREDNS_IMAGE@", IMAGES["coredns"])
    )
    kubectl("apply", "--server-side", "--field-manager=login-stream-node", "-f", "-", stdin=coredns)
    kubectl(
        "apply",
        "--server-side",
        "--field-manager=login-stream-node",
        "-f",
        str(ROOT / "k8s" / "node" / "storage.yaml"),
    )
    volumes = []
    count = int(os.environ.get("K8S_NODE_VOLUMES", PV_COUNT))
    for i in range(count):
        path = PV_DIR / f"pv{i}"
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # pods run as their own non-root users; fsGroup is not applied to local volumes
        volumes.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"local-pv{i}", "labels": {"login-stream.dev/node": "real"}},
                "spec": {
                    "capacity": {"storage": "20Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "local-static",
                    "local": {"path": str(path)},
                    "nodeAffinity": {
                        "required": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/hostname",
                                            "operator": "In",
                                            "values": [NODE_NAME],
                                        }
                                    ]
                                }
                            ]
                        }
                    },
                },
            }
        )
    kubectl("apply", "--server-side", "--field-manager=login-stream-node", "-f", "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": volumes}))  # fmt: skip
    recycle_released_volumes()


def recycle_released_volumes() -> None:
    """A Released volume (its claim deleted) is wiped and offered again: what a provisioner's Delete
    policy would do, for the static volumes of a throw-away test node."""
    listing = json.loads(kubectl("get", "pv", "-l", "login-stream.dev/node=real", "-o", "json"))
    for pv in listing["items"]:
        if pv.get("status", {}).get("phase") != "Released":
            continue
        path = Path(pv["spec"]["local"]["path"])
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        patch = json.dumps({"spec": {"claimRef": None}})
        kubectl("patch", "pv", pv["metadata"]["name"], "--type=merge", "-p", patch)


def node_ready() -> bool:
    try:
        node = k8s_api.api("GET", f"/api/v1/nodes/{NODE_NAME}")
    except Exception:  # noqa: BLE001 - not registered yet
        return False
    conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
    return conditions.get("Ready") == "True"


def dns_ready() -> bool:
    try:
        dep = k8s_api.api("GET", "/apis/apps/v1/namespaces/kube-system/deployments/coredns")
    except Exception:  # noqa: BLE001
        return False
    return int(dep.get("status", {}).get("readyReplicas", 0) or 0) >= 1


# --- up / down / status --------------------------------------------------------------------------------


NODE_BINARIES = ("kubelet", "kube-proxy", "pause", "coredns")


def built() -> bool:
    """True when the control plane's and the node's binaries are built (cached per user); links them,
    compiling nothing."""
    return k8s_api.built() and all(os.access(_node_bin(n), os.X_OK) for n in NODE_BINARIES)


def _owner() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(OWNER.read_text())
    except (OSError, ValueError):
        return None
    return data


def _claim_machine() -> None:
    if (other := _elsewhere()) is not None:
        raise NodeError(
            f"another node runs on this machine (state {other}): one kubelet per machine; "
            f"stop it there with `make k8s-node-down` first, or use it with K8S_NODE_DIR={other}"
        )
    RUNTIME.mkdir(parents=True, exist_ok=True)


def _write_owner() -> None:
    OWNER.write_text(
        json.dumps({"dir": str(NODE_DIR), "kubelet_pid": KUBELET.pid(), "root": str(ROOT)}) + "\n"
    )


def restart_if_changed(process: Process, config: Path) -> None:
    """A running process started with another version of ``config`` is stopped (``start`` follows)."""
    seen = RUN / f"{process.name}.config"
    if (pid := process.pid()) is not None and seen.exists() and seen.read_bytes() != config.read_bytes():
        print(f"k8s-node: {config.name} changed: restarting {process.name}", flush=True)
        k8s_api._stop_pid(pid, 20.0)
    RUN.mkdir(parents=True, exist_ok=True)
    seen.write_bytes(config.read_bytes())


def up(timeout: float) -> None:
    preflight()
    _claim_machine()
    started = time.monotonic()
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    record_sysctls()
    ensure_node_bridge()
    print(f"k8s-node: control plane (node mode) at {k8s_api.server()}", flush=True)
    k8s_api.up(timeout)
    write_containerd_config()
    print(f"k8s-node: containerd (socket {CONTAINERD_SOCK}, log {CONTAINERD.log})", flush=True)
    restart_if_changed(CONTAINERD, CONTAINERD_DIR / "config.toml")
    CONTAINERD.start()
    _wait("containerd", lambda: ctr("version", check=False).returncode == 0, 60, CONTAINERD)
    imported = ensure_images()
    if imported:
        print(f"k8s-node: imported {', '.join(imported)}", flush=True)
    write_kubelet_config()
    write_kube_proxy_config()
    print(f"k8s-node: kubelet (node {NODE_NAME} at {NODE_IP}, log {KUBELET.log})", flush=True)
    restart_if_changed(KUBELET, NODE_DIR / "kubelet.yaml")
    KUBELET.start()
    _write_owner()
    restart_if_changed(KUBE_PROXY, NODE_DIR / "kube-proxy.yaml")
    KUBE_PROXY.start()
    _wait(f"node {NODE_NAME} Ready", node_ready, timeout, KUBELET)
    KUBE_PROXY.alive_or_fail()
    apply_addons()
    _wait("CoreDNS", dns_ready, timeout, KUBELET)
    print(f"k8s-node: node {NODE_NAME} Ready, DNS and storage in place ({time.monotonic() - started:.0f}s)")
    print(f"k8s-node: export KUBECONFIG={k8s_api.KUBECONFIG}")


def _shims() -> list[int]:
    """containerd-shim processes of this node's containerd (they outlive it by design)."""
    pids = []
    needle = os.fsencode(str(CONTAINERD_SOCK))
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"/usr/bin/containerd-shim") and needle in cmdline:
            pids.append(int(proc.name))
    return pids


def down() -> None:
    for process in (KUBE_PROXY, KUBELET):
        if (pid := process.pid()) is not None:
            print(f"k8s-node: stopping {process.name} (pid {pid})")
            k8s_api._stop_pid(pid, 20.0)
        process.pid_file.unlink(missing_ok=True)
    # the pods: their containers die with their shims (which own them)
    if CONTAINERD.pid() is not None:
        for cid in ctr("tasks", "list", "--quiet", check=False).stdout.split():
            ctr("tasks", "kill", "--signal", "SIGKILL", cid, check=False)
    shims = _shims()
    for pid in shims:
        k8s_api._stop_pid(pid, 5.0)
    if (pid := CONTAINERD.pid()) is not None:
        print(f"k8s-node: stopping containerd (pid {pid}) and {len(shims)} container shims")
        k8s_api._stop_pid(pid, 20.0)
    CONTAINERD.pid_file.unlink(missing_ok=True)
    netns = delete_netns()
    mounts = unmount_all(KUBELET_DIR, CONTAINERD_DIR, RUNTIME)
    chains = remove_iptables_chains()
    cgroups = remove_cgroups()
    delete_links()
    restore_sysctls()
    print(
        f"k8s-node: removed {len(netns)} network namespaces, {mounts} mounts, {len(chains)} iptables "
        f"entries, {cgroups} cgroups, bridges {NODE_BRIDGE}/{POD_BRIDGE}; sysctls restored"
    )
    k8s_api.down(purge=True)
    shutil.rmtree(NODE_DIR / "cni-ipam", ignore_errors=True)
    OWNER.unlink(missing_ok=True)


def _elsewhere() -> str | None:
    """The state folder of a node another clone runs on this machine, if one does."""
    owner = _owner()
    if owner and owner.get("dir") != str(NODE_DIR):
        pid = owner.get("kubelet_pid")
        if pid and Path(f"/proc/{pid}").exists():
            return str(owner["dir"])
    return None


def status() -> bool:
    if (other := _elsewhere()) is not None:
        print(
            f"  the machine's node runs from another clone: K8S_NODE_DIR={other} "
            f"(kubeconfig {other}/api/kubeconfig); this clone's node is not started"
        )
    all_up = True
    for process in PROCESSES:
        pid = process.pid()
        all_up &= pid is not None
        state = f"running (pid {pid})" if pid else "stopped"
        print(f"  {process.name:12} {state:22} log: {process.log}")
    all_up &= k8s_api.status()
    if all_up:
        node = "Ready" if node_ready() else "NotReady"
        print(f"  node {NODE_NAME}: {node} at {NODE_IP}; DNS {'ready' if dns_ready() else 'not ready'}")
    return all_up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    u = sub.add_parser("up", help="start the control plane (node mode), containerd, kubelet, kube-proxy, DNS")
    u.add_argument("--timeout", type=float, default=240.0)
    sub.add_parser("down", help="stop everything `up` started and undo its changes to the machine")
    sub.add_parser("status", help="processes, node and DNS state")
    i = sub.add_parser("import", help="import OCI image archives into the node's containerd")
    i.add_argument("archives", nargs="+", type=Path)
    sub.add_parser("kubeconfig", help="print the admin kubeconfig's path")
    sub.add_parser("built", help="exit 0 when every binary is built (links them; builds nothing)")
    sub.add_parser("recycle", help="wipe the Released volumes and offer them again (what `up` does)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.timeout)
        elif args.command == "down":
            down()
        elif args.command == "status":
            return 0 if status() else 1
        elif args.command == "import":
            ensure_images(args.archives)
        elif args.command == "kubeconfig":
            print(k8s_api.KUBECONFIG)
        elif args.command == "built":
            return 0 if built() else 3
        elif args.command == "recycle":
            recycle_released_volumes()
    except (NodeError, k8s_api.ControlPlaneError) as exc:
        print(f"k8s-node: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
