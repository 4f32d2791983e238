#!/usr/bin/env python3
"""A local Alertmanager with login-stream's routing tree, its receivers filled in from settings.

Used by ``make run`` / ``make demo`` (local_pipeline.py starts it beside Prometheus and points
Prometheus at it), ``make alertmanager`` and the alert-routing tests (tests/observability).

The tree is monitoring/alertmanager/alertmanager.yml (ALERTMANAGER_CONFIG names another): its receivers
(security, security-pager, platform, platform-pager) have names only, and this script adds the contact
points the settings name. Settings (environment):

    ALERT_WEBHOOK_URL           a generic webhook (Alertmanager's JSON payload, resolved ones too) for
                                every receiver; the receiver's name is in the payload
    SLACK_API_URL_FILE          a file holding the Slack incoming-webhook URL (a secret: read by
                                Alertmanager itself, never by this script, never written to a log);
                                chat for `security` and `platform`
    SLACK_SECURITY_CHANNEL      (#login-security) and SLACK_PLATFORM_CHANNEL (#login-platform)
    PAGERDUTY_ROUTING_KEY_FILE  a file holding the PagerDuty Events v2 routing key (a secret, as above);
                                pages from `security-pager` and `platform-pager`
    RUNBOOK_BASE_URL            what the alerts' relative runbook_url (docs/runbooks.md#...) is joined to
                                in Slack and PagerDuty messages (default: this checkout, file://)
    ALERTMANAGER_PORT           9093 tried first, another free port when it is taken

A receiver without any of these keeps no contact point: its alerts show in Alertmanager's UI and API
(``make monitor``, ``make watch``) and go nowhere else. The binary is ALERTMANAGER_BIN if set, else
``alertmanager`` or ``prometheus-alertmanager`` (Debian's package, which ships amtool too) on PATH.
Alertmanager's gossip cluster is switched off (``--cluster.listen-address=``): one local instance, no
port opened beyond the web one, on loopback.

    login-alertmanager --port 9093
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from login_devtools import ROOT
from login_devtools.daemons import Daemon, free_port, get_json, spawn

TREE = ROOT / "monitoring" / "alertmanager" / "alertmanager.yml"
ROUTE_CASES = ROOT / "monitoring" / "alertmanager" / "routes.test.yaml"
BINARIES = ("alertmanager", "prometheus-alertmanager")
CHAT_RECEIVERS = ("security", "platform")
PAGER_RECEIVERS = ("security-pager", "platform-pager")
# PagerDuty Events v2 knows critical, error, warning, info; the rules use critical, warning, info.
PAGERDUTY_SEVERITY = (
    '{{ if eq .CommonLabels.severity "critical" }}critical'
    '{{ else if eq .CommonLabels.severity "warning" }}warning{{ else }}info{{ end }}'
)


class AlertmanagerError(RuntimeError):
    """Alertmanager could not be found, configured, started, or answered its API with an error."""


@dataclass(frozen=True)
class AlertingSettings:
    """Where the receivers send; secrets only as file paths (Alertmanager reads the files)."""

    webhook_url: str = ""
    slack_api_url_file: str = ""
    slack_security_channel: str = "#login-security"
    slack_platform_channel: str = "#login-platform"
    pagerduty_routing_key_file: str = ""
    runbook_base_url: str = ROOT.as_uri() + "/"
    tree: Path = TREE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlertingSettings:
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            webhook_url=env.get("ALERT_WEBHOOK_URL", ""),
            slack_api_url_file=env.get("SLACK_API_URL_FILE", ""),
            slack_security_channel=env.get("SLACK_SECURITY_CHANNEL", defaults.slack_security_channel),
            slack_platform_channel=env.get("SLACK_PLATFORM_CHANNEL", defaults.slack_platform_channel),
            pagerduty_routing_key_file=env.get("PAGERDUTY_ROUTING_KEY_FILE", ""),
            runbook_base_url=env.get("RUNBOOK_BASE_URL", defaults.runbook_base_url),
            tree=Path(env.get("ALERTMANAGER_CONFIG", str(TREE))),
        )

    def problems(self) -> list[str]:
        """What is wrong with the settings, one line each (no secret is ever read or shown)."""
        out: list[str] = []
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            out.append(f"ALERT_WEBHOOK_URL={self.webhook_url!r} is not an http(s) URL")
        for name, path in (
            ("SLACK_API_URL_FILE", self.slack_api_url_file),
            ("PAGERDUTY_ROUTING_KEY_FILE", self.pagerduty_routing_key_file),
        ):
            if path and not Path(path).is_file():
                out.append(f"{name}={path}: no such file (it must hold the secret, one line)")
            elif path and not os.access(path, os.R_OK):
                out.append(f"{name}={path}: not readable")
        if not self.tree.is_file():
            out.append(f"ALERTMANAGER_CONFIG={self.tree}: no such file")
        return out


def runbook_link(base: str) -> str:
    """An Alertmanager template that joins ``base`` and the first alert's relative runbook_url."""
    return f"{base}{{{{ (index .Alerts 0).Annotations.runbook_url }}}}"


def slack_text(base: str) -> str:
    return (
        "{{ range .Alerts }}*{{ .Labels.alertname }}* ({{ .Labels.severity }}, {{ .Status }})"
        "{{ if .Labels.network }} network {{ .Labels.network }}{{ end }}"
        "{{ if .Labels.detector }} detector {{ .Labels.detector }}{{ end }}"
        "{{ if .Labels.consumer_group }} group {{ .Labels.consumer_group }}{{ end }}\n"
        f"{{{{ .Annotations.summary }}}}\nrunbook: {base}{{{{ .Annotations.runbook_url }}}}\n{{{{ end }}}}"
    )


def build_config(settings: AlertingSettings, timings: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The tree of ``settings.tree`` with the receivers' contact points; ``timings`` (group_wait,
    group_interval, repeat_interval) replace those of every route that sets them (the tests' short
    intervals). Raises AlertmanagerError for bad settings."""
    problems = settings.problems()
    if problems:
        raise AlertmanagerError("; ".join(problems))
    config: dict[str, Any] = yaml.safe_load(settings.tree.read_text(encoding="utf-8"))
    if timings:
        for route in walk(config["route"]):
            for key, value in timings.items():
                if key in route or route is config["route"]:
                    route[key] = value
    base = settings.runbook_base_url
    for receiver in config.get("receivers", []):
        name = receiver["name"]
        if settings.webhook_url:
            receiver["webhook_configs"] = [
                {"url": settings.webhook_url, "send_resolved": True, "max_alerts": 0}
            ]
        if settings.slack_api_url_file and name in CHAT_RECEIVERS:
            channel = (
                settings.slack_security_channel if name == "security" else settings.slack_platform_channel
            )
            receiver["slack_configs"] = [
                {
                    "api_url_file": settings.slack_api_url_file,
                    "channel": channel,
                    "send_resolved": True,
                    "title": "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}",
                    "title_link": runbook_link(base),
                    "text": slack_text(base),
                    "color": '{{ if eq .Status "firing" }}{{ if eq .CommonLabels.severity "critical" }}'
                    "danger{{ else }}warning{{ end }}{{ else }}good{{ end }}",
                }
            ]
        if settings.pagerduty_routing_key_file and name in PAGER_RECEIVERS:
            receiver["pagerduty_configs"] = [
                {
                    "routing_key_file": settings.pagerduty_routing_key_file,
                    "severity": PAGERDUTY_SEVERITY,
                    "send_resolved": True,
                    "links": [{"href": runbook_link(base), "text": "runbook"}],
                }
            ]
    return config


def walk(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes", []):
        yield from walk(child)


def find_binary() -> str:
    named = os.environ.get("ALERTMANAGER_BIN")
    if named:
        if not (Path(named).is_file() and os.access(named, os.X_OK)):
            raise AlertmanagerError(f"ALERTMANAGER_BIN={named} is not an executable file")
        return named
    for name in BINARIES:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    raise AlertmanagerError(
        "no alertmanager binary: install Debian's `prometheus-alertmanager` package (`make setup`) "
        "or set ALERTMANAGER_BIN"
    )


def find_amtool() -> str:
    found = shutil.which("amtool") or ("/usr/bin/amtool" if Path("/usr/bin/amtool").exists() else None)
    if not found:
        raise AlertmanagerError(
            "no amtool: install Debian's `prometheus-alertmanager` package (`make setup`)"
        )
    return found


@dataclass
class Alertmanager(Daemon):
    """A running Alertmanager child process and a small client for its API v2."""

    name: ClassVar[str] = "alertmanager"
    error: ClassVar[type[RuntimeError]] = AlertmanagerError

    @classmethod
    def start(
        cls,
        config: Mapping[str, Any],
        *,
        workdir: Path | None = None,
        port: int = 0,
        binary: str | None = None,
        ready_timeout: float = 30.0,
        detach: bool = False,
    ) -> Alertmanager:
        """Write ``config`` to the work folder, start Alertmanager on loopback and wait until it is ready;
        ``detach`` puts it in a session of its own (``make run``)."""
        exe = binary or find_binary()
        workdir = workdir or Path(tempfile.mkdtemp(prefix="alertmanager-"))
        workdir.mkdir(parents=True, exist_ok=True)
        config_file = workdir / "alertmanager.yml"
        config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
        port = free_port(port)
        log = workdir / "alertmanager.log"
        process = spawn(
            [
                exe,
                f"--config.file={config_file}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url=http://127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            log,
            detach=detach,
        )
        am = cls(process, f"http://127.0.0.1:{port}", workdir, log)
        am.wait_ready(ready_timeout)
        return am

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    def api(self, path: str) -> Any:
        return api_get(self.url, path)


def api_get(base_url: str, path: str, timeout: float = 5.0) -> Any:
    """GET /api/v2/<path> of the Alertmanager at ``base_url``; the decoded JSON or AlertmanagerError."""
    return get_json(f"{base_url}/api/v2/{path}", AlertmanagerError, timeout)


@dataclass(frozen=True)
class RoutedAlert:
    """One alert as Alertmanager holds it: where it was routed and whether it is muted."""

    name: str
    severity: str
    state: str  # active, suppressed (inhibited or silenced), unprocessed
    receivers: tuple[str, ...]
    labels: dict[str, str]
    inhibited_by: tuple[str, ...] = ()

    @property
    def scope(self) -> str:
        """What the alert is about, for one line: network, detector, consumer group, namespace."""
        keys = ("network", "detector", "consumer_group", "namespace", "topic", "stage", "instance")
        return " ".join(f"{k}={self.labels[k]}" for k in keys if self.labels.get(k))


def routed_alerts(base_url: str) -> list[RoutedAlert]:
    """Every alert Alertmanager holds (firing; resolved ones are dropped by it), with its receivers, from
    GET /api/v2/alerts (each alert lists the receivers its route picked), most severe first."""
    raw = api_get(base_url, "alerts")
    alerts = [
        RoutedAlert(
            name=a["labels"].get("alertname", "?"),
            severity=a["labels"].get("severity", "-"),
            state=a.get("status", {}).get("state", "?"),
            receivers=tuple(r["name"] for r in a.get("receivers", [])),
            labels=dict(a["labels"]),
            inhibited_by=tuple(a.get("status", {}).get("inhibitedBy") or ()),
        )
        for a in raw
    ]
    rank = {"critical": 0, "warning": 1, "info": 2}
    return sorted(alerts, key=lambda a: (rank.get(a.severity, 3), a.name, a.scope))


def describe(alert: RoutedAlert) -> str:
    muted = " (inhibited)" if alert.inhibited_by else f" ({alert.state})" if alert.state != "active" else ""
    return f"{alert.name} [{alert.severity}] {alert.scope} -> {', '.join(alert.receivers) or '-'}{muted}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("ALERTMANAGER_PORT", "9093")))
    parser.add_argument("--dir", type=Path, default=ROOT / ".cache" / "alertmanager", help="config and data")
    parser.add_argument("--print-config", action="store_true", help="print the configuration and exit")
    args = parser.parse_args(argv)
    try:
        config = build_config(AlertingSettings.from_env())
        if args.print_config:
            print(yaml.safe_dump(config, sort_keys=False), end="")
            return 0
        am = Alertmanager.start(config, workdir=args.dir, port=args.port)
    except AlertmanagerError as exc:
        print(f"local_alertmanager: {exc}", file=sys.stderr)
        return 1
    print(f"alertmanager: {am.url}  (routing tree {TREE.relative_to(ROOT)}; log {am.log})")
    print("point Prometheus at it: `make prometheus ALERTMANAGER=" + am.address + "`; Ctrl-C stops it.")
    return am.serve()


if __name__ == "__main__":
    sys.exit(main())
