"""The labels equal the documented rules applied to what the consumer sees.

An independent, deliberately naive implementation of the rules in docs/producer.md reads only the
emitted events (no simulator state), geolocates every IP with geoip2fast and measures distances with
login_common.geo, then must reproduce x-sim-truth for every event.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest
from geoip2fast import GeoIP2Fast

from login_common.contract import DETECTORS
from login_common.geo import COUNTRY_POINTS, GEOIP_DATA_FILE, great_circle_km
from login_producer.simulate import ScenarioMix, SimEvent, Simulation
from login_producer.truth import TruthRules


def reference_labels(events: list[SimEvent], rules: TruthRules, geo: GeoIP2Fast) -> list[tuple[str, ...]]:
    failures_by_pair: dict[tuple[str, str], list[int]] = defaultdict(list)
    failures_by_net: dict[str, list[tuple[int, str]]] = defaultdict(list)
    devices: dict[str, set[str]] = defaultdict(set)
    countries: dict[str, set[str]] = defaultdict(set)
    last: dict[str, tuple[int, str]] = {}
    out = []
    for sim in events:
        ev = sim.event
        ts, user, ip = ev["timestamp"], ev["user_id"], ev["ip"]
        country = geo.lookup(ip).country_code
        net = ip.rsplit(".", 1)[0] if rules.stuffing_prefix == 24 else ip
        found = set()
        if ev["outcome"] == "failure":
            failures_by_pair[(user, ip)].append(ts)
            recent = [t for t in failures_by_pair[(user, ip)] if t > ts - rules.brute_force_window_s]
            if len(recent) >= rules.brute_force_failures:
                found.add("brute_force")
            failures_by_net[net].append((ts, user))
        accounts = {u for t, u in failures_by_net.get(net, []) if t > ts - rules.stuffing_window_s}
        if len(accounts) >= rules.stuffing_accounts:
            found.add("credential_stuffing")
        if ev["outcome"] == "success":
            if user in last:
                if ev["device_id"] not in devices[user]:
                    found.add("new_device")
                if country not in countries[user]:
                    found.add("new_country")
                then, where = last[user]
                if where != country:
                    km = great_circle_km(COUNTRY_POINTS[where], COUNTRY_POINTS[country])
                    hours = (ts - then) / 3600
                    if km >= rules.travel_min_distance_km and (
                        hours <= 0 or km / hours > rules.travel_max_speed_kmh
                    ):
                        found.add("impossible_travel")
            devices[user].add(ev["device_id"])
            countries[user].add(country)
            last[user] = (ts, country)
        out.append(tuple(d for d in DETECTORS if d in found))
    return out


@pytest.mark.parametrize(
    ("seed", "users", "rules"),
    [
        (11, 800, TruthRules()),
        (12, 300, TruthRules(brute_force_failures=3, stuffing_accounts=5, stuffing_prefix=32)),
        (13, 500, TruthRules(travel_max_speed_kmh=600, travel_min_distance_km=1500)),
    ],
)
def test_labels_match_an_independent_reading_of_the_rules(seed: int, users: int, rules: TruthRules) -> None:
    mix = ScenarioMix(
        brute_force=0.03, credential_stuffing=0.03, impossible_travel=0.02, account_takeover=0.02
    )
    events = list(itertools.islice(Simulation(seed=seed, users=users, rules=rules, mix=mix).events(), 12000))
    expected = reference_labels(
        events, rules, GeoIP2Fast(verbose=False, geoip2fast_data_file=GEOIP_DATA_FILE)
    )
    got = [e.truth for e in events]
    mismatches = [
        (i, events[i].scenario, g, x) for i, (g, x) in enumerate(zip(got, expected, strict=True)) if g != x
    ]
    assert mismatches == []
    assert {d for labels in got for d in labels} == set(DETECTORS)
