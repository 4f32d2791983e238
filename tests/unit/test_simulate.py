"""The simulation: population, daily rhythm, geolocation of every IP, attack shapes and their labels."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable

import jsonschema
import pytest
from geoip2fast import GeoIP2Fast

from login_common.contract import DETECTORS, FETCH_FIELDS, schema
from login_common.geo import COUNTRY_POINTS, GEOIP_DATA_FILE, great_circle_km
from login_producer.population import Population, app_version_at
from login_producer.simulate import (
    ACCOUNT_TAKEOVER,
    BENIGN,
    BENIGN_TRAVEL,
    BRUTE_FORCE,
    CREDENTIAL_STUFFING,
    DEFAULT_SIM_START,
    FORGETFUL,
    IMPOSSIBLE_TRAVEL,
    NEW_PHONE,
    SCENARIOS,
    SHARED_IP,
    ScenarioMix,
    SimEvent,
    Simulation,
)
from login_producer.truth import TruthRules
from login_producer.world import COUNTRIES, DAILY_RHYTHM, US_STATES

SEED = 7
USERS = 2000
N = 30_000


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation(seed=SEED, users=USERS)


@pytest.fixture(scope="module")
def stream(sim: Simulation) -> list[SimEvent]:
    return list(itertools.islice(sim.events(), N))


@pytest.fixture(scope="module")
def geo() -> GeoIP2Fast:
    return GeoIP2Fast(verbose=False, geoip2fast_data_file=GEOIP_DATA_FILE)


def by_attack(stream: Iterable[SimEvent], scenario: str) -> dict[str, list[SimEvent]]:
    out: dict[str, list[SimEvent]] = defaultdict(list)
    for ev in stream:
        if ev.scenario == scenario:
            assert ev.attack_id, f"{scenario} event without attack id"
            out[ev.attack_id].append(ev)
    assert out, f"no {scenario} in the stream"
    return out


# --- determinism, time, contract --------------------------------------------------------------------


def test_same_seed_same_events_other_seed_other_events() -> None:
    def first(seed: int) -> list[SimEvent]:
        return list(itertools.islice(Simulation(seed=seed, users=500).events(), 3000))

    a, b, c = first(3), first(3), first(4)
    assert a == b
    assert [e.event for e in a] != [e.event for e in c]


def test_simulated_clock_starts_at_fixed_epoch_and_never_goes_back(stream: list[SimEvent]) -> None:
    times = [e.event["timestamp"] for e in stream]
    assert times[0] >= DEFAULT_SIM_START
    assert all(a <= b for a, b in itertools.pairwise(times))
    # 2000 users at 3 logins a day: 30k events span about five days of simulated time
    assert 3 * 86400 < times[-1] - times[0] < 8 * 86400


def test_wall_clock_mode_runs_at_the_rate() -> None:
    start = 1_800_000_000.0
    events = list(itertools.islice(Simulation(seed=1, users=300, rate=200, start_time=start).events(), 4000))
    span = events[-1].time - start
    assert 4000 / span == pytest.approx(200, rel=0.15)


def test_every_event_meets_the_consumer_contract(stream: list[SimEvent]) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    for ev in stream:
        if ev.scenario != BENIGN or int(ev.event["event_id"][:2], 16) % 8 == 0:
            validator.validate(ev.event)
            validator.validate(ev.fetch_view())
    assert len({e.event["event_id"] for e in stream}) == len(stream)


def test_fetch_view_is_exactly_the_generator_format(stream: list[SimEvent]) -> None:
    for ev in stream[:2000]:
        view = ev.fetch_view()
        assert tuple(view) == FETCH_FIELDS
        assert view["timestamp"] == str(ev.event["timestamp"])
        assert view["device_type"] in {"android", "iOS", "web"}
        assert len(view["device_id"]) == 11
        assert view["device_id"][3] == "-"


def test_every_ip_geolocates_to_the_intended_country(stream: list[SimEvent], geo: GeoIP2Fast) -> None:
    wrong = [
        (e.event["ip"], e.country) for e in stream if geo.lookup(e.event["ip"]).country_code != e.country
    ]
    assert wrong == []
    assert {e.country for e in stream} > {"US", "GB", "DE"}


# --- population --------------------------------------------------------------------------------------


def test_profiles_derive_from_seed_and_index_only(sim: Simulation) -> None:
    other = Population(SEED, USERS, sim.population.pools)
    for i in (0, 1, 999, USERS - 1):
        a, b = sim.population.profile(i), other.profile(i)
        assert (a.user_id, a.home_ip, a.locale, a.tz_s, a.devices) == (
            b.user_id,
            b.home_ip,
            b.locale,
            b.tz_s,
            b.devices,
        )
    third = Population(SEED + 1, USERS, sim.population.pools)
    assert third.profile(0).user_id != sim.population.profile(0).user_id


def test_population_properties(sim: Simulation) -> None:
    pop = sim.population
    profiles = [pop.profile(i) for i in range(USERS)]
    countries = Counter(COUNTRIES[p.country].code for p in profiles)
    assert 0.5 < countries["US"] / USERS < 0.72
    assert len(countries) > 15
    states = {s for s, _, _ in US_STATES}
    for p in profiles:
        code = COUNTRIES[p.country].code
        assert p.locale in states if code == "US" else p.locale == code
        assert 1 <= len(p.devices) <= 3
        assert p.devices[0].device_type in {"android", "iOS"}
        assert all(d.device_type in {"android", "iOS", "web"} for d in p.devices)
    offices = Counter(p.office_ip for p in profiles if p.office_ip)
    assert 0.1 < sum(offices.values()) / USERS < 0.2
    assert max(offices.values()) >= 50  # a shared NAT: many accounts behind one address
    assert len({p.home_ip for p in profiles}) > 0.99 * USERS


def test_a_million_users_stay_lazy_and_bounded() -> None:
    import tracemalloc

    tracemalloc.start()
    big = Simulation(seed=1, users=1_000_000)
    events = list(itertools.islice(big.events(), 3000))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len({e.key for e in events}) > 2000
    assert peak < 120 * 1024 * 1024
    info = big.population.profile.cache_info()  # type: ignore[attr-defined]
    assert info.currsize <= info.maxsize


def test_daily_rhythm_follows_local_time(sim: Simulation, stream: list[SimEvent]) -> None:
    ids = {sim.population.user_id(i): i for i in range(USERS)}
    hours: Counter[int] = Counter()
    for ev in stream:
        if ev.scenario == BENIGN:
            p = sim.population.profile(ids[ev.key])
            hours[(ev.event["timestamp"] + p.tz_s) // 3600 % 24] += 1
    night = sum(hours[h] for h in range(1, 6)) / 5
    evening = sum(hours[h] for h in range(18, 22)) / 4
    assert evening > 6 * night
    assert DAILY_RHYTHM.index(max(DAILY_RHYTHM)) in range(18, 22)


def test_app_versions_drift_forward() -> None:
    assert app_version_at(DEFAULT_SIM_START, 0) != app_version_at(DEFAULT_SIM_START + 90 * 86400, 0)
    assert app_version_at(DEFAULT_SIM_START + 86400, 30 * 86400) <= app_version_at(
        DEFAULT_SIM_START + 86400, 0
    )


def test_versions_per_device_never_go_back(stream: list[SimEvent]) -> None:
    seen: dict[tuple[str, str], tuple[int, ...]] = {}
    changed = 0
    for ev in stream:
        if ev.scenario not in (BENIGN, SHARED_IP):
            continue
        version = tuple(int(x) for x in ev.event["app_version"].split("."))
        key = (ev.key, ev.event["device_id"])
        if key in seen:
            assert version >= seen[key]
            changed += version > seen[key]
        seen[key] = version
    assert changed > 0


# --- scenarios and their shapes --------------------------------------------------------------------------


def test_scenario_shares_follow_the_mix(stream: list[SimEvent]) -> None:
    counts = Counter(e.scenario for e in stream)
    assert set(counts) == set(SCENARIOS)
    ratios = ScenarioMix().ratios()
    for name in (BRUTE_FORCE, CREDENTIAL_STUFFING, FORGETFUL):
        assert counts[name] / N == pytest.approx(ratios[name], rel=0.5)


def test_brute_force_shape_and_labels(stream: list[SimEvent]) -> None:
    k = TruthRules().brute_force_failures
    for attack in by_attack(stream, BRUTE_FORCE).values():
        assert len({e.key for e in attack}) == 1
        assert len({e.event["ip"] for e in attack}) == 1
        assert all(e.event["outcome"] == "failure" for e in attack)
        assert len(attack) >= k + 5
        gaps = [b.event["timestamp"] - a.event["timestamp"] for a, b in itertools.pairwise(attack)]
        assert max(gaps) <= 12
        flagged = [BRUTE_FORCE in e.truth for e in attack]
        assert flagged == [False] * (k - 1) + [True] * (len(attack) - k + 1)


def test_credential_stuffing_shape_and_labels(stream: list[SimEvent]) -> None:
    m = TruthRules().stuffing_accounts
    for attack in by_attack(stream, CREDENTIAL_STUFFING).values():
        assert len({e.event["ip"].rsplit(".", 1)[0] for e in attack}) == 1
        assert len({e.key for e in attack}) == len(attack) >= m
        assert sum(e.event["outcome"] == "failure" for e in attack) >= 0.85 * len(attack)
        failed: set[str] = set()
        for ev in attack:
            if ev.event["outcome"] == "failure":
                failed.add(ev.key)
            assert (CREDENTIAL_STUFFING in ev.truth) == (len(failed) >= m)


def test_impossible_travel_shape_and_labels(stream: list[SimEvent]) -> None:
    rules = TruthRules()
    for attack in by_attack(stream, IMPOSSIBLE_TRAVEL).values():
        if len(attack) < 2:
            continue  # the second login is still in the future at the end of the stream
        home, far = attack
        assert home.key == far.key
        assert home.event["outcome"] == far.event["outcome"] == "success"
        km = great_circle_km(COUNTRY_POINTS[home.country], COUNTRY_POINTS[far.country])
        hours = (far.event["timestamp"] - home.event["timestamp"]) / 3600
        assert km >= rules.travel_min_distance_km
        assert km / hours > rules.travel_max_speed_kmh
        assert IMPOSSIBLE_TRAVEL in far.truth


def test_account_takeover_shape_and_labels(stream: list[SimEvent]) -> None:
    k = TruthRules().brute_force_failures
    for attack in by_attack(stream, ACCOUNT_TAKEOVER).values():
        outcomes = [e.event["outcome"] for e in attack]
        first_success = outcomes.index("success") if "success" in outcomes else len(outcomes)
        assert 1 <= first_success <= k - 1
        assert set(outcomes[first_success:]) <= {"success"}
        assert len({(e.event["ip"], e.event["device_id"], e.key) for e in attack}) == 1
        if first_success < len(attack):
            takeover = attack[first_success]
            assert {"new_device", "new_country"} <= set(takeover.truth)
            assert not any(BRUTE_FORCE in e.truth for e in attack)


def test_benign_look_alikes_stay_negative_for_the_attack_detectors(stream: list[SimEvent]) -> None:
    for ev in stream:
        if ev.scenario in (FORGETFUL, SHARED_IP, BENIGN, NEW_PHONE):
            assert BRUTE_FORCE not in ev.truth
            assert CREDENTIAL_STUFFING not in ev.truth
        if ev.scenario == BENIGN_TRAVEL:
            assert IMPOSSIBLE_TRAVEL not in ev.truth


def test_look_alikes_have_their_shape(sim: Simulation, stream: list[SimEvent]) -> None:
    trips = [e for e in stream if e.scenario == BENIGN_TRAVEL]
    assert any("new_country" in e.truth for e in trips)
    phones = [e for e in stream if e.scenario == NEW_PHONE]
    assert phones
    ids = {sim.population.user_id(i): i for i in range(USERS)}
    for ev in phones:
        p = sim.population.profile(ids[ev.key])
        assert ev.country == COUNTRIES[p.country].code
        assert ev.event["device_id"] != p.devices[0].device_id
    # forgetful: failures then a success, from one device and one IP
    episodes: dict[str, list[SimEvent]] = defaultdict(list)
    for ev in stream:
        if ev.scenario == FORGETFUL:
            episodes[ev.key].append(ev)
    assert episodes
    for events in episodes.values():
        assert events[0].event["outcome"] == "failure"
    shared = Counter(e.event["ip"] for e in stream if e.scenario == SHARED_IP)
    ip, _ = shared.most_common(1)[0]
    users_behind = {e.key for e in stream if e.event["ip"] == ip}
    assert len(users_behind) >= 20


def test_custom_thresholds_move_the_labels() -> None:
    rules = TruthRules(brute_force_failures=8)
    events = list(itertools.islice(Simulation(seed=2, users=500, rules=rules).events(), 20000))
    attacks = by_attack(events, BRUTE_FORCE)
    for attack in attacks.values():
        assert len(attack) >= 13
        assert [BRUTE_FORCE in e.truth for e in attack[:8]] == [False] * 7 + [True]


def test_no_attacks_when_every_ratio_is_zero() -> None:
    mix = ScenarioMix(**dict.fromkeys(ScenarioMix().ratios(), 0.0))
    events = list(itertools.islice(Simulation(seed=2, users=500, mix=mix).events(), 5000))
    assert {e.scenario for e in events} <= {BENIGN, SHARED_IP}
    assert all(e.event["outcome"] == "success" for e in events)


def test_truth_names_are_the_detectors(stream: list[SimEvent]) -> None:
    seen = {name for e in stream for name in e.truth}
    assert seen == set(DETECTORS)
    for ev in stream:
        assert list(ev.truth) == [d for d in DETECTORS if d in ev.truth]


@pytest.mark.parametrize("users", [1, 2])
def test_tiny_populations_keep_running(users: int, geo: GeoIP2Fast) -> None:
    events = list(itertools.islice(Simulation(seed=5, users=users).events(), 10000))
    assert len({e.key for e in events if e.scenario == BENIGN}) == users
    assert {ACCOUNT_TAKEOVER, BRUTE_FORCE} <= {e.scenario for e in events}
    assert all(geo.lookup(e.event["ip"]).country_code == e.country for e in events[::50])
