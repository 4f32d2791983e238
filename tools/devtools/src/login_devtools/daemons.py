"""What the local daemons have in common: Prometheus, Alertmanager and Jaeger as child processes.

Each is a binary started on loopback with a configuration written into a work folder, its output in a log
there; it is usable once an HTTP readiness probe answers; it stops on SIGTERM (killed after 15 s). A
process that exits before it is ready fails with the tail of its log, in the module's own error class, so
that a test or ``make run`` says why rather than timing out. ``Daemon`` holds that run-time part once; each
module keeps what differs: where its binary comes from, its configuration, its probe and its API client.
``serve`` is the foreground mode of ``make prometheus``/``alertmanager``/``jaeger-run``: until Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar


def free_port(preferred: int = 0, host: str = "127.0.0.1") -> int:
    """``preferred`` when it can be bound on ``host`` (0: any; the services bind every interface, and
    probe with "0.0.0.0"), else a free port on 127.0.0.1 that the system picks."""
    with socket.socket() as s:
        try:
            s.bind((host, preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(argv: Sequence[str], log: Path, *, detach: bool) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output in ``log``; ``detach`` puts it in a session of its own, so that it
    outlives the caller (``make run``)."""
    out: IO[bytes]
    with open(log, "wb") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=detach,
        )


def get_json(url: str, error: type[RuntimeError], timeout: float = 5.0) -> Any:
    """GET ``url``; the decoded JSON, or ``error`` naming the URL and what went wrong (HTTP status and the
    start of the body, or the connection's or the decoder's complaint)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback, our own URL
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise error(f"{url}: HTTP {exc.code} {exc.read()[:200]!r}") from exc
    except (OSError, ValueError) as exc:
        raise error(f"{url}: {exc}") from exc


def answers(url: str) -> bool:
    """True when GET ``url`` answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback, our own URL
            return bool(resp.status == 200)
    except OSError:
        return False


@dataclass
class Daemon:
    """A running daemon: its process, base URL, work folder and log."""

    name: ClassVar[str] = "daemon"
    error: ClassVar[type[RuntimeError]] = RuntimeError

    process: subprocess.Popen[bytes]
    url: str
    workdir: Path
    log: Path

    def ready(self) -> bool:
        """The readiness probe: ``/-/ready`` (Prometheus' and Alertmanager's); Jaeger asks its API."""
        return answers(f"{self.url}/-/ready")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise self.error(f"{self.name} exited with {self.process.returncode}:\n{tail}")
            if self.ready():
                return
            time.sleep(0.2)
        raise self.error(f"{self.name} at {self.url} not ready within {timeout:.0f}s (log: {self.log})")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def serve(self) -> int:
        """Until SIGINT/SIGTERM (0) or the daemon's own exit (1); stops it either way."""
        stop = StopRequest.install()
        while not stop.requested and self.process.poll() is None:
            time.sleep(0.5)
        self.stop()
        return 0 if stop.requested else 1


class StopRequest:
    """Ctrl-C and SIGTERM only ask to stop: a foreground tool that runs daemons (``Daemon.serve``, the
    demo) notes the request, and stops what it started itself, on its own terms."""

    def __init__(self) -> None:
        self.requested = False

    @classmethod
    def install(cls) -> StopRequest:
        """A request flag set by SIGINT and SIGTERM from now on (this process's handlers replaced)."""
        stop = cls()
        signal.signal(signal.SIGINT, stop._on_signal)
        signal.signal(signal.SIGTERM, stop._on_signal)
        return stop

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self.requested = True
