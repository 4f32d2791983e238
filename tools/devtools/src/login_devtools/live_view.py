#!/usr/bin/env python3
"""The live view of the stream (``make watch``; ``make demo`` shows the same), made for 80x24.

Every figure comes from the services' /metrics (login-producer and login-consumer) and the latest
high-risk events from the output topic: throughput and lag, the risk-level distribution, detections per
detector in the last minute, dead letters by error type, the top flagged networks (the consumer's top
flagged IPs folded into /24 and /64 networks), p99 latency (input timestamp -> output acknowledged, over
the last minute) and the latest high-risk events (user, country, reasons). ``produced`` is what the
producer handed to Kafka (login_producer_events_sent_total), scraped after the consumer, so it is never
behind ``processed``. The last two lines are the alerts Alertmanager holds (its API v2, when the
pipeline has one: `make run`, `make demo`): how many fire and are inhibited, and each one's scope
(network, detector, consumer group) with the receivers its route picked.

    live_view.py            attach to the pipeline `make run` started (Ctrl-C leaves it running)
    live_view.py --once     print one frame (after --seconds of scrapes) and return; --svg FILE saves it
                            too, and --png FILE renders that SVG as PNG
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import sys
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from login_devtools.local_alertmanager import AlertmanagerError, RoutedAlert, routed_alerts

DETECTORS = ("brute_force", "credential_stuffing", "impossible_travel", "new_device", "new_country")
LEVELS = ("low", "medium", "high")
LEVEL_STYLE = {"low": "green", "medium": "yellow", "high": "bold red"}
WINDOW = 60.0  # "last minute"
RATE_WINDOW = 5.0  # rates over the last few seconds
FRAME_SECONDS = 30.0  # output that is not a terminal: one frame this often (and the last on Ctrl-C)

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    """Prometheus text exposition -> sample name -> [(labels, value)]."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def scrape(url: str) -> Samples | None:
    """The samples at ``url`` (…/metrics), or None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL we built
            return parse(resp.read().decode())
    except (OSError, ValueError):
        return None


def total(samples: Samples, name: str) -> float:
    return sum(v for _, v in samples.get(name, []))


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in samples.get(name, []):
        key = labels.get(label, "")
        out[key] = out.get(key, 0.0) + value
    return out


def buckets(samples: Samples, name: str) -> dict[float, float]:
    """Cumulative bucket counts of histogram ``name`` by upper bound (all label sets added up)."""
    out: dict[float, float] = {}
    for labels, value in samples.get(f"{name}_bucket", []):
        le = float(labels["le"])
        out[le] = out.get(le, 0.0) + value
    return out


def quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """``histogram_quantile`` as Prometheus computes it (linear within the bucket); None without data."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # in the +Inf bucket: the highest finite bound
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def network(ip: str) -> str:
    """The /24 of an IPv4 address or the /64 of an IPv6 one (as credential-stuffing detection groups)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass(frozen=True)
class Scrape:
    at: float
    producer: Samples
    consumer: Samples


@dataclass(frozen=True)
class HighRisk:
    at: str  # event time, HH:MM:SS
    user: str
    country: str
    score: int
    reasons: tuple[str, ...]


@dataclass
class Figures:
    """What the view shows, computed from scrapes (no I/O)."""

    seconds: float
    produced: float
    consumed: float
    processed: float
    dead_lettered: float
    rates: dict[str, float]
    lag: float | None
    risk: dict[str, float]
    detections: dict[str, float]  # over ``window`` seconds
    window: float
    dead_letters: dict[str, float]
    networks: list[tuple[str, float]]
    p99: float | None  # seconds, over ``window``
    latest: list[HighRisk] = field(default_factory=list)
    alerts: list[RoutedAlert] | None = None  # what Alertmanager holds; None: no Alertmanager answers


class Tracker:
    """Keeps the scrapes of the last minute and turns them into ``Figures``."""

    def __init__(self) -> None:
        self.scrapes: deque[Scrape] = deque()
        self.started = time.monotonic()

    def add(self, scrape: Scrape) -> None:
        self.scrapes.append(scrape)
        while len(self.scrapes) > 2 and scrape.at - self.scrapes[1].at >= WINDOW:
            self.scrapes.popleft()

    def _before(self, seconds: float) -> Scrape:
        """The oldest scrape no more than ``seconds`` before the newest; else the one before the newest
        (the newest when it is alone)."""
        newest = self.scrapes[-1]
        for s in self.scrapes:
            if s is not newest and newest.at - s.at <= seconds + 0.5:
                return s
        return self.scrapes[-2] if len(self.scrapes) > 1 else newest

    def figures(self, latest: Iterable[HighRisk] = ()) -> Figures:
        now = self.scrapes[-1]
        p, c = now.producer, now.consumer
        recent, minute = self._before(RATE_WINDOW), self._before(WINDOW)
        dt = max(now.at - recent.at, 1e-9)

        def rate(side: str, name: str) -> float:
            if now.at == recent.at:
                return 0.0
            new, old = getattr(now, side), getattr(recent, side)
            return max(0.0, (total(new, name) - total(old, name)) / dt)

        detections = dict.fromkeys(DETECTORS, 0.0)
        old_det = by_label(minute.consumer, "login_consumer_detections_total", "detector")
        for name, value in by_label(c, "login_consumer_detections_total", "detector").items():
            detections[name] = value - old_det.get(name, 0.0)
        latency_now = buckets(c, "login_consumer_event_latency_seconds")
        latency_old = buckets(minute.consumer, "login_consumer_event_latency_seconds")
        window_latency = {le: n - latency_old.get(le, 0.0) for le, n in latency_now.items()}
        p99 = quantile(0.99, window_latency) if now is not minute else quantile(0.99, latency_now)
        nets: dict[str, float] = {}
        for ip, count in by_label(c, "login_consumer_flagged_ip_events", "ip").items():
            nets[network(ip)] = nets.get(network(ip), 0.0) + count
        lag = total(c, "login_consumer_lag_messages") if "login_consumer_lag_messages" in c else None
        risk = dict.fromkeys(LEVELS, 0.0)
        risk |= by_label(c, "login_consumer_risk_level_total", "level")
        return Figures(
            seconds=time.monotonic() - self.started,
            produced=total(p, "login_producer_events_sent_total"),
            consumed=total(c, "login_consumer_events_consumed_total"),
            processed=total(c, "login_consumer_events_processed_total"),
            dead_lettered=total(c, "login_consumer_events_dlq_total"),
            rates={
                "produced": rate("producer", "login_producer_events_sent_total"),
                "processed": rate("consumer", "login_consumer_events_processed_total"),
                "dead_lettered": rate("consumer", "login_consumer_events_dlq_total"),
            },
            lag=lag,
            risk=risk,
            detections=detections,
            window=now.at - minute.at,
            dead_letters={
                k: v for k, v in by_label(c, "login_consumer_events_dlq_total", "reason").items() if v
            },
            networks=sorted(nets.items(), key=lambda kv: (-kv[1], kv[0]))[:5],
            p99=p99,
            latest=list(latest),
        )


class HighRiskTail:
    """Reads the output topic from near its end and keeps the latest high-risk events."""

    def __init__(self, bootstrap: str, topic: str, keep: int = 5, history: int = 300) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.latest: deque[HighRisk] = deque(maxlen=keep)
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"live-view-{uuid.uuid4().hex[:8]}",  # never commits: no group state
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        self._topic = topic
        self._assigned = False
        self._partition = TopicPartition
        self._history = history
        self.error = ""  # the last failure reading the topic, if any

    def _assign(self) -> None:
        md = self._consumer.list_topics(self._topic, timeout=3)
        parts = md.topics.get(self._topic)
        if parts is None or parts.error is not None or not parts.partitions:
            return
        assignment = []
        for pid in parts.partitions:
            low, high = self._consumer.get_watermark_offsets(self._partition(self._topic, pid), timeout=3)
            assignment.append(self._partition(self._topic, pid, max(low, high - self._history)))
        self._consumer.assign(assignment)
        self._assigned = True

    def poll(self, budget: int = 20_000) -> list[HighRisk]:
        try:
            if not self._assigned:
                self._assign()
            while self._assigned and budget > 0:
                messages = self._consumer.consume(min(budget, 1000), timeout=0.05)
                if not messages:
                    break
                budget -= len(messages)
                for msg in messages:
                    event = high_risk(msg.value())
                    if event is not None:
                        self.latest.appendleft(event)
        except Exception as exc:  # noqa: BLE001 - the view goes on without the latest events
            self.error = f"{type(exc).__name__}: {exc}"
        return list(self.latest)

    def close(self) -> None:
        self._consumer.close()


def high_risk(value: bytes | None) -> HighRisk | None:
    """The event of a processed-logins record when its risk level is high; else None."""
    if not value:
        return None
    try:
        record = json.loads(value)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("risk_level") != "high":
        return None
    geo = record.get("geo") or {}
    locale = record.get("locale") or {}
    country = geo.get("country_code") or locale.get("country_code") or "--"
    when = str(record.get("event_time", ""))
    return HighRisk(
        at=when[11:19] if len(when) >= 19 else when,
        user=str(record.get("user_id", "?")),
        country=str(country),
        score=int(record.get("risk_score", 0)),
        reasons=tuple(str(r) for r in record.get("reasons", [])),
    )


# --- rendering --------------------------------------------------------------------------------------


def count(value: float) -> str:
    return f"{value:,.0f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:,.1f} s"


def panel(body: RenderableType, title: str, width: int, lines: int = 5) -> Panel:
    """A titled box ``width`` wide and ``lines`` high inside (so the panels of a row line up)."""
    return Panel(
        body, title=title, title_align="left", width=width, height=lines + 2, box=box.ROUNDED, padding=(0, 1)
    )


def kv_table(rows: list[tuple[RenderableType, ...]], justify: tuple[str, ...]) -> Table:
    table = Table.grid(padding=(0, 1), expand=True)
    for i, j in enumerate(justify):
        table.add_column(justify=j, no_wrap=True, ratio=1 if i == 0 else None)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*row)
    return table


def alert_lines(alerts: list[RoutedAlert] | None, width: int) -> list[Text]:
    """Two lines: the count of firing / inhibited alerts, then each active one as
    ``name (severity) first-scope-value -> receivers`` (most severe first), cut at the width; `make
    monitor` lists them whole."""
    if alerts is None:
        return [Text("alerts: no Alertmanager answers", style="dim")]
    active = [a for a in alerts if a.state == "active"]
    muted = len(alerts) - len(active)
    head = Text(f"alerts (Alertmanager): {len(active)} firing", style="bold red" if active else "green")
    if muted:
        head.append(f", {muted} inhibited or silenced", style="dim")
    parts = [
        f"{a.name.removeprefix('LoginStream')} ({a.severity}) {a.scope.split(' ')[0].partition('=')[2]} "
        f"-> {'+'.join(a.receivers) or '-'}"
        for a in active
    ]
    return [head, Text(" · ".join(parts)[: width - 1] if parts else "")]


def render(fig: Figures, title: str, footer: str = "", width: int = 80) -> Group:
    """The view: at most 24 lines at 80 columns (header, three rows of panels, footer, alerts)."""
    left, right = 38, width - 38
    throughput = kv_table(
        [
            ("produced", count(fig.produced), f"{fig.rates['produced']:,.0f}/s"),
            ("processed", count(fig.processed), f"{fig.rates['processed']:,.0f}/s"),
            ("dead-lettered", count(fig.dead_lettered), f"{fig.rates['dead_lettered']:,.0f}/s"),
            ("consumer lag", "?" if fig.lag is None else count(fig.lag), "msgs"),
            ("p99 latency", duration(fig.p99), "1 min"),
        ],
        ("left", "right", "right"),
    )
    scored = sum(fig.risk.values())
    bar_width = 12
    risk_rows: list[tuple[RenderableType, ...]] = []
    for level in LEVELS:
        n = fig.risk.get(level, 0.0)
        share = n / scored if scored else 0.0
        bar = Text("█" * round(share * bar_width), style=LEVEL_STYLE[level])
        risk_rows.append((Text(level, style=LEVEL_STYLE[level]), count(n), f"{share:6.1%}", bar))
    risk_rows.append(("", "", "", ""))
    risk_rows.append(("all", count(scored), "", ""))
    risk = kv_table(risk_rows, ("left", "right", "right", "left"))

    minute = "last min" if fig.window >= WINDOW - 1 else f"last {fig.window:.0f}s"
    order = {name: i for i, name in enumerate(DETECTORS)}
    ranked = sorted(fig.detections.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
    det_rows: list[tuple[RenderableType, ...]] = [(name, count(n)) for name, n in ranked[:5]]
    detections = kv_table(det_rows, ("left", "right"))
    dlq_items = sorted(fig.dead_letters.items(), key=lambda kv: -kv[1])
    dlq_rows: list[tuple[RenderableType, ...]] = [(k, count(v)) for k, v in dlq_items[:5]] or [
        (Text("none", style="dim"), "")
    ]
    dead = kv_table(dlq_rows, ("left", "right"))
    net_rows: list[tuple[RenderableType, ...]] = [(k, count(v)) for k, v in fig.networks] or [
        (Text("none flagged yet", style="dim"), "")
    ]
    nets = kv_table(net_rows, ("left", "right"))

    latest = Table.grid(padding=(0, 1), expand=True)
    latest.add_column(no_wrap=True)
    latest.add_column(no_wrap=True, max_width=14, overflow="ellipsis")
    latest.add_column(no_wrap=True)
    latest.add_column(no_wrap=True, justify="right")
    latest.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    for ev in sorted(fig.latest, key=lambda e: e.at, reverse=True)[:4]:
        latest.add_row(ev.at, ev.user, ev.country, str(ev.score), ", ".join(ev.reasons))
    if not fig.latest:
        latest.add_row(Text("no high-risk event yet", style="dim"), "", "", "", "")

    row1 = Table.grid()
    row1.add_row(panel(throughput, "throughput", left), panel(risk, "risk levels", right))
    row2 = Table.grid()
    row2.add_row(
        panel(detections, f"detections, {minute}", 28),
        panel(dead, "DLQ by error type", 26),
        panel(nets, "top flagged networks", width - 54),
    )
    head = Text(title[: width - 1], style="bold")
    parts: list[RenderableType] = [
        head,
        row1,
        row2,
        panel(latest, "latest high-risk events (time, user, country, score, reasons)", width, 4),
    ]
    if footer:
        parts.append(Text(footer[: width - 1], style="dim"))
    if fig.alerts is not None or footer:
        parts.extend(alert_lines(fig.alerts, width))
    return Group(*parts)


def svg_to_png(svg: Path, png: Path) -> int:
    """Render rich's SVG with rsvg-convert (Debian: librsvg2-bin). rsvg ignores ``textLength``, so the
    font is set to DejaVu Sans Mono at the size whose advance is rich's cell width (0.61 em at 20px), and
    whitespace is preserved (rsvg drops leading spaces, which right-aligned numbers start with)."""
    import shutil
    import subprocess

    rsvg = shutil.which("rsvg-convert")
    if rsvg is None:
        print("no rsvg-convert: install librsvg2-bin (Debian/Ubuntu) or librsvg (brew)", file=sys.stderr)
        return 1
    text = svg.read_text()
    text = text.replace("font-family: Fira Code, monospace;", "font-family: DejaVu Sans Mono, monospace;")
    text = text.replace("font-size: 20px;", f"font-size: {20 * 0.61 / 0.602:.2f}px;")
    text = text.replace("<svg ", '<svg xml:space="preserve" ', 1)
    tmp = png.with_suffix(".render.svg")
    tmp.write_text(text)
    try:
        return subprocess.run([rsvg, "-z", "1.25", str(tmp), "-o", str(png)], check=False).returncode
    finally:
        tmp.unlink()


# --- attaching to `make run` ------------------------------------------------------------------------


class View:
    """Scrapes both services each ``tick`` and renders the figures."""

    def __init__(
        self,
        producer_url: str,
        consumer_url: str,
        tail: HighRiskTail | None,
        alertmanager_url: str | None = None,
    ) -> None:
        self.producer_url, self.consumer_url, self.tail = producer_url, consumer_url, tail
        self.alertmanager_url = alertmanager_url
        self.tracker = Tracker()
        self._last = Scrape(time.monotonic(), {}, {})

    def tick(self) -> Figures:
        consumer = scrape(f"{self.consumer_url}/metrics")  # first: the producer's total, read after it,
        producer = scrape(f"{self.producer_url}/metrics")  # then covers what the consumer has seen
        # a service that stopped answering keeps its last figures (a stopped producer's total stays)
        now = Scrape(
            time.monotonic(),
            self._last.producer if producer is None else producer,
            self._last.consumer if consumer is None else consumer,
        )
        self._last = now
        self.tracker.add(now)
        fig = self.tracker.figures(self.tail.poll() if self.tail else ())
        if self.alertmanager_url:
            try:
                fig.alerts = routed_alerts(self.alertmanager_url)
            except AlertmanagerError:
                fig.alerts = None
        return fig

    def close(self) -> None:
        if self.tail:
            self.tail.close()


def main(argv: list[str] | None = None) -> int:
    from login_devtools import local_pipeline

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--once", action="store_true", help="print one frame and return")
    parser.add_argument("--seconds", type=float, default=2.0, help="with --once: watch this long first")
    parser.add_argument("--svg", type=Path, help="with --once: also save the frame as SVG")
    parser.add_argument("--png", type=Path, help="with --svg: also render it as PNG (rsvg-convert)")
    parser.add_argument("--width", type=int, default=80)
    args = parser.parse_args(argv)
    pipeline = local_pipeline.Pipeline.load(local_pipeline.RUN_DIR)
    consumer = pipeline.proc("login-consumer") if pipeline else None
    producer = pipeline.proc("login-producer") if pipeline else None
    if pipeline is None or consumer is None or producer is None or not consumer.running():
        print("no local pipeline runs: `make run` starts one (or `make demo`)", file=sys.stderr)
        return 1
    view = View(
        producer.url,
        consumer.url,
        HighRiskTail(pipeline.bootstrap, pipeline.topics["output"]),
        pipeline.alertmanager_url,
    )
    title = f"login-stream · {pipeline.bootstrap} · make watch"
    footer = (
        f"Prometheus {pipeline.prometheus_url} · `make monitor` for graph links"
        if pipeline.prometheus_url
        else ""
    )
    try:
        if args.once:
            until = time.monotonic() + args.seconds
            while time.monotonic() < until:
                view.tick()
                time.sleep(1)
            console = Console(width=args.width, record=args.svg is not None)
            console.print(render(view.tick(), title, footer, args.width))
            if args.svg:
                args.svg.write_text(console.export_svg(title="make watch"))
                if args.png:
                    return svg_to_png(args.svg, args.png)
            return 0
        console = Console()
        started = time.monotonic()
        if not console.is_terminal:
            return print_frames(view, console, title, footer, started)
        with Live(console=console, refresh_per_second=2, screen=False) as live:
            try:
                while True:
                    fig = view.tick()
                    up = time.monotonic() - started
                    live.update(render(fig, f"{title} · {up:,.0f}s (Ctrl-C leaves it running)", footer))
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        view.close()


def print_frames(view: View, console: Console, title: str, footer: str, started: float) -> int:
    """Output that is not a terminal (a pipe, a file, CI): a frame now, one every ``FRAME_SECONDS`` and the
    last one on Ctrl-C, as ``top -b`` does, instead of a live region that only a terminal can redraw."""
    printed = -FRAME_SECONDS
    fig = None
    try:
        while True:
            fig = view.tick()
            up = time.monotonic() - started
            if up - printed >= FRAME_SECONDS:
                console.print(render(fig, f"{title} · {up:,.0f}s (Ctrl-C leaves it running)", footer))
                printed = up
            time.sleep(1)
    except KeyboardInterrupt:
        up = time.monotonic() - started
        last = fig if fig is not None else view.tracker.figures(())
        console.print(render(last, f"{title} · {up:,.0f}s (Ctrl-C leaves it running)", footer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
