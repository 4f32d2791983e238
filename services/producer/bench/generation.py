#!/usr/bin/env python3
"""Producer generation benchmark: ``login-producer --rate 0 --out /dev/null`` for N events.

Prints events/s per population size and exits 1 when the first (default) size is below --min-eps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def measure(events: int, users: int, seed: int) -> dict[str, float]:
    out = subprocess.run(
        [str(BIN / "login-producer"), "--rate", "0", "--count", str(events), "--users", str(users),
         "--seed", str(seed), "--out", "/dev/null"],
        env={"LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    stop = next(json.loads(line) for line in out.stderr.splitlines() if "producer.stop" in line)
    return {"seconds": stop["seconds"], "events_per_second": stop["events_per_second"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, nargs="+", default=[1000, 1_000_000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--min-eps", type=float, default=50_000)
    args = parser.parse_args()
    results = []
    for users in args.users:
        r = measure(args.events, users, args.seed)
        results.append(r)
        print(f"producer generation: {args.events} events, {users} users: "
              f"{r['events_per_second']:.0f} events/s ({r['seconds']:.2f} s)")  # fmt: skip
    if results and results[0]["events_per_second"] < args.min_eps:
        print(f"below the target of {args.min_eps:.0f} events/s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
