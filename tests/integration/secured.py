"""The secured local broker (``KAFKA_SECURITY=sasl_ssl`` of login_devtools/local_kafka.py) for tests.

``tests/integration/conftest.py`` starts one per session (fixture ``secured_kafka``) on
KAFKA_SECURED_TEST_PORT when set (keep it inside your own port range), else on a free pair of ports, and
removes it afterwards. Users admin, producer and consumer (SCRAM-SHA-512) and their client certificates
(mutual TLS), StandardAuthorizer with the least-privilege ACLs of login_common.acls.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from login_devtools import kafka_security

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = [sys.executable, "-m", "login_devtools.local_kafka"]


def free_port_pair() -> int:
    """A port p with p and p+1 free (the broker and its controller)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = int(s.getsockname()[1])
        if p >= 65534:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 1))
        except OSError:
            continue
        return p
    raise RuntimeError("no free pair of ports")


@dataclass
class SecuredKafka:
    broker: kafka_security.SecureBroker
    env: dict[str, str]  # what `login_devtools/local_kafka.py` ran with (KAFKA_SECURITY, KAFKA_PORT)
    up_output: str = ""
    commands: Path | None = None  # every java, keytool and openssl command line the script started

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    def config(self, user: str, **extra: Any) -> dict[str, Any]:
        return {**self.broker.client_config(user), **extra}

    def service_env(self, user: str) -> dict[str, str]:
        """Settings overrides a service gets for ``user`` (a password file, as a Secret mounts it)."""
        env = self.broker.client_env(user)
        return {k.lower(): v for k, v in env.items()} | {"bootstrap_servers": self.bootstrap}

    def process_env(self, user: str, **extra: str) -> dict[str, str]:
        """The environment of a service process running as ``user``."""
        return {
            **os.environ,
            **self.broker.client_env(user),
            "BOOTSTRAP_SERVERS": self.bootstrap,
            **{k.upper(): v for k, v in extra.items()},
        }


def recording_tools(folder: Path) -> tuple[dict[str, str], Path]:
    """Environment overrides (JAVA_HOME, PATH) that route every java, keytool and openssl the script
    starts through wrappers logging their command lines, exactly as ``ps`` shows them, to a file."""
    log = folder / "commands.log"
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    java = Path(os.environ["JAVA_HOME"]) / "bin" / "java" if os.environ.get("JAVA_HOME") else None
    real_java = (java if java and java.exists() else Path(shutil.which("java") or "java")).resolve()
    tools = {"java": real_java, "keytool": real_java.parent / "keytool", "openssl": shutil.which("openssl")}
    for name, real in tools.items():
        if real is None:
            continue
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0 $*" >> "{log}"\nexec "{real}" "$@"\n')
        wrapper.chmod(0o755)
    env = {"JAVA_HOME": str(folder), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return env, log


@contextmanager
def secured_broker() -> Iterator[SecuredKafka]:
    raw = os.environ.get("KAFKA_SECURED_TEST_PORT", "")
    port = int(raw) if raw.isdigit() else free_port_pair()
    env = {**os.environ, "KAFKA_SECURITY": "sasl_ssl", "KAFKA_PORT": str(port), "BOOTSTRAP_SERVERS": ""}
    env.pop("KAFKA_METRICS_PORT", None)
    tools = Path(tempfile.mkdtemp(prefix="login-stream-tools-"))
    recorded, commands = recording_tools(tools)
    env.update(recorded)
    started = time.monotonic()
    cache = Path(os.environ.get("KAFKA_CACHE_DIR", ROOT / ".cache" / "kafka"))
    state = cache / f"broker-{port}-sasl_ssl"  # as login_devtools/local_kafka.py names it
    try:
        up = subprocess.run(
            [*SCRIPT, "up"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if up.returncode != 0:
            raise RuntimeError(f"the SASL_SSL broker did not start: {up.stderr.strip() or up.stdout.strip()}")
        print(f"SASL_SSL broker up in {time.monotonic() - started:.1f}s", file=sys.stderr)
        yield SecuredKafka(kafka_security.SecureBroker(state, port), env, up.stdout, commands)
    finally:
        down = [*SCRIPT, "down"]
        subprocess.run(down, env=env, capture_output=True, check=False, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(tools, ignore_errors=True)


@dataclass
class Names:
    input: str
    output: str
    dlq: str
    group: str


def wait_until_described(config: dict[str, Any], topics: list[str], timeout: float = 60.0) -> None:
    """The broker applies new ACLs from its metadata log a moment later: wait until the user sees them."""
    client = AdminClient(config)
    deadline = time.monotonic() + timeout
    for topic in topics:
        while True:
            found = client.list_topics(topic, timeout=10).topics.get(topic)
            if found is not None and found.error is None:
                break
            assert time.monotonic() < deadline, f"{config.get('sasl.username')} still cannot describe {topic}"
            time.sleep(0.2)
