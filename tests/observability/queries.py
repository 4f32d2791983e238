"""Every PromQL expression the dashboards and alert rules ship, and Grafana's variable substitution."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
RULES = ROOT / "monitoring" / "rules" / "login-stream.rules.yaml"

_LABEL_VALUES = re.compile(
    r"^\s*label_values\((?P<selector>.*),\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$"
)
_VARIABLE = re.compile(
    r"\$(\{(?P<braced>[a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?\}|(?P<plain>[a-zA-Z_][a-zA-Z0-9_]*))"
)
_REGEX_SPECIALS = re.compile(r"([.*+?^${}()|\[\]\\])")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    panel_type: str
    ref: str
    expr: str
    instant: bool

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} [{self.ref}]"


@dataclass(frozen=True)
class AlertQuery:
    group: str
    alert: str
    expr: str


def dashboard_files() -> list[Path]:
    """The project's dashboards (dashboards/*.json) and the Kafka cluster's (dashboards/strimzi/*.json)."""
    return sorted(DASHBOARDS.rglob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows; rows themselves are not yielded."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel_queries() -> list[PanelQuery]:
    out = []
    for path in dashboard_files():
        dash = load_dashboard(path)
        for panel in iter_panels(dash):
            for tgt in panel.get("targets", []):
                if tgt.get("hide"):
                    continue
                out.append(
                    PanelQuery(
                        dashboard=dash["title"],
                        panel=panel["title"],
                        panel_type=panel["type"],
                        ref=tgt["refId"],
                        expr=tgt["expr"],
                        instant=bool(tgt.get("instant")) and not tgt.get("range"),
                    )
                )
    return out


def alert_queries() -> list[AlertQuery]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [
        AlertQuery(group["name"], rule.get("alert") or rule["record"], rule["expr"])
        for group in doc["groups"]
        for rule in group["rules"]
    ]


def regex_escape(value: str) -> str:
    return _REGEX_SPECIALS.sub(r"\\\\\1", value)


def render_multi(values: list[str]) -> str:
    """Grafana's rendering of a multi-value variable inside a regex matcher."""
    if len(values) == 1:
        return regex_escape(values[0])
    return "(" + "|".join(regex_escape(v) for v in values) + ")"


@dataclass
class Variables:
    """Resolves a dashboard's template variables the way Grafana would, against a real Prometheus.

    ``series`` is a callable returning the label sets matching a selector (``/api/v1/series``).
    Built-ins: ``$__rate_interval``, ``$__interval``, ``$__range`` (and ``_s``/``_ms`` forms).
    """

    builtins: dict[str, str]
    series: Callable[[str], list[dict[str, str]]]

    def resolve(self, dashboard: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
        """Values for every variable (in order, each may use the previous ones) and problems found."""
        values = dict(self.builtins)
        problems = []
        for var in dashboard.get("templating", {}).get("list", []):
            name, kind = var["name"], var["type"]
            if kind == "datasource":
                values[name] = "prometheus"
                continue
            if kind in ("constant", "textbox"):
                values[name] = str(var.get("query", ""))
                continue
            if kind == "custom":
                values[name] = render_multi([v.strip() for v in str(var["query"]).split(",")])
                continue
            if kind != "query":
                problems.append(f"variable {name}: unsupported type {kind}")
                continue
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = _LABEL_VALUES.match(self.substitute(query, values))
            if not match:
                problems.append(f"variable {name}: only label_values(selector, label) is supported: {query}")
                continue
            found = sorted({s[match["label"]] for s in self.series(match["selector"]) if match["label"] in s})
            if var.get("includeAll") and var.get("allValue") is not None:
                values[name] = var["allValue"]
            elif found:
                values[name] = render_multi(found)
            else:
                problems.append(f"variable {name}: {query} found no values")
                values[name] = "__no_values__"
        return values, problems

    @staticmethod
    def substitute(expr: str, values: dict[str, str]) -> str:
        def repl(m: re.Match[str]) -> str:
            key = m["braced"] or m["plain"]
            if key not in values:
                raise KeyError(f"unknown template variable ${key} in {expr!r}")
            return values[key]

        return _VARIABLE.sub(repl, expr)


def grafana_builtins(rate_interval_s: int, interval_s: int, range_s: int) -> dict[str, str]:
    return {
        "__rate_interval": f"{rate_interval_s}s",
        "__interval": f"{interval_s}s",
        "__interval_ms": str(interval_s * 1000),
        "__range": f"{range_s}s",
        "__range_s": str(range_s),
        "__range_ms": str(range_s * 1000),
    }
