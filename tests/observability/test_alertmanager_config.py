"""The routing tree (monitoring/alertmanager/alertmanager.yml) with the real amtool: `amtool check-config`
on the tree and on the configuration login_devtools/local_alertmanager.py builds from settings, and `amtool
config routes test` for every alert of the rule file (monitoring/alertmanager/routes.test.yaml holds the
expected receivers). The grouping, the timings and the inhibition are checked against the labels the
rules really carry; tests/observability/test_alert_routing.py proves the tree with live processes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from login_devtools import local_alertmanager

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "rules" / "login-stream.rules.yaml"
la = local_alertmanager


def amtool() -> str:
    try:
        return str(la.find_amtool())
    except la.AlertmanagerError as exc:
        pytest.fail(str(exc))
        raise


def run_amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool(), *args], capture_output=True, text=True, check=False, timeout=60)


def alert_rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def cases() -> dict[str, Any]:
    return dict(yaml.safe_load(la.ROUTE_CASES.read_text(encoding="utf-8")))


def routes_test(
    config: Path, labels: dict[str, str], receivers: list[str]
) -> subprocess.CompletedProcess[str]:
    return run_amtool(
        "config",
        "routes",
        "test",
        f"--config.file={config}",
        f"--verify.receivers={','.join(receivers)}",
        *(f"{k}={v}" for k, v in labels.items()),
    )


def tree() -> dict[str, Any]:
    return dict(yaml.safe_load(la.TREE.read_text(encoding="utf-8")))


# --- amtool check-config ---------------------------------------------------------------------------


def test_amtool_checks_the_tree() -> None:
    out = run_amtool("check-config", str(la.TREE))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    assert "1 inhibit rules" in out.stdout


def test_amtool_checks_the_config_with_every_receiver_and_secrets_stay_in_files(tmp_path: Path) -> None:
    slack, pager = tmp_path / "slack-url", tmp_path / "pagerduty-key"
    slack.write_text("https://hooks.example.invalid/services/T000/B000/SECRET-SLACK-TOKEN\n")
    pager.write_text("SECRET-PAGERDUTY-ROUTING-KEY\n")
    settings = la.AlertingSettings(
        webhook_url="http://127.0.0.1:1/alerts",
        slack_api_url_file=str(slack),
        pagerduty_routing_key_file=str(pager),
        runbook_base_url="https://runbooks.example.invalid/login-stream/",
    )
    config = la.build_config(settings)
    text = yaml.safe_dump(config)
    assert "SECRET" not in text  # only the file names: Alertmanager reads the secrets itself
    receivers = {r["name"]: r for r in config["receivers"]}
    assert set(receivers) == {"security", "security-pager", "platform", "platform-pager"}
    for name, receiver in receivers.items():
        assert receiver["webhook_configs"][0]["url"] == "http://127.0.0.1:1/alerts"
        assert receiver["webhook_configs"][0]["send_resolved"] is True
        pages = name.endswith("-pager")
        assert ("pagerduty_configs" in receiver) == pages, name
        assert ("slack_configs" in receiver) == (not pages), name
    assert receivers["security"]["slack_configs"][0]["channel"] == "#login-security"
    assert receivers["platform"]["slack_configs"][0]["api_url_file"] == str(slack)
    assert receivers["security-pager"]["pagerduty_configs"][0]["routing_key_file"] == str(pager)
    assert "runbooks.example.invalid/login-stream/" in receivers["security"]["slack_configs"][0]["text"]
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    out = run_amtool("check-config", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SECRET" not in out.stdout + out.stderr


def test_bad_settings_are_refused_naming_the_setting(tmp_path: Path) -> None:
    settings = la.AlertingSettings(
        webhook_url="ftp://somewhere",
        slack_api_url_file=str(tmp_path / "missing"),
        pagerduty_routing_key_file=str(tmp_path / "also-missing"),
    )
    with pytest.raises(la.AlertmanagerError) as err:
        la.build_config(settings)
    message = str(err.value)
    assert "ALERT_WEBHOOK_URL='ftp://somewhere' is not an http(s) URL" in message
    assert f"SLACK_API_URL_FILE={tmp_path / 'missing'}: no such file" in message
    assert f"PAGERDUTY_ROUTING_KEY_FILE={tmp_path / 'also-missing'}: no such file" in message


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    settings = la.AlertingSettings.from_env(
        {
            "ALERT_WEBHOOK_URL": "http://127.0.0.1:9/x",
            "SLACK_SECURITY_CHANNEL": "#sec",
            "RUNBOOK_BASE_URL": "b/",
        }
    )
    assert settings.webhook_url == "http://127.0.0.1:9/x"
    assert settings.slack_security_channel == "#sec"
    assert settings.slack_platform_channel == "#login-platform"
    assert settings.runbook_base_url == "b/"
    assert settings.tree == la.TREE


def test_short_timings_replace_every_routes_own() -> None:
    config = la.build_config(la.AlertingSettings(), {"group_wait": "1s", "group_interval": "2s"})
    for route in la.walk(config["route"]):
        assert route.get("group_wait", "1s") == "1s"
        assert route.get("group_interval", "2s") == "2s"
    assert config["route"]["repeat_interval"] == "4h"


# --- amtool config routes test ---------------------------------------------------------------------


def test_every_alert_has_a_routing_case() -> None:
    assert set(cases()["alerts"]) == set(alert_rules())


@pytest.mark.parametrize("name", sorted(alert_rules()))
def test_each_alert_reaches_its_receivers(name: str) -> None:
    rule = alert_rules()[name]
    labels = {"alertname": name, **rule["labels"]}
    expected = cases()["alerts"][name]
    out = routes_test(la.TREE, labels, expected)
    assert out.returncode == 0, f"{name} {labels}: expected {expected}, amtool: {out.stdout}{out.stderr}"


def test_the_further_cases() -> None:
    for case in cases()["cases"]:
        out = routes_test(la.TREE, case["labels"], case["receivers"])
        assert out.returncode == 0, f"{case}: {out.stdout}{out.stderr}"


def test_a_wrong_tree_fails_the_routing_cases(tmp_path: Path) -> None:
    """The routing test can fail: with security and platform swapped, amtool reports the mismatch."""
    text = la.TREE.read_text(encoding="utf-8")
    swapped = text.replace('category="security"', 'category="@"').replace(
        'category="platform"', 'category="security"'
    )
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(swapped.replace('category="@"', 'category="platform"'))
    out = routes_test(
        broken,
        {"alertname": "X", "category": "security", "severity": "critical"},
        ["security-pager", "security"],
    )
    assert out.returncode != 0
    assert "did not match" in out.stdout + out.stderr


# --- grouping, timings, inhibition against the rules' labels ---------------------------------------


def matches(route: dict[str, Any], labels: dict[str, str]) -> bool:
    for matcher in route.get("matchers", []):
        m = re.fullmatch(r'(\w+)\s*(=~|!=|=)\s*"(.*)"', matcher)
        assert m, f'matcher {matcher!r}: the test reads name="value", name!="value", name=~"regex"'
        name, op, value = m.groups()
        have = labels.get(name, "")
        ok = re.fullmatch(value, have) is not None if op == "=~" else (have == value) == (op == "=")
        if not ok:
            return False
    return True


def first_route(route: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """The deepest route the labels reach through first matches (group_by inherited as Alertmanager
    does); enough for grouping, amtool proves the receivers."""
    for child in route.get("routes", []):
        if matches(child, labels):
            merged = {**{k: v for k, v in route.items() if k != "routes"}, **child}
            return first_route(merged, labels)
    return route


def by_labels(expr: str) -> set[str]:
    """The labels an alert's expression keeps: those of its outermost `by (...)` clauses."""
    return {label.strip() for clause in re.findall(r"\bby \(([^)]*)\)", expr) for label in clause.split(",")}


GROUPED_BY = {
    "LoginStreamCredentialStuffingWave": {"network", "detector"},
    "LoginStreamBruteForceBurst": {"detector"},
    "LoginStreamConsumerLagHigh": {"consumer_group"},
    "LoginStreamStageLagging": {"consumer_group"},
    "LoginStreamConsumerDown": {"consumer_group"},
}


@pytest.mark.parametrize("name", sorted(GROUPED_BY))
def test_alerts_are_grouped_by_what_a_responder_acts_on(name: str) -> None:
    rule = alert_rules()[name]
    route = first_route(tree()["route"], {"alertname": name, **rule["labels"]})
    group_by = set(route["group_by"])
    assert GROUPED_BY[name] <= group_by, f"{name}: grouped by {group_by}"
    carried = by_labels(rule["expr"]) | set(rule["labels"])
    assert GROUPED_BY[name] <= carried, f"{name} does not carry {GROUPED_BY[name] - carried}"


def seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", duration))


def test_timings_are_sane() -> None:
    for route in la.walk(tree()["route"]):
        if "group_wait" in route:
            assert 10 <= seconds(route["group_wait"]) <= 120, route
            assert seconds(route["group_interval"]) >= 60, route
            assert 3600 <= seconds(route["repeat_interval"]) <= 24 * 3600, route
    security = next(r for r in tree()["route"]["routes"] if r["receiver"] == "security")
    platform = next(r for r in tree()["route"]["routes"] if r["receiver"] == "platform")
    assert seconds(security["group_wait"]) <= seconds(platform["group_wait"])  # an attack: fast
    assert seconds(security["repeat_interval"]) < seconds(platform["repeat_interval"])


def test_consumer_down_inhibits_its_groups_lag_alerts() -> None:
    [rule] = tree()["inhibit_rules"]
    assert rule["source_matchers"] == ['alertname="LoginStreamConsumerDown"']
    [target] = rule["target_matchers"]
    names = set(re.fullmatch(r'alertname=~"(.*)"', target)[1].split("|"))  # type: ignore[index]
    assert {"LoginStreamConsumerLagHigh", "LoginStreamStageLagging"} <= names
    assert names <= set(alert_rules())
    assert set(rule["equal"]) == {"namespace", "consumer_group"}
    rules = alert_rules()
    for name in names | {"LoginStreamConsumerDown"}:
        expr = rules[name]["expr"]
        carried = by_labels(expr) or (
            {"namespace", "consumer_group"} if expr.strip().startswith("up{") else set()
        )
        assert {"namespace", "consumer_group"} <= carried, f"{name} does not carry the inhibition's labels"
