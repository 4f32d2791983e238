"""login_bench/stats.py: the 10-90% rate window, medians, percentiles, the result document, targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


from login_bench import stats  # noqa: E402

# ------------------------------------------------------------------------------------------ rate window


def test_rate_window_measures_the_steady_middle_not_warm_up_or_tail() -> None:
    # 1,000 records: the first 50 trickle in over 25 s (start-up), the middle 900 at 1 record/ms,
    # the last 50 over another 25 s (stragglers). The 10% and 90% records fall in the middle.
    warm = [i * 500 for i in range(50)]
    steady = [50_000 + i for i in range(900)]
    tail = [51_000 + i * 500 for i in range(50)]
    rate = stats.rate_window(warm + steady + tail)
    assert rate == pytest.approx(1000.0, rel=0.01)
    # over the whole span the same records would give ~10/s: the window is what keeps it honest
    assert len(warm + steady + tail) / ((tail[-1] - warm[0]) / 1000) < 21


def test_rate_window_ignores_input_order_and_uses_the_10th_and_90th_record() -> None:
    stamps = [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000]  # 11 records, 1 a second
    assert stats.rate_window(list(reversed(stamps))) == pytest.approx(1.0)
    # i = floor(0.1 * 10) = 1, j = ceil(0.9 * 10) = 9: 8 records in 8 s
    assert stats.rate_window(stamps, 0.1, 0.9) == pytest.approx(1.0)
    assert stats.rate_window([0, 10, 20, 10_000], 0.1, 0.9) == pytest.approx(3 * 1000 / 10_000)


def test_rate_window_of_one_millisecond_is_finite() -> None:
    assert stats.rate_window([5] * 100) == pytest.approx(81 * 1000.0)  # records 9..90 in 1 ms


@pytest.mark.parametrize(
    ("stamps", "low", "high"), [([], 0.1, 0.9), ([1], 0.1, 0.9), ([1, 2], 0.9, 0.1), ([1, 2], -0.1, 0.9)]
)
def test_rate_window_rejects_what_it_cannot_measure(stamps: list[int], low: float, high: float) -> None:
    with pytest.raises(ValueError, match="need"):
        stats.rate_window(stamps, low, high)


# ------------------------------------------------------------------------------- median, percentiles


def test_median_of_three_runs_is_the_middle_one_and_skips_unfinished_runs() -> None:
    assert stats.median([10.0, 30.0, 20.0]) == 20.0
    assert stats.median([10.0, None, 30.0]) == 20.0
    assert stats.median([None, None]) is None
    assert stats.median([]) is None


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert stats.percentile(values, 50) == 50.0
    assert stats.percentile(values, 99) == 99.0
    assert stats.percentile(values, 100) == 100.0
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile(list(reversed(values)), 1) == 1.0
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)


def test_latency_summary_reports_matches_and_input_rate() -> None:
    summary = stats.latency_summary([float(v) for v in range(1, 1001)], sent=1000, seconds=1.0)
    assert summary == {
        "p50": 500.0,
        "p99": 990.0,
        "max": 1000.0,
        "matched": 1000,
        "sent": 1000,
        "incomplete": False,
        "input_rate": 1000,
    }
    empty = stats.latency_summary([], sent=10, seconds=1.0)
    assert empty["p99"] is None
    assert empty["matched"] == 0
    assert empty["incomplete"]


def test_events_without_an_output_count_as_infinitely_late() -> None:
    # 980 fast events and 20 never written: the p99 is not the p99 of the fast ones
    summary = stats.latency_summary([1.0] * 980, sent=1000, seconds=1.0)
    assert summary["p50"] == 1.0
    assert summary["p99"] is None
    assert summary["incomplete"]
    # such a run fails the latency target instead of dropping out of it
    doc = stats.build_result(
        generated_at="",
        machine={},
        config={},
        runs={},
        limit_detail={},
        latency_ms={"1k": {"1": summary}, "10k": {"1": stats.latency_summary([5.0] * 1000, 1000, 0.1)}},
        scale={},
    )
    status = {t["target"]: t["status"] for t in doc["targets"]}
    assert status["p99 event->output at 1k events/s, 1 process"] == "not met"
    assert status["p99 event->output at 10k events/s, 1 process"] == "met"


def test_summarize_takes_the_median_of_each_figure_separately() -> None:
    runs = [
        stats.RunResult(100.0, 3.0, 200.0, 10, 1.0),
        stats.RunResult(300.0, 1.0, 100.0, 10, 1.0),
        stats.RunResult(200.0, 2.0, 300.0, 10, 1.0),
    ]
    assert stats.summarize(runs) == {"events_per_s": 200.0, "cpu_s_per_million": 2.0, "peak_rss_mb": 200.0}


# ----------------------------------------------------------------------------------------- the document


def _run(rate: float | None) -> Any:
    return stats.RunResult(rate, 10.0, 100.0, 1000, 5.0, load1=1.5)


def _doc(p: dict[str, float | None], h: dict[str, float | None], p99: tuple[float, float]) -> dict[str, Any]:
    runs = {
        "P": {c: [_run(v), _run(v), _run(v)] for c, v in p.items()},
        "H": {c: [_run(v)] for c, v in h.items()},
    }
    latency = {
        "1k": {"1": stats.latency_summary([p99[0]] * 100, 100, 0.1)},
        "10k": {"1": stats.latency_summary([p99[1]] * 100, 100, 0.01)},
    }
    return stats.build_result(
        generated_at="2026-01-01T00:00:00+00:00",
        machine={
            "cpus": 2,
            "python": "3.11",
            "commit": "abc",
            "loadavg_start": [1, 1, 1],
            "loadavg_end": [2, 2, 2],
        },
        config={"events": {"P": 500_000, "H": 1_000_000}, "runs": 3, "samples": {"seed_loop": 20_000}},
        runs=runs,
        limit_detail={"P": {"consume_events_per_s": 1.0}},
        latency_ms=latency,
        scale={
            "events_per_s": {"1": 1000.0, "2": 1800.0},
            "network_stage": {"events_per_s": {"all detectors": 900.0, "without credential_stuffing": 950.0}},
        },
    )


def _targets(doc: dict[str, Any]) -> dict[str, str]:
    return {t["target"]: t["status"] for t in doc["targets"]}


def test_result_has_every_workload_and_contender_key_and_is_json() -> None:
    doc = _doc({"pipeline": 50_000.0}, {}, (10.0, 20.0))
    assert stats.check_shape(doc) == []
    assert set(doc["events_per_s"]) == {"P", "H"}
    for w in ("P", "H"):
        assert set(doc["events_per_s"][w]) == {
            "limit",
            "passthrough",
            "pipeline",
            "pipeline_eos",
            "quix",
            "seed_loop",
        }
    assert doc["events_per_s"]["P"]["pipeline"] == 50_000.0
    assert doc["events_per_s"]["H"]["pipeline"] is None  # not measured is null, not absent
    assert doc["peak_rss_mb"]["P"]["pipeline"] == 100.0
    assert len(doc["runs"]["P"]["pipeline"]) == 3
    assert doc["runs"]["P"]["pipeline"][0]["load1"] == 1.5
    assert json.loads(json.dumps(doc)) == doc


def test_check_shape_names_what_is_missing() -> None:
    doc = _doc({"pipeline": 1.0}, {}, (1.0, 1.0))
    del doc["events_per_s"]["H"]
    del doc["peak_rss_mb"]["P"]["quix"]
    doc["latency_ms"]["10k"] = {}
    del doc["scale"]
    problems = stats.check_shape(doc)
    assert "missing key 'scale'" in problems
    assert "events_per_s: no workload 'H'" in problems
    assert "peak_rss_mb.P: no contender 'quix'" in problems
    assert "latency_ms.10k.1: no p50/p99" in problems


def test_targets_are_ratios_of_this_run_marked_met_or_not() -> None:
    p = {
        "passthrough": 100_000.0,
        "pipeline": 60_000.0,
        "pipeline_eos": 30_000.0,
        "quix": 20_000.0,
        "seed_loop": 500.0,
    }
    h = {
        "passthrough": 100_000.0,
        "pipeline": 40_000.0,
        "pipeline_eos": 35_000.0,
        "quix": 25_000.0,
        "seed_loop": 300.0,
    }
    doc = _doc(p, h, (40.0, 150.0))
    status = _targets(doc)
    assert status["P: pipeline >= 0.5x passthrough"] == "met"  # 0.6
    assert status["H: pipeline >= 0.5x passthrough"] == "not met"  # 0.4
    assert status["P: pipeline_eos >= 0.35x passthrough"] == "not met"  # 0.3
    assert status["H: pipeline_eos >= 0.35x passthrough"] == "met"  # 0.35, the bound itself
    assert status["P: pipeline >= 2x quix"] == "met"  # 3.0
    assert status["H: pipeline >= 2x quix"] == "not met"  # 1.6
    assert status["P: pipeline >= 100x seed_loop"] == "met"  # 120
    assert status["H: pipeline >= 100x seed_loop"] == "met"  # 133
    assert status["pipeline: H no more than 20% below P (H/P)"] == "not met"  # 0.667
    assert status["pipeline_eos: H no more than 20% below P (H/P)"] == "met"  # 1.17
    assert status["p99 event->output at 1k events/s, 1 process"] == "met"  # 40 <= 50
    assert status["p99 event->output at 10k events/s, 1 process"] == "not met"  # 150 > 100
    values = {t["target"]: t["value"] for t in doc["targets"]}
    assert values["H: pipeline >= 2x quix"] == pytest.approx(1.6)


def test_a_missing_figure_is_not_measured_never_met() -> None:
    doc = _doc({"pipeline": 60_000.0}, {}, (10.0, 10.0))
    status = _targets(doc)
    assert status["P: pipeline >= 0.5x passthrough"] == "not measured"
    assert status["pipeline: H no more than 20% below P (H/P)"] == "not measured"


def test_markdown_lists_every_contender_latency_scale_targets_and_load() -> None:
    doc = _doc({"pipeline": 61_234.0, "seed_loop": 456.0}, {"pipeline": 50_000.0}, (12.5, 80.0))
    text = stats.markdown(doc)
    for c in stats.CONTENDERS:
        assert stats.LABELS[c] in text
    assert "| 61,234 | 50,000 |" in text
    assert "first 20,000 events of each topic" in text  # the seed loop's sample is labelled
    assert "| 1k events/s, 1 process | 12.5 |" in text
    assert "| 2 login-consumer processes | 1,800 |" in text
    assert "| without credential_stuffing | 950 |" in text
    assert "not measured" in text
    assert "load average" in text
    assert "[2, 2, 2]" in text


# ----------------------------------------------------------------- the harness's parsers and contract

from login_bench import harness as bench  # noqa: E402

CONSUMER_PERF = """start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, \
rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-11-30 06:17:21:015, 2026-11-30 06:17:36:720, 3.6352, 0.2315, 10000, 636.7399, 9420, 6285, 0.5784, \
1591.0899
"""
PRODUCER_PERF = """Reading payloads from: /tmp/payloads.txt
Number of records read: 10000
1 records sent, 0.1 records/sec (0.00 MB/sec), 7560.0 ms avg latency, 7560.0 ms max latency.
10000 records sent, 878.580214 records/sec (0.29 MB/sec), 835.53 ms avg latency, 7560.00 ms max latency.
9000 steady state records sent, 912.5 records/sec (0.30 MB/sec), 800.1 ms avg latency, 1200.0 ms max latency.
"""


def test_perf_tool_outputs_are_read_as_their_steady_rates() -> None:
    assert bench._parse_consumer_perf(CONSUMER_PERF) == pytest.approx(1591.0899)  # fetch rate, join excluded
    assert bench._parse_producer_perf(PRODUCER_PERF) == pytest.approx(912.5)  # the steady-state line
    assert bench._parse_producer_perf(PRODUCER_PERF.rsplit("\n", 2)[0]) == pytest.approx(878.580214)
    assert bench._parse_consumer_perf("Exception in thread main") is None
    assert bench._parse_producer_perf("") is None


def test_contenders_get_login_consumers_environment_contract() -> None:
    env = bench.contender_env("pipeline_eos", "127.0.0.1:1", source="in", out="out", dlq="dlq", group="g")
    assert env["PROCESSING_GUARANTEE"] == "exactly-once"
    assert {env["INPUT_TOPIC"], env["OUTPUT_TOPIC"], env["DLQ_TOPIC"], env["GROUP_ID"]} == {
        "in",
        "out",
        "dlq",
        "g",
    }
    assert env["METRICS_PORT"] == "0"
    assert env["DETECTORS"] == "all"
    alo = bench.contender_env("pipeline", "127.0.0.1:1", source="in", out="out", dlq="dlq", group="g")
    assert alo["PROCESSING_GUARANTEE"] == "at-least-once"
    assert bench.contender_argv("pipeline")[0].endswith("login-consumer")
    assert bench.contender_argv("seed_loop")[-1] == "seed-loop"


def test_partial_drains_are_marked_in_the_table() -> None:
    runs = {
        "H": {"pipeline": [stats.RunResult(900.0, 1.0, 1.0, 5000, 90.0, "partial: 5,000 of 9,000 events")]}
    }
    doc = stats.build_result(
        generated_at="",
        machine={},
        config={"events": {"P": 1, "H": 9000}, "runs": 1, "max_drain_seconds": 90},
        runs=runs,
        limit_detail={},
        latency_ms={},
        scale={},
    )
    text = stats.markdown(doc)
    assert "| 900 † |" in text
    assert "stopped after 90 s" in text
    assert "†" not in stats.markdown(_doc({"pipeline": 1.0}, {}, (1.0, 1.0)))
