"""Which parts of `make operators-build` are finished: read, never built, by the operators tier and the
README tier (tests/readme/test_operators.py), which skip (fail under CI) naming what is missing."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# what each built part must hold (tools/operators/build.sh --print-dirs names the directories)
BUILT = {
    "strimzi-operator": "opt/strimzi/lib",
    "strimzi-kafka": "opt/kafka/libs",
    "prometheus-operator": "prometheus-config-reloader",
    "prometheus": "promtool",
    "keda": "keda-admission-webhooks",
}


def missing_parts() -> list[str]:
    """The operators' parts `make operators-build` has not finished (nothing is built here)."""
    out = subprocess.run(
        ["bash", "tools/operators/build.sh", "--print-dirs"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if out.returncode:
        return [f"build.sh --print-dirs failed: {out.stderr.strip()[-300:]}"]
    dirs = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return [part for part, inside in BUILT.items() if not (Path(dirs.get(part, "/none")) / inside).exists()]
