"""The chart's AlertmanagerConfig: the same routing tree as monitoring/alertmanager/alertmanager.yml, and the
same routing, proven with the real amtool on the configuration prometheus-operator makes of it.

prometheus-operator v0.93.0 (the operator of kube-prometheus-stack 88.2.0), pkg/alertmanager/amcfg.go,
with alertmanagerConfigMatcherStrategy OnNamespace (k8s/values/kube-prometheus-stack.yaml): an
AlertmanagerConfig's top route becomes a child of the Alertmanager's root route with the extra matcher
namespace="<its namespace>" and `continue: true` (convertRoute / the namespace enforcement after it); its
receivers are named "<namespace>/<name>/<receiver>" (makeNamespacedString); matchers {name, value,
matchType} become `name<matchType>"value"`; each inhibit rule gets namespace="<its namespace>" on both its
source and target matchers. ``converted`` below applies exactly that, and nothing else.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from login_devtools import local_alertmanager
from tests.chart.conftest import NAMESPACE, ROOT, Render

la = local_alertmanager
RULES = ROOT / "monitoring" / "rules" / "login-stream.rules.yaml"
KIND_VALUES = ROOT / "k8s" / "values" / "login-stream.yaml"


def amc(objs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == "AlertmanagerConfig"]
    assert len(found) == 1, f"{len(found)} AlertmanagerConfigs rendered"
    return found[0]


def matcher(m: dict[str, str]) -> str:
    return f"{m['name']}{m.get('matchType', '=')}{json.dumps(m['value'])}"


def route_of(r: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {"receiver": prefix + r["receiver"]}
    if r.get("matchers"):
        out["matchers"] = [matcher(m) for m in r["matchers"]]
    for ours, theirs in (
        ("groupBy", "group_by"),
        ("groupWait", "group_wait"),
        ("groupInterval", "group_interval"),
        ("repeatInterval", "repeat_interval"),
        ("continue", "continue"),
    ):
        if ours in r:
            out[theirs] = r[ours]
    if r.get("routes"):
        out["routes"] = [route_of(child, prefix) for child in r["routes"]]
    return out


def converted(obj: dict[str, Any]) -> dict[str, Any]:
    """The Alertmanager configuration the operator makes of one AlertmanagerConfig under a root route
    whose receiver is "null" (kube-prometheus-stack's default), receivers without their integrations."""
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    prefix = f"{ns}/{name}/"
    top = route_of(obj["spec"]["route"], prefix)
    top["matchers"] = [*top.get("matchers", []), f'namespace="{ns}"']
    top["continue"] = True
    inhibit = [
        {
            "source_matchers": [*(matcher(m) for m in rule["sourceMatch"]), f'namespace="{ns}"'],
            "target_matchers": [*(matcher(m) for m in rule["targetMatch"]), f'namespace="{ns}"'],
            "equal": rule["equal"],
        }
        for rule in obj["spec"].get("inhibitRules", [])
    ]
    receivers = [{"name": "null"}] + [{"name": prefix + r["name"]} for r in obj["spec"]["receivers"]]
    return {"route": {"receiver": "null", "routes": [top]}, "inhibit_rules": inhibit, "receivers": receivers}


def strip(route: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A converted route back in the local tree's terms: receiver names without the prefix, without the
    operator's namespace matcher and continue on the top route."""
    out = dict(route)
    out["receiver"] = route["receiver"].removeprefix(prefix)
    if "routes" in out:
        out["routes"] = [strip(child, prefix) for child in out["routes"]]
    return out


@pytest.fixture(scope="module")
def full(render: Render) -> dict[str, Any]:
    return amc(render("ci/full-values.yaml"))


def test_no_alertmanagerconfig_unless_enabled(render: Render) -> None:
    assert not [o for o in render("ci/default-values.yaml") if o["kind"] == "AlertmanagerConfig"]


def test_the_chart_ships_the_local_tree(full: dict[str, Any]) -> None:
    config = converted(full)
    prefix = f"{NAMESPACE}/{full['metadata']['name']}/"
    [top] = config["route"]["routes"]
    assert top["matchers"] == [f'namespace="{NAMESPACE}"']
    assert top["continue"] is True
    ours = strip({k: v for k, v in top.items() if k not in ("matchers", "continue")}, prefix)
    assert ours == la.yaml.safe_load(la.TREE.read_text())["route"]
    [rule] = config["inhibit_rules"]
    local = la.yaml.safe_load(la.TREE.read_text())["inhibit_rules"][0]
    assert rule["source_matchers"][:-1] == local["source_matchers"]
    assert [m.replace("\\", "") for m in rule["target_matchers"][:-1]] == local["target_matchers"]
    assert rule["equal"] == local["equal"]
    assert [r["name"] for r in full["spec"]["receivers"]] == [
        r["name"] for r in la.yaml.safe_load(la.TREE.read_text())["receivers"]
    ]


def amtool() -> str:
    try:
        return str(la.find_amtool())
    except la.AlertmanagerError as exc:
        pytest.fail(str(exc))
        raise


def test_amtool_routes_every_alert_of_the_namespace_as_the_local_tree_does(
    full: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(converted(full)))
    check = subprocess.run([amtool(), "check-config", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    prefix = f"{NAMESPACE}/{full['metadata']['name']}/"
    cases = yaml.safe_load(la.ROUTE_CASES.read_text())["alerts"]
    rules = {
        r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r
    }
    for name, receivers in cases.items():
        for namespace, expected in ((NAMESPACE, [prefix + r for r in receivers]), ("elsewhere", ["null"])):
            labels = {"alertname": name, "namespace": namespace, **rules[name]["labels"]}
            out = subprocess.run(
                [
                    amtool(),
                    "config",
                    "routes",
                    "test",
                    f"--config.file={path}",
                    f"--verify.receivers={','.join(expected)}",
                    *(f"{k}={v}" for k, v in labels.items()),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            assert out.returncode == 0, f"{labels}: expected {expected}: {out.stdout}{out.stderr}"


def test_receivers_take_secrets_from_secrets_only(full: dict[str, Any]) -> None:
    receivers = {r["name"]: r for r in full["spec"]["receivers"]}
    assert set(receivers) == {"security", "security-pager", "platform", "platform-pager"}
    for name, receiver in receivers.items():
        assert receiver["webhookConfigs"][0]["urlSecret"] == {"name": "alert-webhook", "key": "url"}
        assert "url" not in receiver["webhookConfigs"][0]
        if name.endswith("-pager"):
            assert receiver["pagerdutyConfigs"][0]["routingKey"] == {
                "name": "alert-pagerduty",
                "key": "routing-key",
            }
            assert "slackConfigs" not in receiver
        else:
            slack = receiver["slackConfigs"][0]
            assert slack["apiURL"] == {"name": "alert-slack", "key": "api-url"}
            assert slack["channel"] == f"#login-{name}"
            assert (
                slack["text"].count("https://docs.example.com/login-stream/{{ .Annotations.runbook_url }}")
                == 1
            )
            assert "pagerdutyConfigs" not in receiver
    values = yaml.safe_load((ROOT / "charts" / "login-stream" / "values.yaml").read_text())["alerting"]
    refs = values["receivers"]
    assert refs["slack"]["apiURLSecret"] == {}
    assert refs["pagerduty"]["routingKeySecret"] == {}
    assert set(refs["slack"]) == {"apiURLSecret", "securityChannel", "platformChannel"}
    assert set(refs["pagerduty"]) == {"routingKeySecret"}


def test_the_schema_refuses_a_secret_as_a_value(helm: str) -> None:
    out = subprocess.run(
        [
            helm,
            "template",
            "x",
            str(ROOT / "charts" / "login-stream"),
            "--set",
            "alerting.receivers.slack.apiURL=https://hooks.example.invalid/secret",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert "apiURL" in out.stderr


def test_values_adapt_the_tree(render: Render) -> None:
    obj = amc(
        render(
            **{
                "alerting.alertmanagerConfig.enabled": True,
                "alerting.security.groupWait": "10s",
                "alerting.pageSeverity": "warning",
                "alerting.consumerDownInhibits": "{LoginStreamConsumerLagHigh}",
                "alerting.receivers.webhook.url": "http://hooks.example.invalid/alerts",
            }
        )
    )
    security = obj["spec"]["route"]["routes"][0]
    assert security["groupWait"] == "10s"
    assert security["routes"][0]["matchers"] == [{"name": "severity", "value": "warning", "matchType": "="}]
    [rule] = obj["spec"]["inhibitRules"]
    assert rule["targetMatch"][0]["value"] == "LoginStreamConsumerLagHigh"
    assert obj["spec"]["receivers"][0]["webhookConfigs"] == [
        {"sendResolved": True, "url": "http://hooks.example.invalid/alerts"}
    ]
    assert (
        "inhibitRules"
        not in amc(
            render(**{"alerting.alertmanagerConfig.enabled": True, "alerting.consumerDownInhibits": "null"})
        )["spec"]
    )


def test_the_consumer_targets_carry_their_consumer_group(render: Render) -> None:
    objs = render("ci/full-values.yaml", **{"consumer.groupId": "fraud"})
    [monitor] = [o for o in objs if o["kind"] == "ServiceMonitor"]
    [relabel] = monitor["spec"]["endpoints"][0]["relabelings"]
    assert relabel == {
        "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_name"],
        "regex": "login-consumer",
        "targetLabel": "consumer_group",
        "replacement": "fraud",
        "action": "replace",
    }
    services = [
        o for o in objs if o["kind"] == "Service" and o["metadata"]["labels"].get("login-stream.io/metrics")
    ]
    names = {s["metadata"]["labels"]["app.kubernetes.io/name"] for s in services}
    assert names == {"login-consumer", "login-producer"}  # the regex picks the consumer's Service only
