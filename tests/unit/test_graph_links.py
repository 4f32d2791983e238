"""The links `make demo`, `make run` and `make monitor` print into Prometheus' graph UI.

Pinned to how the UI reads them: prometheus/prometheus web/ui/react-app/src/utils/index.ts
(decodePanelOptionsFromQueryString, parseOption; the React UI of Prometheus 2.x, as Debian's package
ships): the query is split on '&'; panel N starts at its `gN.expr=` parameter and takes the following
`gN.<option>=` ones; each value is decoded with '+' read as a space; `tab=0` is the graph tab and
`range_input` a range such as `15m`.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from login_devtools import local_pipeline as lp


def decode_like_the_ui(query: str) -> list[dict[str, str]]:
    panels: list[dict[str, str]] = []
    params = query.split("&")
    for i, param in enumerate(params):
        prefix = f"g{len(panels)}."
        if param.startswith(f"{prefix}expr="):
            options = {}
            for later in params[i:]:
                if later.startswith(prefix) and "=" in later:
                    opt, val = later[len(prefix) :].split("=", 1)
                    options[opt] = unquote(val.replace("+", " "))
            panels.append(options)
    return panels


def test_each_link_opens_its_queries_as_graphs_of_the_last_15_minutes() -> None:
    links = lp.graph_links("http://127.0.0.1:9090")
    assert set(links) == {"throughput", "lag", "risk"}
    for title, link in links.items():
        url = urlsplit(link)
        assert (url.scheme, url.netloc, url.path) == ("http", "127.0.0.1:9090", "/graph")
        panels = decode_like_the_ui(url.query)
        assert [p["expr"] for p in panels] == lp.GRAPHS[title]
        assert all(p["tab"] == "0" and p["range_input"] == "15m" for p in panels)
    assert "sum by (level) (rate(login_consumer_risk_level_total[1m]))" in lp.GRAPHS["risk"]
    assert lp.GRAPHS["lag"] == ["sum(login_consumer_lag_messages)"]
