"""Every panel query of the shipped dashboards returns data against the cluster's Prometheus (issue 18).

The dashboards are generated (``login_devtools.build_dashboards`` writes dashboards/*.json and
dashboards/strimzi/*.json; the chart ships them as Grafana ConfigMaps). Here they are read as Grafana
would: the template variables resolved against this Prometheus (``label_values`` through
``/api/v1/series``, tests/observability/queries.py), ``$__rate_interval`` as Grafana derives it from the
datasource's scrape interval (15 s, k8s/values/kube-prometheus-stack.yaml: 4 x 15 s = 60 s), each
panel's query run over the last minutes (``query_range``) or now (instant panels), through the API
server's service proxy, while the deployed pipeline runs (the chart's producer sends a steady stream).

The test sends 200 events and one dead letter first, so the dead-letter panels must show data too. Every
query must return at least one series, except the ones in ``EMPTY_WHEN_HEALTHY``: panels whose data is an
incident no healthy run has (refused access, alerts, ...), each with why. A listed panel that does not
exist fails the test; a listed panel that shows data is printed (another e2e test may have caused that
incident within the range, e.g. tests/e2e/test_access.py's refusal), never skipped silently.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from tests.e2e.conftest import Settings
from tests.e2e.test_pipeline import check
from tests.observability import queries

pytestmark = pytest.mark.timeout(900)

DATASOURCE_SCRAPE_S = 15  # Grafana's datasource timeInterval = Prometheus' scrapeInterval (15 s)
RANGE_S = int(os.environ.get("E2E_DASHBOARD_RANGE", "600"))  # the time range the panels show
STEP_S = 15

# "<dashboard title> / <panel title>" -> why it shows nothing on a healthy pipeline. Only incidents: a
# panel of the normal flow (throughput, lag, latency, the brokers, the quorum) may never be listed here.
EMPTY_WHEN_HEALTHY: dict[str, str] = {}


def _prom(api: Any, s: Settings, endpoint: str, params: list[tuple[str, Any]]) -> Any:
    """GET /api/v1/<endpoint>?params of Prometheus through the API server's service proxy."""
    path = f"/api/v1/namespaces/{s.monitoring}/services/{s.prometheus}/proxy/api/v1/{endpoint}"
    method, url, headers, body, post = api.param_serialize(
        "GET", path, query_params=params, auth_settings=["BearerToken"]
    )
    raw = api.call_api(method, url, header_params=headers, body=body, post_params=post, _request_timeout=60)
    raw.read()
    answer = json.loads(raw.data)
    if answer.get("status") != "success":
        raise RuntimeError(f"{endpoint} {params}: {answer.get('errorType')}: {answer.get('error')}")
    return answer["data"]


def _evaluate(api: Any, settings: Settings) -> tuple[list[dict[str, Any]], list[str]]:
    """Every panel query of the generated dashboards over the last RANGE_S: rows, template problems."""
    end = time.time()
    start = end - RANGE_S

    def series(selector: str) -> list[dict[str, str]]:
        found: list[dict[str, str]] = _prom(
            api, settings, "series", [("match[]", selector), ("start", start), ("end", end)]
        )
        return found

    rate_interval = max(4 * DATASOURCE_SCRAPE_S, STEP_S + DATASOURCE_SCRAPE_S)
    builtins = queries.grafana_builtins(rate_interval, STEP_S, RANGE_S)
    resolver = queries.Variables(builtins, series)
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    all_queries = queries.panel_queries()
    for path in queries.dashboard_files():
        dashboard = queries.load_dashboard(path)
        values, var_problems = resolver.resolve(dashboard)
        problems += [f"{path.name}: {p}" for p in var_problems]
        for q in (q for q in all_queries if q.dashboard == dashboard["title"]):
            expr = resolver.substitute(q.expr, values)
            row: dict[str, Any] = {"query": q.name, "panel": f"{q.dashboard} / {q.panel}", "expr": expr}
            try:
                if q.instant:
                    data = _prom(api, settings, "query", [("query", expr), ("time", end)])
                else:
                    params = [("query", expr), ("start", start), ("end", end), ("step", STEP_S)]
                    data = _prom(api, settings, "query_range", params)
                row["series"] = len(data["result"])
            except RuntimeError as exc:
                row["error"] = str(exc)
            rows.append(row)
    return rows, problems


def test_every_dashboard_panel_returns_data(api: Any, settings: Settings) -> None:
    # events through now, and one dead letter: the DLQ panels then have data to show in any test order
    result = check(api, settings, "check", "--count=200", "--timeout=240", "--dlq")
    assert result["result"] == "ok", result
    assert result["dlq"] == "untouched", result
    # A consumer that started just before (a test that revoked its rights, KEDA) holds label sets born with
    # this traffic: increase() shows them from their second scrape on. Evaluate until every panel shows
    # data, for at most four scrape intervals after the traffic, then assert on the last evaluation.
    deadline = time.monotonic() + 4 * DATASOURCE_SCRAPE_S
    while True:
        rows, problems = _evaluate(api, settings)
        if all(r.get("series") or r["panel"] in EMPTY_WHEN_HEALTHY for r in rows):
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(DATASOURCE_SCRAPE_S)
    assert rows, "no panel queries found in dashboards/"
    panels = {r["panel"] for r in rows}
    errors = [f"  {r['query']}: {r['error']}\n      {r['expr']}" for r in rows if "error" in r]
    empty = [
        f"  {r['query']}\n      {r['expr']}"
        for r in rows
        if r.get("series") == 0 and r["panel"] not in EMPTY_WHEN_HEALTHY
    ]
    listed_with_data = sorted(
        p for p in EMPTY_WHEN_HEALTHY if any(r.get("series") for r in rows if r["panel"] == p)
    )
    unknown = sorted(set(EMPTY_WHEN_HEALTHY) - panels)
    with_data = sum(1 for r in rows if r.get("series"))
    summary = (
        f"{with_data}/{len(rows)} panel queries of {len(panels)} panels returned data; "
        f"{len([p for p in EMPTY_WHEN_HEALTHY if p in panels])} panels empty as listed (EMPTY_WHEN_HEALTHY)"
    )
    print(f"dashboards: {summary}")
    message = [summary]
    if problems:
        message += ["template variables:", *(f"  {p}" for p in problems)]
    if errors:
        message += ["queries Prometheus rejected:", *errors]
    if empty:
        message += ["panels that show nothing:", *empty]
    for panel in listed_with_data:
        print(f"dashboards: listed as empty when healthy, shows data now: {panel}")
    if unknown:
        message += ["EMPTY_WHEN_HEALTHY names panels that do not exist:", *unknown]
    assert not problems, "\n".join(message)
    assert not errors, "\n".join(message)
    assert not empty, "\n".join(message)
    assert not unknown, "\n".join(message)


def test_the_listed_empty_panels_are_incidents_only() -> None:
    """What may be empty is what an incident fills: never a panel of the normal flow."""
    normal = ("throughput", "lag", "latency", "broker", "quorum", "leader", "partition")
    for panel, reason in EMPTY_WHEN_HEALTHY.items():
        assert reason.strip(), panel
        title = panel.rpartition(" / ")[2].lower()
        assert not any(word in title for word in normal), f"{panel}: a normal-flow panel may not be listed"
