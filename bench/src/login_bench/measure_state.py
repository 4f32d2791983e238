#!/usr/bin/env python3
"""Memory of the user-history store per user, and the cost of restoring it, for the options of #9.

Each measurement runs in a fresh process: it loads what the consumer loads (the enricher's reference
data), notes the RSS, fills one option's store with N high-cardinality users (a UUID user id, 1-3 UUID
device ids, 1-2 countries), and reports the RSS growth per user, the process's RSS and the CPU seconds.

    python -m login_bench.measure_state [--users 2000000] [--options objects,compact,compact-restore]
    python -m login_bench.measure_state --options broker-restore --bootstrap 127.0.0.1:9092

* ``objects``: a slotted ``History`` object per user in a dict (the store before #9, copied here);
* ``compact``: ``login_consumer.histories.HistoryStore`` (one bytes record per user, 60-bit hashed key);
* ``compact-restore``: a compact store rebuilt from its changelog records (key, value) as a restore
  applies them: the CPU seconds of the rebuild (reading them from the broker is not included);
* ``broker-restore`` (needs ``--bootstrap``): N history records written to a changelog topic of the
  broker, then a fresh process restores the user stage's state from it as a consumer does on
  assignment (``Changelog.read`` + ``DetectorState.restore``): seconds, and peak RSS during it.

Prints one JSON line per option.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

_COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "CA", "AU", "ES")


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _users(count: int) -> Iterator[tuple[str, list[str], list[str], int]]:
    rng = random.Random(3)
    start = 1_700_000_000
    for n in range(count):
        devices = [
            str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(rng.choice((1, 1, 1, 2, 3)))
        ]
        countries = [rng.choice(_COUNTRIES) for _ in range(rng.choice((1, 1, 1, 2)))]
        yield str(uuid.UUID(int=rng.getrandbits(128), version=4)), devices, countries, start + n // 100


class _History:
    """The per-user object of the store before the compact one (state.py's ``History`` until #9)."""

    __slots__ = ("countries", "devices", "gen", "key", "last_country", "last_ts", "moved", "saved_ts", "user")

    def __init__(  # noqa: PLR0917 - as it was
        self,
        user: str,
        devices: list[str],
        countries: list[str],
        last_ts: int,
        last_country: str | None,
        gen: int,
    ) -> None:
        self.user = user
        self.devices = devices
        self.countries = countries
        self.last_ts = last_ts
        self.last_country = last_country
        self.gen = gen
        self.moved = last_ts
        self.saved_ts = last_ts
        self.key = ("H" + user).encode()


def write_changelog(bootstrap: str, users: int) -> str:
    """A changelog topic holding ``users`` compact history records in partition 0; its name."""
    from confluent_kafka import Producer

    from login_common.kafka import ensure_topics
    from login_consumer.stores import histories as h
    from login_consumer.stores.changelog import TOPIC_CONFIG

    topic = f"measure-state-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, {topic: 1}, config=TOPIC_CONFIG)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4"})
    for user, devices, countries, ts in _users(users):
        key = h.changelog_key(h.user_key(user))
        value = h.pack(ts, countries[-1], [h.device_key(d) for d in devices], countries)
        while True:
            try:
                producer.produce(topic, key=key, value=value, partition=0)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(300):
        raise SystemExit("measure_state: could not write the changelog")
    return topic


def broker_restore(bootstrap: str, topic: str, users: int) -> dict[str, object]:
    from login_common.settings import load_settings
    from login_consumer.config import ConsumerSettings
    from login_consumer.enrich import Enricher
    from login_consumer.stores.changelog import Changelog
    from login_consumer.stores.users import DetectorState, Limits
    from login_consumer.wiring import internal_topics

    Enricher()
    base = _rss_mb()
    settings = load_settings(
        ConsumerSettings, bootstrap_servers=bootstrap, input_topic=topic, state_restore_timeout=600
    )
    limits = Limits(30 * 86_400, 300, 300, max(users, 2_000_000), 100_000)
    state = DetectorState(limits)
    started, cpu = time.monotonic(), time.process_time()
    restored = state.restore(
        0,
        Changelog(
            internal_topics(settings),
            topic,
            source_topic=topic,
            source_setting="topic",
            setting="topic",
            group_id=settings.group_id,
            restore_timeout=settings.state_restore_timeout,
        ).read([0])[0],
    )
    return {
        "option": "broker-restore",
        "users": users,
        "restored": restored,
        "seconds": round(time.monotonic() - started, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "base_rss_mb": round(base),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_after_mb": round(_rss_mb()),
    }


def measure(option: str, users: int) -> dict[str, object]:
    from login_consumer.enrich import Enricher

    Enricher()  # what the consumer holds besides its state
    base = _rss_mb()
    started = time.process_time()
    keep: object
    if option == "objects":
        store: dict[str, _History] = {}
        for user, devices, countries, ts in _users(users):
            store[user] = _History(user, devices, countries, ts, countries[-1], 1)
        keep = store
    elif option in ("compact", "compact-restore"):
        from login_consumer.stores import histories as h

        compact = h.HistoryStore(ttl=30 * 86_400)
        records: Iterator[tuple[bytes, bytes]] = (
            (
                h.changelog_key(h.user_key(user)),
                h.pack(ts, countries[-1], [h.device_key(d) for d in devices], countries),
            )
            for user, devices, countries, ts in _users(users)
        )
        if option == "compact-restore":
            # the records a restore reads, built first (outside the measured time) and streamed through;
            # the growth counts them too until they are freed (pymalloc keeps some of their arenas)
            built = list(records)
            started = time.process_time()
            for key, value in built:
                h.unpack(value)  # a restore checks each record
                compact.put(h.key_of(key), value, h.last_ts_of(value))
            seconds = time.process_time() - started
            del built
            return _result(option, users, _rss_mb() - base, seconds, compact)
        for key, value in records:
            compact.put(h.key_of(key), value, h.last_ts_of(value))
        keep = compact
    else:
        raise SystemExit(f"unknown option {option!r}")
    seconds = time.process_time() - started
    return _result(option, users, _rss_mb() - base, seconds, keep)


def _result(option: str, users: int, grown: float, seconds: float, keep: object) -> dict[str, object]:
    return {
        "option": option,
        "users": users,
        "bytes_per_user": round(grown * 2**20 / users),
        "state_mb": round(grown),
        "rss_mb": round(_rss_mb()),
        "cpu_s": round(seconds, 1),
        "entries": len(keep),  # type: ignore[arg-type]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--users", type=int, default=2_000_000)
    parser.add_argument("--options", default="objects,compact,compact-restore")
    parser.add_argument("--bootstrap", help="a broker, for broker-restore")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one option in this process
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one == "broker-restore":
        print(json.dumps(broker_restore(args.bootstrap, args.topic, args.users)))
        return 0
    if args.one:
        print(json.dumps(measure(args.one, args.users)))
        return 0
    for option in args.options.split(","):
        extra: list[str] = []
        if option == "broker-restore":
            if not args.bootstrap:
                raise SystemExit("broker-restore needs --bootstrap")
            extra = ["--bootstrap", args.bootstrap, "--topic", write_changelog(args.bootstrap, args.users)]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "login_bench.measure_state",
                "--users",
                str(args.users),
                "--one",
                option,
                *extra,
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        print(done.stdout.strip() or done.stderr.strip()[-500:], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
