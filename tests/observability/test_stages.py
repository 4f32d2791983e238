"""The topology's stages on the pipeline dashboard and in the alert rules (issue #10 part 5), offline.

The real-Prometheus run (test_live_prometheus.py) shows the panels non-empty and the stage-lag
expression labelling both stages; here: the panels exist, the alert and the panel read the stage lag the
same way, and that way maps each topic to its stage.
"""

from __future__ import annotations

import re

from login_devtools import build_dashboards
from tests.observability import queries

bd = build_dashboards
STAGE_PANELS = {"Events per stage", "Lag per stage", "Commits per replica"}


def _flat(expr: str) -> str:
    return re.sub(r"\s+", " ", expr).strip()


def _pipeline_exprs() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for q in queries.panel_queries():
        if q.dashboard == "login-stream / Pipeline overview":
            out.setdefault(q.panel, []).append(q.expr)
    return out


def test_the_pipeline_dashboard_has_the_stage_panels() -> None:
    exprs = _pipeline_exprs()
    assert exprs.keys() >= STAGE_PANELS
    assert exprs["Events per stage"] == [
        'sum by (stage) (rate(login_consumer_stage_events_total{namespace=~"$namespace"}[$__rate_interval]))'
    ]
    assert exprs["Commits per replica"] == [
        'sum by (instance) (rate(login_consumer_commits_total{namespace=~"$namespace"}[$__rate_interval]))'
    ]
    selector = '{namespace=~"$namespace"}'
    assert exprs["Lag per stage"] == [f"sum by (stage) ({bd.stage_lag(selector)})"]


def test_the_stage_alert_reads_the_stage_lag_like_the_panel() -> None:
    (rule,) = [a for a in queries.alert_queries() if a.alert == "LoginStreamStageLagging"]
    flat = _flat(rule.expr)
    # both operands (the level and its trend) group the same stage-labelled lag
    assert flat.count(f"sum by (namespace, consumer_group, stage) ({bd.stage_lag()})") == 2, flat


def test_the_stage_mapping_follows_the_consumers_topic_names() -> None:
    from login_consumer.config import ConsumerSettings

    # PromQL's label_replace anchors its regex: the same full match here
    pattern = re.compile(f"^(?:{bd.REPARTITION_TOPIC})$")
    for group in ("login-consumer", "obs-group-1a2b", "fraud.eu"):
        settings = ConsumerSettings(group_id=group)
        assert pattern.match(settings.repartition_topic())
        assert not pattern.match(settings.input_topic)
        assert not pattern.match(settings.network_state_topic())
