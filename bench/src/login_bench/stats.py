"""The pure parts of `make bench` (no Kafka, no processes): rates, medians, percentiles, the result
document, its targets, and the markdown table. Unit-tested in tests/unit/test_bench_stats.py.

Rates come from the output topic: the create timestamps (ms) of the output records (plus dead letters),
sorted; the rate is the number of records between the 10% and the 90% record divided by the time between
them. Start-up, group join, state restore and the drain's tail are outside that window, so a contender is
measured at its steady pace, not at its warm-up or its last straggling batch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

WORKLOADS: Final = ("P", "H")
CONTENDERS: Final = ("limit", "passthrough", "pipeline", "pipeline_eos", "quix", "seed_loop")
LABELS: Final = {
    "limit": "Kafka perf tools (the limit: min of consume and produce)",
    "passthrough": "confluent-kafka passthrough (consume -> produce)",
    "pipeline": "login-consumer, at-least-once, all detectors",
    "pipeline_eos": "login-consumer, exactly-once, all detectors",
    "quix": "Quix Streams app, login-consumer's own stage functions per message",
    "seed_loop": "seed loop (reimplementation: kafka-python-ng, send().get() + flush() per message)",
}
LATENCY_RATES: Final = {"1k": 1_000, "10k": 10_000}
LATENCY_P99_TARGET_MS: Final = {"1k": 50.0, "10k": 100.0}
RESULT_KEYS: Final = (
    "schema",
    "generated_at",
    "machine",
    "config",
    "events_per_s",
    "cpu_s_per_million",
    "peak_rss_mb",
    "runs",
    "limit_detail",
    "latency_ms",
    "scale",
    "targets",
)


def rate_window(timestamps_ms: Iterable[int], low: float = 0.1, high: float = 0.9) -> float:
    """Records per second between the ``low`` and ``high`` fractions of the records, by timestamp.

    With n records sorted by time, i = floor(low * (n - 1)) and j = ceil(high * (n - 1)): (j - i) records
    were written in ts[j] - ts[i] ms. A window that takes no time (everything in one millisecond) is
    reported as that many records in 1 ms, never as infinity.
    """
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"need 0 <= low < high <= 1, got {low}, {high}")
    ts = sorted(timestamps_ms)
    n = len(ts)
    if n < 2:
        raise ValueError(f"need at least 2 timestamps, got {n}")
    i = math.floor(low * (n - 1))
    j = math.ceil(high * (n - 1))
    if j <= i:
        j = min(n - 1, i + 1)
    span_ms = max(1, ts[j] - ts[i])
    return (j - i) * 1000.0 / span_ms


def median(values: Sequence[float | None]) -> float | None:
    """The median of the measured values (None = a run that did not finish, left out); None if none."""
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank: the smallest value with at least q% at or below it."""
    if not values:
        raise ValueError("no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within 0-100, got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass(frozen=True, slots=True)
class RunResult:
    """One measurement of one contender on one workload (one fresh process, or a pair of them)."""

    events_per_s: float | None  # None: did not finish within its deadline
    cpu_s_per_million: float | None
    peak_rss_mb: float | None
    outputs: int
    seconds: float
    note: str = ""
    load1: float | None = None  # the machine's 1-minute load average when the run started

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_per_s": _round(self.events_per_s),
            "cpu_s_per_million": _round(self.cpu_s_per_million, 2),
            "peak_rss_mb": _round(self.peak_rss_mb, 1),
            "outputs": self.outputs,
            "seconds": round(self.seconds, 2),
            "load1": None if self.load1 is None else round(self.load1, 2),
            **({"note": self.note} if self.note else {}),
        }


def summarize(runs: Sequence[RunResult]) -> dict[str, float | None]:
    """Median of each figure over the runs."""
    return {
        "events_per_s": _round(median([r.events_per_s for r in runs])),
        "cpu_s_per_million": _round(median([r.cpu_s_per_million for r in runs]), 2),
        "peak_rss_mb": _round(median([r.peak_rss_mb for r in runs]), 1),
    }


def latency_summary(latencies_ms: Sequence[float], sent: int, seconds: float) -> dict[str, Any]:
    """p50/p99/max of event -> output latencies, how many of the sent events were matched to an output,
    and the achieved input rate. An event without an output (not written within the wait) counts as
    infinitely late: a percentile that lands on one is None and the summary is marked incomplete."""
    missing = max(0, sent - len(latencies_ms))
    values = [*latencies_ms, *([math.inf] * missing)]

    def pick(q: float) -> float | None:
        if not values:
            return None
        value = percentile(values, q)
        return None if math.isinf(value) else round(value, 1)

    return {
        "p50": pick(50),
        "p99": pick(99),
        "max": round(max(latencies_ms), 1) if latencies_ms and not missing else None,
        "matched": len(latencies_ms),
        "sent": sent,
        "incomplete": missing > 0,
        "input_rate": round(sent / seconds) if seconds > 0 else None,
    }


def _round(value: float | None, digits: int = 0) -> float | None:
    if value is None:
        return None
    return round(value, digits) if digits else float(round(value))


# ----------------------------------------------------------------------------------------------- targets


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _target(name: str, value: float | None, op: str, bound: float, unit: str = "x") -> dict[str, Any]:
    if value is None:
        verdict = "not measured"
    elif op == ">=":
        verdict = "met" if value >= bound else "not met"
    else:
        verdict = "met" if value <= bound else "not met"
    return {
        "target": name,
        "value": None if value is None or math.isinf(value) else round(value, 3),
        "op": op,
        "bound": bound,
        "unit": unit,
        "status": verdict,
    }


def evaluate_targets(
    events_per_s: Mapping[str, Mapping[str, float | None]],
    latency_ms: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """The issue's targets as ratios measured in this run, each marked met / not met / not measured."""
    out: list[dict[str, Any]] = []
    for w in WORKLOADS:
        eps = events_per_s.get(w, {})
        pipe, eos = eps.get("pipeline"), eps.get("pipeline_eos")
        passthrough = eps.get("passthrough")
        out.append(_target(f"{w}: pipeline >= 0.5x passthrough", _ratio(pipe, passthrough), ">=", 0.5))
        out.append(_target(f"{w}: pipeline_eos >= 0.35x passthrough", _ratio(eos, passthrough), ">=", 0.35))
        out.append(_target(f"{w}: pipeline >= 2x quix", _ratio(pipe, eps.get("quix")), ">=", 2.0))
        out.append(
            _target(f"{w}: pipeline >= 100x seed_loop", _ratio(pipe, eps.get("seed_loop")), ">=", 100.0)
        )
    for key in ("pipeline", "pipeline_eos"):
        h_over_p = _ratio(events_per_s.get("H", {}).get(key), events_per_s.get("P", {}).get(key))
        out.append(_target(f"{key}: H no more than 20% below P (H/P)", h_over_p, ">=", 0.8))
    for rate, bound in LATENCY_P99_TARGET_MS.items():
        entry = latency_ms.get(rate, {}).get("1", {})
        p99 = entry.get("p99")
        if p99 is None and entry.get("incomplete"):
            p99 = math.inf  # more than 1% of the events had no output in time
        out.append(_target(f"p99 event->output at {rate} events/s, 1 process", p99, "<=", bound, "ms"))
    return out


# ------------------------------------------------------------------------------------------- the document


def build_result(
    *,
    generated_at: str,
    machine: Mapping[str, Any],
    config: Mapping[str, Any],
    runs: Mapping[str, Mapping[str, Sequence[RunResult]]],
    limit_detail: Mapping[str, Mapping[str, Any]],
    latency_ms: Mapping[str, Mapping[str, Mapping[str, Any]]],
    scale: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON document: medians per workload and contender (every contender key present, None when not
    measured), every run, latency, scaling and the targets."""
    events: dict[str, dict[str, float | None]] = {}
    cpu: dict[str, dict[str, float | None]] = {}
    rss: dict[str, dict[str, float | None]] = {}
    for w in WORKLOADS:
        events[w], cpu[w], rss[w] = {}, {}, {}
        for c in CONTENDERS:
            summary = summarize(runs.get(w, {}).get(c, ()))
            events[w][c] = summary["events_per_s"]
            cpu[w][c] = summary["cpu_s_per_million"]
            rss[w][c] = summary["peak_rss_mb"]
    return {
        "schema": 1,
        "generated_at": generated_at,
        "machine": dict(machine),
        "config": dict(config),
        "events_per_s": events,
        "cpu_s_per_million": cpu,
        "peak_rss_mb": rss,
        "runs": {w: {c: [r.as_dict() for r in rs] for c, rs in runs.get(w, {}).items()} for w in WORKLOADS},
        "limit_detail": {w: dict(limit_detail.get(w, {})) for w in WORKLOADS},
        "latency_ms": {rate: {n: dict(v) for n, v in by_n.items()} for rate, by_n in latency_ms.items()},
        "scale": dict(scale),
        "targets": evaluate_targets(events, latency_ms),
    }


def check_shape(doc: Mapping[str, Any]) -> list[str]:
    """What is missing or malformed in a result document ([] when it has the promised shape)."""
    problems = [f"missing key {k!r}" for k in RESULT_KEYS if k not in doc]
    for section in ("events_per_s", "cpu_s_per_million", "peak_rss_mb"):
        table = doc.get(section, {})
        for w in WORKLOADS:
            row = table.get(w) if isinstance(table, Mapping) else None
            if not isinstance(row, Mapping):
                problems.append(f"{section}: no workload {w!r}")
                continue
            problems.extend(f"{section}.{w}: no contender {c!r}" for c in CONTENDERS if c not in row)
            problems.extend(
                f"{section}.{w}.{c}: not a number"
                for c, v in row.items()
                if v is not None and not isinstance(v, int | float)
            )
    for rate in LATENCY_RATES:
        entry = doc.get("latency_ms", {}).get(rate, {}).get("1")
        if not isinstance(entry, Mapping) or "p50" not in entry or "p99" not in entry:
            problems.append(f"latency_ms.{rate}.1: no p50/p99")
    for t in doc.get("targets", []):
        if t.get("status") not in ("met", "not met", "not measured"):
            problems.append(f"target {t.get('target')!r}: bad status {t.get('status')!r}")
    return problems


# ------------------------------------------------------------------------------------------ the tables


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def markdown(doc: Mapping[str, Any]) -> str:
    """The result as markdown: throughput table, latency and scaling, targets, and the conditions."""
    eps, cpu, rss = doc["events_per_s"], doc["cpu_s_per_million"], doc["peak_rss_mb"]
    cfg, machine = doc["config"], doc["machine"]
    lines = [
        f"Workloads: **P** = `login-producer` population traffic ({cfg['events']['P']:,} events), "
        f"**H** = high-cardinality generator-format traffic ({cfg['events']['H']:,} events); each preloaded "
        f"on a fresh 6-partition topic and drained by a fresh process. Median of {cfg['runs']} run(s); rate "
        "from the output records' timestamps between 10% and 90% of the outputs.",
        "",
        "| contender | P events/s | H events/s | CPU s per 1M events (P / H) | peak RSS MB (P / H) |",
        "|---|---:|---:|---:|---:|",
    ]
    runs = doc.get("runs", {})
    partial = False

    def rate(w: str, c: str) -> str:
        nonlocal partial
        mark = any(str(r.get("note", "")).startswith("partial") for r in runs.get(w, {}).get(c, []))
        partial = partial or mark
        return _num(eps[w][c]) + (" †" if mark and eps[w][c] is not None else "")

    for c in CONTENDERS:
        label = LABELS[c]
        sample = cfg.get("samples", {}).get(c)
        if sample:
            label += f" — first {sample:,} events of each topic"
        lines.append(
            f"| {label} | {rate('P', c)} | {rate('H', c)} | "
            f"{_num(cpu['P'][c], 1)} / {_num(cpu['H'][c], 1)} | {_num(rss['P'][c])} / {_num(rss['H'][c])} |"
        )
    if partial:
        lines += [
            "",
            f"† partial drains: stopped after {cfg.get('max_drain_seconds', 0):g} s (the run's time cap) and "
            "measured on what was drained by then; the JSON's `runs` say how much.",
        ]
    lines += ["", "| event -> output latency (pipeline, at-least-once) | p50 ms | p99 ms | matched |"]
    lines.append("|---|---:|---:|---:|")
    for rate, by_n in doc["latency_ms"].items():
        for n, entry in sorted(by_n.items()):
            lines.append(
                f"| {rate} events/s, {n} process{'es' if n != '1' else ''} | {_num(entry.get('p50'), 1)} | "
                f"{_num(entry.get('p99'), 1)} | {entry.get('matched', 0):,} of {entry.get('sent', 0):,} |"
            )
    scale = doc.get("scale", {}).get("events_per_s", {})
    if scale:
        lines += ["", "| H drained by | events/s |", "|---|---:|"]
        lines += [
            f"| {n} login-consumer process{'es' if n != '1' else ''} | {_num(v)} |" for n, v in scale.items()
        ]
    net = doc.get("scale", {}).get("network_stage", {}).get("events_per_s", {})
    if net:
        lines += ["", "| P drained by 1 login-consumer process (cost of the network stage) | events/s |"]
        lines += ["|---|---:|", *(f"| {what} | {_num(v)} |" for what, v in net.items())]
    lines += ["", "| target | measured | status |", "|---|---:|---|"]
    for t in doc["targets"]:
        unit = " ms" if t["unit"] == "ms" else "x"
        value = "—" if t["value"] is None else f"{t['value']:,.2f}{unit}"
        lines.append(f"| {t['target']} ({t['op']} {t['bound']:g}{unit}) | {value} | {t['status']} |")
    load = machine.get("loadavg_start"), machine.get("loadavg_end")
    lines += [
        "",
        f"Machine: {machine.get('cpus')} cores, Python {machine.get('python')}, commit "
        f"`{machine.get('commit', '?')}`; load average (1, 5, 15 min) at start {load[0]}, at end {load[1]} — "
        "other work shared the cores, so absolute figures are low; the ratios were measured in one run.",
    ]
    return "\n".join(lines) + "\n"
