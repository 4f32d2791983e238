#!/usr/bin/env python3
"""Grafana dashboards as code: writes ``dashboards/*.json`` (Grafana 11/12 dashboard JSON).

``login-dashboards`` regenerates the files; ``--check`` exits 1 when a committed file
differs from what this script generates (a test runs it). Pure Python, no dependencies.

Every panel uses the ``$datasource`` variable (type prometheus) and only the metrics of docs/metrics.md
plus Prometheus' ``up``. ``$namespace`` narrows to one deployment (All matches series without the label,
as in the local demo); ``$consumer_job`` and ``$producer_job`` are hidden variables that find the scrape
jobs from the services' own metrics, so the ``up`` panels work whatever the jobs are called.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from login_devtools import ROOT

OUT = ROOT / "dashboards"

DS: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'
RI = "$__rate_interval"
TAGS = ["login-stream"]
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

Json = dict[str, Any]


# --------------------------------------------------------------------------------------------- targets


def target(
    expr: str,
    legend: str = "__auto",
    *,
    instant: bool = False,
    fmt: str = "time_series",
    ref: str = "A",
) -> Json:
    return {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "format": fmt,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref,
    }


def targets(*items: tuple[str, str]) -> list[Json]:
    """Range targets from (expr, legend) pairs, refIds A, B, C, ..."""
    return [target(expr, legend, ref=chr(ord("A") + i)) for i, (expr, legend) in enumerate(items)]


def quantiles(metric: str, by: str = "", qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list[Json]:
    grouping = f"{by}, le" if by else "le"
    return targets(
        *(
            (
                f"histogram_quantile({q}, sum by ({grouping}) (rate({metric}_bucket{{{NS}}}[{RI}])))",
                f"p{round(q * 100)}" + (f" {{{{{by}}}}}" if by else ""),
            )
            for q in qs
        )
    )


# ---------------------------------------------------------------------------------------------- panels


@dataclass
class Layout:
    """Places panels left to right in rows of 24 columns."""

    y: int = 0
    x: int = 0
    row_h: int = 0
    next_id: int = 1
    panels: list[Json] = field(default_factory=list)

    def add(self, panel: Json, w: int, h: int) -> None:
        if self.x + w > 24:
            self.newline()
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def newline(self) -> None:
        if self.x:
            self.y += self.row_h
        self.x = 0
        self.row_h = 0

    def row(self, title: str) -> None:
        self.newline()
        self.panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "id": self.next_id,
                "panels": [],
                "title": title,
                "type": "row",
            }
        )
        self.next_id += 1
        self.y += 1


def base(kind: str, title: str, description: str, tgts: list[Json]) -> Json:
    return {"datasource": DS, "description": description, "targets": tgts, "title": title, "type": kind}


def timeseries(
    title: str,
    description: str,
    tgts: list[Json],
    unit: str,
    *,
    stack: bool = False,
    bars: bool = False,
    min0: bool = True,
) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else (25 if stack else 10),
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
    }
    defaults: Json = {"color": {"mode": "palette-classic"}, "custom": custom, "unit": unit}
    if min0:
        defaults["min"] = 0
    panel = base("timeseries", title, description, tgts)
    panel["fieldConfig"] = {"defaults": defaults, "overrides": []}
    panel["options"] = {
        "legend": {"calcs": ["mean", "max", "lastNotNull"], "displayMode": "table", "placement": "bottom"},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel


def stat(
    title: str,
    description: str,
    expr: str,
    unit: str,
    *,
    thresholds: list[tuple[float | None, str]] | None = None,
    decimals: int | None = None,
) -> Json:
    steps = [{"color": c, "value": v} for v, c in (thresholds or [(None, "green")])]
    defaults: Json = {
        "color": {"mode": "thresholds"},
        "thresholds": {"mode": "absolute", "steps": steps},
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    panel = base("stat", title, description, [target(expr, "__auto")])
    panel["fieldConfig"] = {"defaults": defaults, "overrides": []}
    panel["options"] = {
        "colorMode": "value",
        "graphMode": "area",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": "auto",
    }
    return panel


def bargauge(title: str, description: str, tgt: Json, unit: str) -> Json:
    panel = base("bargauge", title, description, [tgt])
    panel["fieldConfig"] = {
        "defaults": {
            "color": {"mode": "continuous-GrYlRd"},
            "min": 0,
            "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
            "unit": unit,
        },
        "overrides": [],
    }
    panel["options"] = {
        "displayMode": "gradient",
        "minVizHeight": 16,
        "minVizWidth": 8,
        "namePlacement": "left",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showUnfilled": True,
        "sizing": "auto",
        "valueMode": "color",
    }
    return panel


def piechart(title: str, description: str, tgt: Json) -> Json:
    panel = base("piechart", title, description, [tgt])
    panel["fieldConfig"] = {
        "defaults": {"color": {"mode": "palette-classic"}, "unit": "short"},
        "overrides": [],
    }
    panel["options"] = {
        "displayLabels": ["percent"],
        "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "values": ["value"]},
        "pieType": "donut",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return panel


def table(title: str, description: str, tgt: Json, label: str, value_title: str) -> Json:
    panel = base("table", title, description, [tgt])
    panel["fieldConfig"] = {
        "defaults": {
            "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True},
            "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
        },
        "overrides": [
            {
                "matcher": {"id": "byName", "options": "Value"},
                "properties": [
                    {"id": "custom.cellOptions", "value": {"mode": "gradient", "type": "gauge"}},
                    {"id": "color", "value": {"mode": "continuous-YlRd"}},
                ],
            }
        ],
    }
    panel["options"] = {
        "cellHeight": "sm",
        "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
        "showHeader": True,
        "sortBy": [{"desc": True, "displayName": value_title}],
    }
    panel["transformations"] = [
        {
            "id": "organize",
            "options": {
                "excludeByName": {"Time": True},
                "indexByName": {label: 0, "Value": 1},
                "renameByName": {"Value": value_title},
            },
        }
    ]
    return panel


def heatmap(title: str, description: str, tgt: Json, unit: str) -> Json:
    panel = base("heatmap", title, description, [tgt])
    panel["fieldConfig"] = {
        "defaults": {"custom": {"scaleDistribution": {"type": "linear"}}},
        "overrides": [],
    }
    panel["options"] = {
        "calculate": False,
        "cellGap": 1,
        "color": {
            "exponent": 0.5,
            "fill": "dark-orange",
            "mode": "scheme",
            "scale": "exponential",
            "scheme": "Oranges",
        },
        "legend": {"show": True},
        "rowsFrame": {"layout": "auto"},
        "tooltip": {"mode": "single", "yHistogram": True},
        "yAxis": {"axisPlacement": "left", "unit": unit},
    }
    return panel


# ------------------------------------------------------------------------------------------- templating


def datasource_var() -> Json:
    return {
        "current": {},
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "type": "datasource",
    }


def query_var(name: str, label: str, query: str, *, hide: int = 0, all_value: str | None = None) -> Json:
    """A multi-value query variable whose default is All: ``all_value`` if given (".*" also matches
    series without the label), else Grafana's regex of every value found."""
    var: Json = {"allValue": all_value} if all_value is not None else {}
    return var | {
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": DS,
        "definition": query,
        "hide": hide,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    layout: Layout,
    variables: list[Json],
    *,
    tags: tuple[str, ...] = (),
) -> Json:
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": False,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": TAGS,
                "targetBlank": False,
                "title": "login-stream",
                "type": "dashboards",
            }
        ],
        "panels": layout.panels,
        "refresh": "10s",
        "schemaVersion": 39,
        "tags": [*TAGS, *tags],
        "templating": {"list": [datasource_var(), *variables]},
        "time": {"from": "now-30m", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


NAMESPACE_VAR = query_var(
    "namespace", "Namespace", "label_values(login_consumer_events_consumed_total, namespace)", all_value=".*"
)


# ------------------------------------------------------------------------------------ pipeline overview

REPARTITION_TOPIC = ".+-network-repartition"  # <GROUP_ID>-network-repartition: the network stage's input


def stage_lag(selector: str = "") -> str:
    """login_consumer_lag_messages with a ``stage`` label: ``network`` on the repartition topic, ``user``
    on every other (the input topic). The alert LoginStreamStageLagging uses the same expression."""
    return (
        "label_replace(label_replace("
        f'login_consumer_lag_messages{selector}, "stage", "user", "topic", ".*"), '
        f'"stage", "network", "topic", "{REPARTITION_TOPIC}")'
    )


def pipeline() -> Json:
    c = f"{{{NS}}}"
    lay = Layout()
    lay.row("Now")
    lay.add(
        stat(
            "Input",
            "Messages read from the input topic per second.",
            f"sum(rate(login_consumer_events_consumed_total{c}[{RI}]))",
            "ops",
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Output",
            "Events written to the output topic per second.",
            f"sum(rate(login_consumer_events_processed_total{c}[{RI}]))",
            "ops",
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Dead-letter share",
            "Share of the messages read that went to the dead-letter topic.",
            f"sum(rate(login_consumer_events_dlq_total{c}[{RI}]))"
            f" / sum(rate(login_consumer_events_consumed_total{c}[{RI}]))",
            "percentunit",
            thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")],
            decimals=2,
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Consumer lag",
            "Messages not yet consumed, summed over all assigned partitions of both stages' input topics.",
            f"sum(login_consumer_lag_messages{c})",
            "short",
            thresholds=[(None, "green"), (1000, "orange"), (10000, "red")],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "p99 event-to-output",
            "99th percentile of input message timestamp to acknowledged output.",
            f"histogram_quantile(0.99, sum by (le) "
            f"(rate(login_consumer_event_latency_seconds_bucket{c}[{RI}])))",
            "s",
            thresholds=[(None, "green"), (1, "orange"), (5, "red")],
        ),
        4,
        4,
    )
    up_panel = stat(
        "Replicas up",
        "Scrape targets up per job (consumer and producer).",
        f'sum by (job) (up{{job=~"$consumer_job|$producer_job", {NS}}})',
        "short",
        thresholds=[(None, "red"), (1, "green")],
    )
    up_panel["targets"][0]["legendFormat"] = "{{job}}"
    lay.add(up_panel, 4, 4)

    lay.row("Throughput")
    lay.add(
        timeseries(
            "Input, output and dead-letter rate",
            "Events per second: delivered by the producer, read by the consumer, written to the output "
            "topic, and dead-lettered.",
            targets(
                (f"sum(rate(login_producer_events_delivered_total{c}[{RI}]))", "produced (acknowledged)"),
                (f"sum(rate(login_consumer_events_consumed_total{c}[{RI}]))", "input (consumed)"),
                (f"sum(rate(login_consumer_events_processed_total{c}[{RI}]))", "output (processed)"),
                (f"sum(rate(login_consumer_events_dlq_total{c}[{RI}]))", "dead-lettered"),
            ),
            "ops",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Dead-lettered by reason",
            "Messages sent to the dead-letter topic per second, by error type (dlq-error-type header).",
            targets((f"sum by (reason) (rate(login_consumer_events_dlq_total{c}[{RI}]))", "{{reason}}")),
            "ops",
            stack=True,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Produced by scenario",
            "Events the producer hands to Kafka per second, by simulated scenario (ground truth).",
            targets((f"sum by (scenario) (rate(login_producer_events_sent_total{c}[{RI}]))", "{{scenario}}")),
            "ops",
            stack=True,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Errors by type",
            "Consumer errors per second by type (delivery, commit, processing, kafka) and failed commits.",
            targets(
                (f"sum by (type) (rate(login_consumer_errors_total{c}[{RI}]))", "{{type}}"),
                (f"sum(rate(login_consumer_commit_failures_total{c}[{RI}]))", "commit failures"),
            ),
            "ops",
        ),
        12,
        8,
    )

    lay.row("Stages")
    lay.add(
        timeseries(
            "Events per stage",
            "Events each stage of the topology takes in per second: user from the input topic, network from "
            "the repartition topic (the same events re-keyed by network, when credential_stuffing runs).",
            targets((f"sum by (stage) (rate(login_consumer_stage_events_total{c}[{RI}]))", "{{stage}}")),
            "ops",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Lag per stage",
            "Messages each stage is behind on its input topic (user: the input topic; network: "
            "<group>-network-repartition), summed over partitions. Alert: LoginStreamStageLagging.",
            targets((f"sum by (stage) ({stage_lag(c)})", "{{stage}}")),
            "short",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Commits per replica",
            "Checkpoints committed per second by each replica (offsets, or one transaction in exactly-once "
            "mode; one every COMMIT_INTERVAL_MS while it has work).",
            targets((f"sum by (instance) (rate(login_consumer_commits_total{c}[{RI}]))", "{{instance}}")),
            "ops",
        ),
        8,
        8,
    )

    lay.row("Latency")
    lay.add(
        timeseries(
            "Processing time per event",
            "Consumer processing time per event (validate, enrich, score, route): p50, p95, p99.",
            quantiles("login_consumer_processing_seconds"),
            "s",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Event-to-output latency",
            "Input message timestamp to acknowledged output: p50, p95, p99.",
            quantiles("login_consumer_event_latency_seconds"),
            "s",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Producer delivery latency",
            "Producer send to broker acknowledgement: p50, p95, p99.",
            quantiles("login_producer_delivery_latency_seconds"),
            "s",
        ),
        8,
        8,
    )
    lay.add(
        heatmap(
            "Processing time distribution",
            "Events per processing-time bucket over time.",
            target(
                f"sum by (le) (increase(login_consumer_processing_seconds_bucket{c}[{RI}]))",
                "{{le}}",
                fmt="heatmap",
            ),
            "s",
        ),
        24,
        8,
    )

    lay.row("Kafka consumer group")
    lay.add(
        timeseries(
            "Consumer lag per partition",
            "Messages behind the end of each assigned partition (scrape-time, per consumer replica).",
            targets(
                (
                    f"sum by (topic, partition) (login_consumer_lag_messages{c})",
                    "{{topic}}/{{partition}}",
                )
            ),
            "short",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Assigned partitions per replica",
            "Partitions currently assigned to each consumer replica.",
            targets((f"sum by (instance) (login_consumer_assigned_partitions{c})", "{{instance}}")),
            "short",
            stack=True,
        ),
        6,
        8,
    )
    lay.add(
        timeseries(
            "Rebalances",
            "Rebalance callbacks (assign, revoke, lost) per interval.",
            targets((f"sum by (event) (increase(login_consumer_rebalances_total{c}[{RI}]))", "{{event}}")),
            "short",
            bars=True,
        ),
        6,
        8,
    )

    lay.row("Replicas")
    lay.add(
        timeseries(
            "Targets up",
            "Prometheus scrape health of every consumer and producer replica (1 = up).",
            targets((f'up{{job=~"$consumer_job|$producer_job", {NS}}}', "{{job}} {{instance}}")),
            "short",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Detector state size",
            "Entries held by each stateful detector store, summed over replicas.",
            targets((f"sum by (store) (login_consumer_state_entries{c})", "{{store}}")),
            "short",
        ),
        12,
        8,
    )
    return dashboard(
        "login-pipeline",
        "login-stream / Pipeline overview",
        "Throughput, dead-lettering, latency, consumer lag and health of the login-stream pipeline.",
        lay,
        [
            NAMESPACE_VAR,
            query_var(
                "consumer_job",
                "Consumer job",
                'label_values(login_consumer_events_consumed_total{namespace=~"$namespace"}, job)',
                hide=2,
            ),
            query_var(
                "producer_job",
                "Producer job",
                'label_values(login_producer_events_delivered_total{namespace=~"$namespace"}, job)',
                hide=2,
            ),
        ],
    )


# ------------------------------------------------------------------------------------------- login risk


def hour_weekday_matrix() -> Json:
    """Logins per (weekday, hour) as a colour-graded matrix: a table after 'grouping to matrix'."""
    panel = base(
        "table",
        "Logins by hour of day (UTC) and weekday",
        "Logins in the selected time range per hour of day (columns, UTC) and weekday (rows).",
        [
            target(
                f"sum by (weekday, hour) (increase(login_consumer_logins_by_time_total{{{NS}}}[$__range]))",
                instant=True,
                fmt="table",
            )
        ],
    )
    corner = "weekday\\hour"
    panel["fieldConfig"] = {
        "defaults": {
            "color": {"mode": "continuous-BlYlRd"},
            "custom": {"align": "center", "cellOptions": {"type": "color-background", "mode": "gradient"}},
            "decimals": 0,
            "unit": "short",
        },
        "overrides": [
            {
                "matcher": {"id": "byName", "options": corner},
                "properties": [
                    {"id": "displayName", "value": "weekday"},
                    {"id": "custom.cellOptions", "value": {"type": "auto"}},
                    {
                        "id": "mappings",
                        "value": [
                            {
                                "options": {
                                    str(i): {"index": i, "text": day} for i, day in enumerate(WEEKDAYS)
                                },
                                "type": "value",
                            }
                        ],
                    },
                ],
            }
        ],
    }
    panel["options"] = {"cellHeight": "sm", "showHeader": True}
    panel["transformations"] = [
        {
            "id": "groupingToMatrix",
            "options": {"columnField": "hour", "rowField": "weekday", "valueField": "Value"},
        },
        {
            "id": "organize",
            "options": {"indexByName": {corner: 0, **{str(h): h + 1 for h in range(24)}}},
        },
        {"id": "sortBy", "options": {"sort": [{"field": corner}]}},
    ]
    return panel


def geomap() -> Json:
    panel = base(
        "geomap",
        "Logins by country",
        "Logins in the selected time range by ISO country of the client IP.",
        [
            target(
                f"sum by (country) (increase(login_consumer_logins_total{{{NS}}}[$__range]))",
                instant=True,
                fmt="table",
            )
        ],
    )
    panel["fieldConfig"] = {
        "defaults": {
            "color": {"mode": "continuous-BlPu"},
            "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
            "unit": "short",
        },
        "overrides": [],
    }
    panel["options"] = {
        "basemap": {"config": {}, "name": "Basemap", "type": "default"},
        "controls": {"mouseWheelZoom": False, "showAttribution": True, "showZoom": True},
        "layers": [
            {
                "config": {
                    "showLegend": True,
                    "style": {
                        "color": {"field": "Value", "fixed": "dark-green"},
                        "opacity": 0.6,
                        "size": {"field": "Value", "fixed": 5, "max": 25, "min": 3},
                        "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                    },
                },
                "location": {
                    "gazetteer": "public/gazetteer/countries.json",
                    "lookup": "country",
                    "mode": "lookup",
                },
                "name": "Logins",
                "tooltip": True,
                "type": "markers",
            }
        ],
        "tooltip": {"mode": "details"},
        "view": {"allLayers": True, "id": "zero", "lat": 20, "lon": 0, "zoom": 1},
    }
    return panel


def risk() -> Json:
    c = f"{{{NS}}}"
    rng = "$__range"
    lay = Layout()
    lay.row("Risk")
    lay.add(
        stat(
            "High-risk share",
            "Share of scored logins rated high risk.",
            f'sum(rate(login_consumer_risk_level_total{{level="high", {NS}}}[{RI}]))'
            f" / sum(rate(login_consumer_risk_level_total{c}[{RI}]))",
            "percentunit",
            thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")],
            decimals=2,
        ),
        4,
        8,
    )
    lay.add(
        bargauge(
            "Risk score distribution",
            "Logins per risk-score band (0-100) in the selected time range.",
            target(
                f"sum by (le) (increase(login_consumer_risk_score_bucket{c}[{rng}]))",
                "{{le}}",
                instant=True,
                fmt="heatmap",
            ),
            "short",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Risk levels over time",
            "Scored logins per second by risk level.",
            targets((f"sum by (level) (rate(login_consumer_risk_level_total{c}[{RI}]))", "{{level}}")),
            "ops",
            stack=True,
        ),
        12,
        8,
    )
    lay.add(
        heatmap(
            "Risk score over time",
            "Logins per risk-score band over time.",
            target(
                f"sum by (le) (increase(login_consumer_risk_score_bucket{c}[{RI}]))",
                "{{le}}",
                fmt="heatmap",
            ),
            "short",
        ),
        24,
        8,
    )

    lay.row("Detections")
    lay.add(
        timeseries(
            "Detections by type",
            "Stateful detections per second by detector.",
            targets((f"sum by (detector) (rate(login_consumer_detections_total{c}[{RI}]))", "{{detector}}")),
            "ops",
            stack=True,
        ),
        12,
        8,
    )
    lay.add(
        bargauge(
            "Detections in range",
            "Detections by detector in the selected time range.",
            target(
                f"sort_desc(sum by (detector) (increase(login_consumer_detections_total{c}[{rng}])))",
                "{{detector}}",
                instant=True,
            ),
            "short",
        ),
        12,
        8,
    )
    lay.add(
        table(
            "Top flagged users",
            "Users with the most flagged events (top 20 kept by each consumer replica).",
            target(
                f"topk(20, sum by (user_id) (login_consumer_flagged_user_events{c}))",
                instant=True,
                fmt="table",
            ),
            "user_id",
            "flagged events",
        ),
        12,
        9,
    )
    lay.add(
        table(
            "Top flagged IPs",
            "Client IPs with the most flagged events (top 20 kept by each consumer replica).",
            target(
                f"topk(20, sum by (ip) (login_consumer_flagged_ip_events{c}))",
                instant=True,
                fmt="table",
            ),
            "ip",
            "flagged events",
        ),
        12,
        9,
    )

    lay.row("Geography and time")
    lay.add(geomap(), 12, 10)
    lay.add(
        bargauge(
            "Logins by continent",
            "Logins in the selected time range by continent of the client IP.",
            target(
                f"sort_desc(sum by (continent) (increase(login_consumer_logins_total{c}[{rng}])))",
                "{{continent}}",
                instant=True,
            ),
            "short",
        ),
        6,
        10,
    )
    lay.add(
        bargauge(
            "US logins by census region",
            "Logins from the United States in the selected time range by census region.",
            target(
                f"sort_desc(sum by (region) "
                f'(increase(login_consumer_logins_total{{country="US", {NS}}}[{rng}])))',
                "{{region}}",
                instant=True,
            ),
            "short",
        ),
        6,
        10,
    )
    lay.add(
        bargauge(
            "Top countries",
            "The 15 countries with the most logins in the selected time range.",
            target(
                f"topk(15, sum by (country) (increase(login_consumer_logins_total{c}[{rng}])))",
                "{{country}}",
                instant=True,
            ),
            "short",
        ),
        8,
        10,
    )
    lay.add(hour_weekday_matrix(), 16, 10)

    lay.row("Clients")
    lay.add(
        piechart(
            "Platform mix",
            "Logins in the selected time range by platform.",
            target(
                f"sum by (platform) (increase(login_consumer_logins_by_platform_total{c}[{rng}]))",
                "{{platform}}",
                instant=True,
            ),
        ),
        8,
        9,
    )
    lay.add(
        piechart(
            "App version mix",
            "Logins in the selected time range by app version (major.minor).",
            target(
                f"sum by (app_version) (increase(login_consumer_logins_by_platform_total{c}[{rng}]))",
                "{{app_version}}",
                instant=True,
            ),
        ),
        8,
        9,
    )
    lay.add(
        timeseries(
            "Logins by platform and version",
            "Logins per second by platform and app version.",
            targets(
                (
                    f"sum by (platform, app_version) "
                    f"(rate(login_consumer_logins_by_platform_total{c}[{RI}]))",
                    "{{platform}} {{app_version}}",
                )
            ),
            "ops",
            stack=True,
        ),
        8,
        9,
    )
    return dashboard(
        "login-risk",
        "login-stream / Login risk",
        "Risk scores, detections, flagged users and IPs, geography, time of day and client mix.",
        lay,
        [NAMESPACE_VAR],
    )


# ------------------------------------------------------------------------------------ Kafka (Strimzi)
# Written for the names the Strimzi Metrics Reporter serves (`metricsConfig.type: strimziMetricsReporter`
# in k8s/kafka/kafka.yaml, and the local broker of local_kafka.py), with Strimzi 1.2.0's default
# allow list. Labels: `namespace` (prometheus-operator), `strimzi_io_cluster` and `kubernetes_pod_name`
# (relabelings of the PodMonitor in k8s/monitoring/podmonitors.yaml). Shipped by the chart into the
# Grafana folder `strimzi` (dashboards.kafka in charts/login-stream/values.yaml).

KAFKA_SEL = 'namespace=~"$namespace", strimzi_io_cluster=~"$cluster", kubernetes_pod_name=~"$node"'
KAFKA_TAGS = ("kafka", "strimzi")


def kafka_vars(anchor: str) -> list[Json]:
    """namespace -> Kafka cluster -> node, found from ``anchor`` (a metric every node serves)."""
    return [
        query_var("namespace", "Namespace", f"label_values({anchor}, namespace)", all_value=".*"),
        query_var(
            "cluster",
            "Kafka cluster",
            f'label_values({anchor}{{namespace=~"$namespace"}}, strimzi_io_cluster)',
            all_value=".*",
        ),
        query_var(
            "node",
            "Node",
            f'label_values({anchor}{{namespace=~"$namespace", strimzi_io_cluster=~"$cluster"}}, '
            "kubernetes_pod_name)",
            all_value=".*",
        ),
    ]


def kafka_stat(title: str, description: str, expr: str, bad_above: float | None = None) -> Json:
    thresholds: list[tuple[float | None, str]] = [(None, "green")]
    if bad_above is not None:
        thresholds.append((bad_above, "red"))
    return stat(title, description, expr, "short", thresholds=thresholds, decimals=0)


def kafka() -> Json:
    k = f"{{{KAFKA_SEL}}}"
    topic = f'{{{KAFKA_SEL}, topic=~"$topic", topic!=""}}'
    lay = Layout()
    lay.row("Cluster")
    stats = [
        (
            "Brokers running",
            "Nodes whose broker state is RUNNING (3).",
            f"count(kafka_server_kafkaserver_brokerstate{k} == 3)",
            None,
        ),
        (
            "Active controller",
            "Nodes that are the active KRaft controller: exactly one in a healthy cluster.",
            f"sum(kafka_controller_kafkacontroller_activecontrollercount{k})",
            1.5,
        ),
        (
            "Partitions",
            "Partition replicas hosted by the brokers.",
            f"sum(kafka_server_replicamanager_partitioncount{k})",
            None,
        ),
        (
            "Under-replicated",
            "Partitions whose in-sync replicas are fewer than their replicas.",
            f"sum(kafka_server_replicamanager_underreplicatedpartitions{k})",
            0.5,
        ),
        (
            "Under min ISR",
            "Partitions with fewer in-sync replicas than min.insync.replicas: acks=all writes fail.",
            f"sum(kafka_server_replicamanager_underminisrpartitioncount{k})",
            0.5,
        ),
        (
            "Offline partitions",
            "Partitions without a leader, as seen by the active controller.",
            f"sum(kafka_controller_kafkacontroller_offlinepartitionscount{k})",
            0.5,
        ),
    ]
    for title, description, expr, bad_above in stats:
        lay.add(kafka_stat(title, description, expr, bad_above), 4, 4)

    lay.row("Throughput")
    for title, metric, unit in (
        ("Bytes in by topic", "bytesinpersec", "Bps"),
        ("Bytes out by topic", "bytesoutpersec", "Bps"),
        ("Messages in by topic", "messagesinpersec", "ops"),
    ):
        lay.add(
            timeseries(
                title,
                f"Per second, per topic ({metric}, BrokerTopicMetrics), over the selected nodes.",
                targets(
                    (
                        f"sum by (topic) (rate(kafka_server_brokertopicmetrics_{metric}_total{topic}[{RI}]))",
                        "{{topic}}",
                    )
                ),
                unit,
                stack=True,
            ),
            8,
            8,
        )
    lay.add(
        timeseries(
            "Produce and fetch requests",
            "Produce and fetch requests per second over the selected topics, and those that failed over "
            "all topics (the broker creates a topic's failure meters only at its first failure).",
            targets(
                *(
                    (
                        f"sum(rate(kafka_server_brokertopicmetrics_total{what}requestspersec_total{topic}[{RI}]))",
                        what,
                    )
                    for what in ("produce", "fetch")
                ),
                *(
                    (
                        f"sum(rate(kafka_server_brokertopicmetrics_failed{what}requestspersec_total"
                        f'{{{KAFKA_SEL}, topic=""}}[{RI}]))',
                        f"failed {what} (all topics)",
                    )
                    for what in ("produce", "fetch")
                ),
            ),
            "reqps",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Log size by topic",
            "Bytes on disk per topic (all partitions, all selected nodes).",
            targets((f"sum by (topic) (kafka_log_log_size{topic})", "{{topic}}")),
            "bytes",
            stack=True,
        ),
        12,
        8,
    )

    lay.row("Requests")
    lay.add(
        timeseries(
            "Requests by type",
            "Requests per second by API (Produce, Fetch, Metadata, OffsetCommit, ...).",
            targets(
                (
                    f"sum by (request) (rate(kafka_network_requestmetrics_requestspersec_total{k}[{RI}]))"
                    " > 0",
                    "{{request}}",
                )
            ),
            "reqps",
            stack=True,
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Request time p99",
            "99th percentile of the total time of produce and fetch requests (broker-side summary).",
            targets(
                (
                    f"max by (request) (kafka_network_requestmetrics_totaltimems{{{KAFKA_SEL}, "
                    'quantile="0.99", '
                    'request=~"Produce|FetchConsumer|FetchFollower|OffsetCommit"})',
                    "{{request}}",
                )
            ),
            "ms",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Idle capacity",
            "Share of time the network processors and the request handler threads are idle; "
            "near 0 means the broker is saturated.",
            targets(
                (
                    f"avg by (kubernetes_pod_name) "
                    f"(kafka_network_socketserver_networkprocessoravgidlepercent{k})",
                    "network {{kubernetes_pod_name}}",
                ),
                (
                    f"avg by (kubernetes_pod_name) (rate("
                    f"kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_total{k}[{RI}]))"
                    " / 1e9",
                    "request handlers {{kubernetes_pod_name}}",
                ),
            ),
            "percentunit",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Connections by listener",
            "Open client connections per listener.",
            targets(
                (
                    f"sum by (listener) (kafka_server_socket_server_metrics_connection_count{k})",
                    "{{listener}}",
                )
            ),
            "short",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Request queue",
            "Requests waiting for a handler thread.",
            targets(
                (
                    f"sum by (kubernetes_pod_name) (kafka_server_request_queue_size{k})",
                    "{{kubernetes_pod_name}}",
                )
            ),
            "short",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Disk I/O",
            "Bytes the broker process read from and wrote to disk per second (Linux I/O accounting).",
            targets(
                (
                    f"sum by (kubernetes_pod_name) "
                    f"(rate(kafka_server_kafkaserver_linux_disk_write_bytes{k}[{RI}]))",
                    "write {{kubernetes_pod_name}}",
                ),
                (
                    f"sum by (kubernetes_pod_name) "
                    f"(rate(kafka_server_kafkaserver_linux_disk_read_bytes{k}[{RI}]))",
                    "read {{kubernetes_pod_name}}",
                ),
            ),
            "Bps",
        ),
        8,
        8,
    )

    lay.row("JVM")
    lay.add(
        timeseries(
            "JVM memory",
            "Heap and non-heap memory in use.",
            targets(
                (
                    f"sum by (kubernetes_pod_name, area) (jvm_memory_used_bytes{k})",
                    "{{area}} {{kubernetes_pod_name}}",
                )
            ),
            "bytes",
        ),
        6,
        8,
    )
    lay.add(
        timeseries(
            "GC time",
            "Share of time spent in garbage collection, by collector.",
            targets(
                (
                    f"sum by (kubernetes_pod_name, gc) (rate(jvm_gc_collection_seconds_sum{k}[{RI}]))",
                    "{{gc}} {{kubernetes_pod_name}}",
                )
            ),
            "percentunit",
        ),
        6,
        8,
    )
    lay.add(
        timeseries(
            "CPU",
            "CPU cores used by the Kafka process.",
            targets(
                (
                    f"sum by (kubernetes_pod_name) (rate(process_cpu_seconds_total{k}[{RI}]))",
                    "{{kubernetes_pod_name}}",
                )
            ),
            "short",
        ),
        6,
        8,
    )
    lay.add(
        timeseries(
            "Threads and file descriptors",
            "JVM threads and open file descriptors (segments, sockets).",
            targets(
                (f"sum by (kubernetes_pod_name) (jvm_threads_current{k})", "threads {{kubernetes_pod_name}}"),
                (f"sum by (kubernetes_pod_name) (process_open_fds{k})", "fds {{kubernetes_pod_name}}"),
            ),
            "short",
        ),
        6,
        8,
    )
    variables = kafka_vars("kafka_server_kafkaserver_brokerstate")
    variables.append(
        query_var(
            "topic",
            "Topic",
            f"label_values(kafka_log_log_size{k}, topic)",
        )
    )
    return dashboard(
        "login-stream-kafka",
        "login-stream / Kafka",
        "Brokers of the Strimzi Kafka cluster: partitions, throughput per topic, requests, connections, "
        "storage and JVM (Strimzi Metrics Reporter).",
        lay,
        variables,
        tags=KAFKA_TAGS,
    )


def kraft() -> Json:
    k = f"{{{KAFKA_SEL}}}"
    lay = Layout()
    lay.row("Quorum")
    lay.add(
        table(
            "Raft state",
            "Each node's role in the metadata quorum (leader, follower, candidate, observer...).",
            target(
                f"max by (kubernetes_pod_name, current_state) "
                f"(kafka_server_raft_metrics_current_state_info{k})",
                "{{kubernetes_pod_name}}",
                instant=True,
                fmt="table",
            ),
            "current_state",
            "State",
        ),
        8,
        6,
    )
    for title, description, metric in (
        ("Quorum leader", "Node id of the quorum leader, as each node sees it.", "current_leader"),
        ("Epoch", "Current quorum epoch: it grows with every leader election.", "current_epoch"),
        ("Voters", "Voters in the quorum (controllers).", "number_of_voters"),
    ):
        lay.add(
            stat(
                title,
                description,
                f"max(kafka_server_raft_metrics_{metric}{k})",
                "none",
                decimals=0,
            ),
            4,
            6,
        )
    lay.row("Metadata log")
    lay.add(
        timeseries(
            "High watermark and log end offset",
            "Offsets of the __cluster_metadata log per node: the high watermark follows the log end.",
            targets(
                (
                    f"max by (kubernetes_pod_name) (kafka_server_raft_metrics_high_watermark{k})",
                    "high watermark {{kubernetes_pod_name}}",
                ),
                (
                    f"max by (kubernetes_pod_name) (kafka_server_raft_metrics_log_end_offset{k})",
                    "log end {{kubernetes_pod_name}}",
                ),
            ),
            "short",
            min0=False,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Records appended and fetched",
            "Metadata records per second appended by the leader and fetched by followers.",
            targets(
                (
                    f"sum by (kubernetes_pod_name) (kafka_server_raft_metrics_append_records_rate{k})",
                    "append {{kubernetes_pod_name}}",
                ),
                (
                    f"sum by (kubernetes_pod_name) (kafka_server_raft_metrics_fetch_records_rate{k})",
                    "fetch {{kubernetes_pod_name}}",
                ),
            ),
            "ops",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Commit latency",
            "Average and maximum time to commit a metadata record.",
            targets(
                (
                    f"max by (kubernetes_pod_name) (kafka_server_raft_metrics_commit_latency_avg{k})",
                    "avg {{kubernetes_pod_name}}",
                ),
                (
                    f"max by (kubernetes_pod_name) (kafka_server_raft_metrics_commit_latency_max{k})",
                    "max {{kubernetes_pod_name}}",
                ),
            ),
            "ms",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Metadata apply lag",
            "How far behind the last committed metadata record the controller's applied state is.",
            targets(
                (
                    f"max by (kubernetes_pod_name) "
                    f"(kafka_controller_kafkacontroller_lastappliedrecordlagms{k})",
                    "{{kubernetes_pod_name}}",
                )
            ),
            "ms",
        ),
        12,
        8,
    )
    lay.row("Controller")
    lay.add(
        timeseries(
            "Brokers registered",
            "Active and fenced brokers known to the active controller.",
            targets(
                (f"sum(kafka_controller_kafkacontroller_activebrokercount{k})", "active"),
                (f"sum(kafka_controller_kafkacontroller_fencedbrokercount{k})", "fenced"),
            ),
            "short",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Topics and partitions",
            "Topics and partitions in the cluster metadata.",
            targets(
                (f"max(kafka_controller_kafkacontroller_globaltopiccount{k})", "topics"),
                (f"max(kafka_controller_kafkacontroller_globalpartitioncount{k})", "partitions"),
            ),
            "short",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Quorum traffic",
            "Bytes per second between the quorum members (the raft channel).",
            targets(
                (
                    f"sum by (kubernetes_pod_name) "
                    f"(rate(kafka_server_raft_channel_metrics_incoming_byte{k}[{RI}]))",
                    "in {{kubernetes_pod_name}}",
                ),
                (
                    f"sum by (kubernetes_pod_name) "
                    f"(rate(kafka_server_raft_channel_metrics_outgoing_byte{k}[{RI}]))",
                    "out {{kubernetes_pod_name}}",
                ),
            ),
            "Bps",
        ),
        8,
        8,
    )
    return dashboard(
        "login-stream-kraft",
        "login-stream / KRaft",
        "The KRaft metadata quorum of the Strimzi Kafka cluster: roles, epoch, metadata log, commit "
        "latency and the active controller's view (Strimzi Metrics Reporter).",
        lay,
        kafka_vars("kafka_server_raft_metrics_current_state_info"),
        tags=KAFKA_TAGS,
    )


# ------------------------------------------------------------------------------------------------- main

DASHBOARDS = {
    "login-pipeline.json": pipeline,
    "login-risk.json": risk,
    # The Kafka cluster's, in a folder of their own (the chart ships them to Grafana's folder "strimzi").
    "strimzi/kafka.json": kafka,
    "strimzi/kraft.json": kraft,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    parser.add_argument("--out", type=Path, default=OUT, help="output directory (default: dashboards/)")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = args.out / name
        text = render(build)
        if args.check:
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            if old != text:
                stale.append(name)
                sys.stdout.writelines(
                    list(
                        difflib.unified_diff(old.splitlines(True), text.splitlines(True), name, "generated")
                    )[:40]
                )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    if stale:
        print(f"\nout of date: {', '.join(stale)}; run `make dashboards`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
