#!/usr/bin/env python3
"""In-process events/s of login-consumer on high-cardinality traffic, and where the time goes.

Generator-format traffic at its hardest for caches: every event a fresh ``user_id``, ``device_id`` and
random IPv4; ~5% without ``device_type``; timestamps as ints and numeric strings; in timestamp order;
~10% failures. The events go through ``Processor.process`` (validate -> enrich -> detect -> score ->
serialize) in batches with all the stateful detectors (changelog records built, as the consumer loop
does), metrics applied per batch; one pass, cold caches, a fresh process. No broker.

    python -m login_bench.profile_consumer [--events 200000] [--batch 1000] [--detectors all]
    python -m login_bench.profile_consumer --cprofile 25     # the 25 costliest functions (cumulative)
    py-spy record -o profile.svg -- python -m login_bench.profile_consumer   # a flame graph

Prints one JSON line: events_per_s (per CPU second of this process: the machine may be shared), the
events, the batch size, the detectors, peak RSS (MB) and the state's entries at the end. The inputs are
built batch by batch, so the RSS is the consumer's: ``--events 2300000`` holds ~2M distinct users.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import resource
import sys
import time
import uuid
from collections.abc import Iterator

import orjson
from confluent_kafka import Message
from prometheus_client import CollectorRegistry

from login_common.settings import load_settings
from login_consumer.config import ConsumerSettings
from login_consumer.detectors.base import StateChangelog
from login_consumer.in_process import AllDetectors
from login_consumer.metrics import ConsumerMetrics
from login_consumer.process import Processor, tune_gc

_DEVICE_TYPES = ("android", "iOS", "web", "Windows", "macos")


Input = tuple[int, int, bytes]  # (partition, offset, value)


def high_cardinality(count: int, batch: int, *, seed: int = 11, partitions: int = 6) -> Iterator[list[Input]]:
    """Every event a new user, device and IPv4, as the public login-event generators make them; in
    batches of one partition (as a consumer reads them), the partitions in turn, built as they are read
    (so that the process's RSS is the consumer's, not the inputs')."""
    rng = random.Random(seed)
    start = int(time.time()) - count // 1_000 - 120
    offsets = [0] * partitions
    for first in range(0, count, batch):
        p = (first // batch) % partitions
        out: list[Input] = []
        for i in range(first, min(first + batch, count)):
            ts = start + i // 1_000
            event: dict[str, object] = {
                "user_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "app_version": f"2.{rng.randrange(6)}.{rng.randrange(4)}",
                "ip": ".".join(str(rng.randrange(256)) for _ in range(4)),
                "locale": rng.choice(("RI", "MD", "TX", "CA", "NY", "en_GB", "de-AT")),
                "device_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "timestamp": ts if rng.random() < 0.5 else str(ts),
                "outcome": "failure" if rng.random() < 0.1 else "success",
            }
            if rng.random() >= 0.05:
                event["device_type"] = rng.choice(_DEVICE_TYPES)
            out.append((p, offsets[p], orjson.dumps(event)))
            offsets[p] += 1
        yield out


def run(inputs: Iterator[list[Input]], settings: ConsumerSettings) -> tuple[float, dict[str, int]]:
    """Events per CPU second of ``Processor.process`` and the changelog and metrics work per batch
    (the machine is shared: wall-clock would measure the other processes too)."""
    detectors = AllDetectors(settings.detector_config())  # both stages' detectors
    changelog = detectors if isinstance(detectors, StateChangelog) else None
    processor = Processor.from_settings(settings, detectors)
    metrics = ConsumerMetrics.create(CollectorRegistry())
    tune_gc()
    spent = 0.0
    events = 0
    for inputs_batch in inputs:
        # built per batch (an in-memory Message costs ~4 KB) and outside the measured time
        messages = [Message(topic="user-login", partition=p, offset=o, value=v) for p, o, v in inputs_batch]
        events += len(messages)
        started = time.process_time()
        result = processor.process(messages)
        if changelog is not None:
            changelog.changes()
        metrics.record_batch(result.stats, len(result.outputs))
        spent += time.process_time() - started
    return events / spent, dict(detectors.state_sizes())


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--detectors", default="all")
    parser.add_argument("--cprofile", type=int, default=0, help="print the N costliest functions")
    args = parser.parse_args(argv)
    inputs = high_cardinality(args.events, args.batch)
    settings = load_settings(
        ConsumerSettings,
        detectors=args.detectors,
        state_changelog=True,
        metrics_port=0,
        batch_size=args.batch,
    )
    if args.cprofile:
        profiler = cProfile.Profile(time.process_time)
        rate, sizes = profiler.runcall(run, inputs, settings)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(args.cprofile)
    else:
        rate, sizes = run(inputs, settings)
    rss_mb = _rss_mb()
    print(
        orjson.dumps(
            {
                "events_per_s": round(rate),
                "events": args.events,
                "batch": args.batch,
                "detectors": args.detectors,
                "peak_rss_mb": round(rss_mb),
                "state_entries": sizes,
            }
        ).decode()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
