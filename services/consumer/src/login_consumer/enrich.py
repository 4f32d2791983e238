"""Enrichment: geography, locale, time, platform, app version and IP class for each valid event.

Reference data comes from maintained packages, loaded once: geoip2fast's bundled dataset (IP -> country),
pycountry (country and US state names), pycountry-convert-ng (country -> continent), tzdata's zone.tab
(country -> timezone). The only table kept here is the US Census Bureau's four regions and each state's
principal timezone (published facts that no package ships).

Hot-path costs are paid once per distinct value: IPs (which repeat per user), locales, device types, app
versions and (second, timezone) pairs are looked up in bounded caches, and the sub-documents they produce
are shared between events. Documents are therefore read-only once built.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
import pycountry_convert  # type: ignore[import-untyped]
from geoip2fast import GeoIP2Fast
from packaging.version import InvalidVersion, Version

from login_common.contract import PROCESSED_SCHEMA_VERSION
from login_consumer.addresses import classify, format_v4, parse_ip
from login_consumer.errors import EnrichmentError
from login_consumer.risk import Factors, RiskModel
from login_consumer.validate import Event

Doc = dict[str, Any]
K = TypeVar("K")
V = TypeVar("V")

# US Census Bureau regions (Northeast, Midwest, South, West) and each state's principal IANA timezone.
# State names come from pycountry; states spanning two zones get the zone of most of their population.
_US_STATES: Final[dict[str, tuple[str, str]]] = {
    "CT": ("Northeast", "America/New_York"),
    "ME": ("Northeast", "America/New_York"),
    "MA": ("Northeast", "America/New_York"),
    "NH": ("Northeast", "America/New_York"),
    "RI": ("Northeast", "America/New_York"),
    "VT": ("Northeast", "America/New_York"),
    "NJ": ("Northeast", "America/New_York"),
    "NY": ("Northeast", "America/New_York"),
    "PA": ("Northeast", "America/New_York"),
    "IL": ("Midwest", "America/Chicago"),
    "IN": ("Midwest", "America/Indiana/Indianapolis"),
    "MI": ("Midwest", "America/Detroit"),
    "OH": ("Midwest", "America/New_York"),
    "WI": ("Midwest", "America/Chicago"),
    "IA": ("Midwest", "America/Chicago"),
    "KS": ("Midwest", "America/Chicago"),
    "MN": ("Midwest", "America/Chicago"),
    "MO": ("Midwest", "America/Chicago"),
    "NE": ("Midwest", "America/Chicago"),
    "ND": ("Midwest", "America/Chicago"),
    "SD": ("Midwest", "America/Chicago"),
    "DE": ("South", "America/New_York"),
    "DC": ("South", "America/New_York"),
    "FL": ("South", "America/New_York"),
    "GA": ("South", "America/New_York"),
    "MD": ("South", "America/New_York"),
    "NC": ("South", "America/New_York"),
    "SC": ("South", "America/New_York"),
    "VA": ("South", "America/New_York"),
    "WV": ("South", "America/New_York"),
    "AL": ("South", "America/Chicago"),
    "KY": ("South", "America/New_York"),
    "MS": ("South", "America/Chicago"),
    "TN": ("South", "America/Chicago"),
    "AR": ("South", "America/Chicago"),
    "LA": ("South", "America/Chicago"),
    "OK": ("South", "America/Chicago"),
    "TX": ("South", "America/Chicago"),
    "AZ": ("West", "America/Phoenix"),
    "CO": ("West", "America/Denver"),
    "ID": ("West", "America/Boise"),
    "MT": ("West", "America/Denver"),
    "NV": ("West", "America/Los_Angeles"),
    "NM": ("West", "America/Denver"),
    "UT": ("West", "America/Denver"),
    "WY": ("West", "America/Denver"),
    "AK": ("West", "America/Anchorage"),
    "CA": ("West", "America/Los_Angeles"),
    "HI": ("West", "Pacific/Honolulu"),
    "OR": ("West", "America/Los_Angeles"),
    "WA": ("West", "America/Los_Angeles"),
}

DAY_SEGMENTS: Final = ("night", "morning", "afternoon", "evening")  # 0-5h, 6-11h, 12-17h, 18-23h

# device_type (lower-cased) -> (platform, family)
_PLATFORMS: Final[dict[str, tuple[str, str]]] = {
    "android": ("android", "mobile"),
    "ios": ("ios", "mobile"),
    "iphone": ("ios", "mobile"),
    "ipad": ("ios", "mobile"),
    "ipados": ("ios", "mobile"),
    "web": ("web", "web"),
    "browser": ("web", "web"),
    "windows": ("windows", "desktop"),
    "win32": ("windows", "desktop"),
    "win64": ("windows", "desktop"),
    "macos": ("macos", "desktop"),
    "mac": ("macos", "desktop"),
    "osx": ("macos", "desktop"),
    "darwin": ("macos", "desktop"),
    "linux": ("linux", "desktop"),
}


@dataclass(slots=True, eq=False)  # read-only once built; not frozen: frozen __init__ is slow
class CountryInfo:
    code: str
    name: str
    continent_code: str | None
    continent_name: str | None
    timezone: str | None  # when all of the country's zones keep the same time


GeoKey = tuple[str, str, str]  # (country, continent, US census region) metric labels; "-" when unknown
NO_GEO: Final[GeoKey] = ("-", "-", "-")


@dataclass(slots=True, eq=False)  # read-only once built; not frozen: frozen __init__ is slow
class IpInfo:
    version: int
    ip_class: str
    geo: Doc | None  # shared per country
    country: str | None
    continent: str | None
    timezone: str | None
    geo_key: GeoKey | None = None


@dataclass(slots=True, eq=False)  # read-only once built; not frozen: frozen __init__ is slow
class LocaleInfo:
    doc: Doc
    country: str | None
    region: str | None
    timezone: str | None
    geo_key: GeoKey | None = None


@dataclass(slots=True, eq=False)  # read-only once built; not frozen: frozen __init__ is slow
class TimeInfo:
    event_time: str
    doc: Doc
    key: tuple[int, int]  # (UTC weekday, UTC hour)
    night: bool  # local time 00:00-05:59 (False when no timezone is known)


@dataclass(slots=True, eq=False)  # read-only once built; not frozen: frozen __init__ is slow
class Place:
    """What an (ip, locale) pair says: the IP, the locale, the timezone to use, metric labels, risk."""

    ip: IpInfo
    locale: LocaleInfo | None
    timezone: str | None
    timezone_source: str | None  # "ip" or "locale"
    geo_key: GeoKey
    factors: Factors


@dataclass(slots=True, eq=False)  # read-only once built; not frozen: frozen __init__ is slow
class Client:
    """What a (device_type, app_version) pair says."""

    device: Doc
    app: Doc
    key: tuple[str, str]  # (platform, app major.minor or "-")
    factors: Factors


# enrich's result: the document and the cached facts it was built from
Enriched = tuple[Doc, Place, TimeInfo, Client]


# --------------------------------------------------------------------------- reference data (loaded once)


def _zone_tab() -> str:
    try:
        return resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="ascii")
    except (ModuleNotFoundError, FileNotFoundError):
        return Path("/usr/share/zoneinfo/zone.tab").read_text(encoding="ascii")


@cache
def country_timezones() -> dict[str, str]:
    """Country -> timezone, for countries whose zones (zone.tab) all keep the same time this year."""
    zones: dict[str, list[str]] = {}
    for line in _zone_tab().splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            zones.setdefault(parts[0], []).append(parts[2])
    year = datetime.now(UTC).year
    probes = (datetime(year, 1, 15, tzinfo=UTC), datetime(year, 7, 15, tzinfo=UTC))
    out: dict[str, str] = {}
    for country, names in zones.items():
        try:
            offsets = {tuple(p.astimezone(ZoneInfo(n)).utcoffset() for p in probes) for n in names}
        except ZoneInfoNotFoundError:
            continue
        if len(offsets) == 1:
            out[country] = names[0]
    return out


@cache
def countries() -> dict[str, CountryInfo]:
    """Every ISO 3166-1 country: name (pycountry), continent (pycountry-convert-ng), timezone (tzdata)."""
    timezones = country_timezones()
    out: dict[str, CountryInfo] = {}
    for country in pycountry.countries:
        code = country.alpha_2
        try:
            continent: str | None = pycountry_convert.country_alpha2_to_continent_code(code)
            continent_name: str | None = pycountry_convert.convert_continent_code_to_continent_name(continent)
        except KeyError:
            continent = continent_name = None
        name = getattr(country, "common_name", None) or country.name
        out[code] = CountryInfo(code, name, continent, continent_name, timezones.get(code))
    return out


@cache
def us_states() -> dict[str, tuple[str, str, str]]:
    """US state/DC code -> (name from pycountry, census region, timezone)."""
    out: dict[str, tuple[str, str, str]] = {}
    for sub in pycountry.subdivisions.get(country_code="US") or []:  # type: ignore[no-untyped-call]
        code = sub.code.split("-", 1)[1]
        if code in _US_STATES:
            region, tz = _US_STATES[code]
            out[code] = (sub.name, region, tz)
    return out


_GEOIP: dict[str, GeoIP2Fast] = {}


def geoip(data_file: str = "geoip2fast-ipv6.dat.gz") -> GeoIP2Fast:
    """The geoip2fast reader (one per process: the library keeps its data in module globals)."""
    reader = _GEOIP.get(data_file)
    if reader is None:
        _GEOIP.clear()
        try:
            reader = GeoIP2Fast(verbose=False, geoip2fast_data_file=data_file)
        except Exception as exc:
            raise EnrichmentError(f"cannot load geoip2fast dataset {data_file!r}: {exc}") from exc
        _GEOIP[data_file] = reader
    return reader


class CountryTable:
    """IP (as an integer) -> country, straight from the geoip2fast reader's tables.

    ``GeoIP2Fast.lookup`` takes a string, parses it again, formats the network's CIDR and the elapsed
    time and builds a result object: on traffic where every IP is new that was a fifth of the consumer's
    CPU. This does the same two-level search (``_main_index_lookup`` and ``_country_lookup`` of
    geoip2fast 1.2) on the integer the consumer has already parsed; ``tests/unit/test_enrich.py`` checks
    that it agrees with ``lookup``. ``lookup`` stays the fallback for datasets without these tables
    (the city ones).
    """

    def __init__(self, reader: GeoIP2Fast) -> None:
        from geoip2fast import geoip2fast as data  # the reader keeps its tables in module globals

        self._reader = reader
        self.direct = bool(getattr(reader, "country", False)) and hasattr(data, "mainListIDCountryCodes")
        if not self.direct:
            return
        self._index: list[int] = data.mainIndex
        self._firsts: list[list[int]] = data.mainListFirstIP
        self._netlens: list[list[int]] = data.mainListNetlength
        self._ids: list[list[int]] = data.mainListIDCountryCodes
        self._v4_sizes: list[int] = data.numIPsv4
        self._v6_sizes: list[int] = data.numIPsv6
        self._max_v4: int = data.MAX_IPv4
        # per country index: (code, name), or None for the private/reserved ones (the first 16) and codes
        # that are not two letters (the dataset's error codes)
        self._countries: list[tuple[str, str] | None] = []
        for n, item in enumerate(data.mainListNamesCountry):
            code, _, name = item.partition(":")
            valid = n >= 16 and len(code) == 2 and code.isalpha()
            self._countries.append((code, name) if valid else None)

    def country(self, value: int, text: str) -> tuple[str, str] | None:
        """(code, name) of the address ``value`` (``text``: the same address as a string), or None."""
        if not self.direct:
            found = self._reader.lookup(text)
            code = found.country_code
            if found.is_private or not isinstance(code, str) or len(code) != 2 or not code.isalpha():
                return None
            return code, str(found.country_name)
        root = bisect_right(self._index, value) - 1
        if root < 0:
            return None
        firsts = self._firsts[root]
        chunk = bisect_right(firsts, value) - 1
        if chunk < 0:
            return None
        sizes = self._v4_sizes if value <= self._max_v4 else self._v6_sizes
        if value >= firsts[chunk] + sizes[self._netlens[root][chunk]]:
            return None  # in no network the dataset knows
        return self._countries[self._ids[root][chunk]]


# --------------------------------------------------------------------------- per-value readers (cached)


def day_segment(hour: int) -> str:
    return DAY_SEGMENTS[hour // 6]


def read_device(device_type: str | None) -> Doc:
    if device_type is None or not device_type.strip():
        return {"type": device_type, "platform": "unknown", "family": "unknown"}
    platform, family = _PLATFORMS.get(device_type.strip().lower(), ("other", "other"))
    return {"type": device_type, "platform": platform, "family": family}


def read_app_version(version: str | None, minimum: Version) -> Doc:
    if version is None:
        return {"version": None, "parsed": None, "major_minor": None, "valid": False, "supported": None}
    try:
        parsed = Version(version.strip())
    except InvalidVersion:
        return {"version": version, "parsed": None, "major_minor": None, "valid": False, "supported": None}
    release = (*parsed.release, 0)
    return {
        "version": version,
        "parsed": str(parsed),
        "major_minor": f"{release[0]}.{release[1]}",
        "valid": True,
        "supported": parsed >= minimum,
    }


def _country_locale(code: str, raw: str) -> LocaleInfo | None:
    info = countries().get(code)
    if info is None:
        return None
    doc = {
        "code": raw,
        "kind": "country",
        "country_code": info.code,
        "country_name": info.name,
        "continent_code": info.continent_code,
        "subdivision_code": None,
        "subdivision_name": None,
        "census_region": None,
    }
    return LocaleInfo(doc, info.code, None, info.timezone, (info.code, info.continent_code or "-", "-"))


def read_locale(raw: str) -> LocaleInfo:
    """A locale: a 2-letter US state (RI, md) first, else a country (FR, de-AT, en_GB.UTF-8)."""
    text = raw.strip()
    upper = text.upper()
    if len(upper) == 2 and upper.isascii() and upper.isalpha():
        state = us_states().get(upper)
        if state is not None:
            name, region, tz = state
            us = countries()["US"]
            doc = {
                "code": raw,
                "kind": "us_state",
                "country_code": "US",
                "country_name": us.name,
                "continent_code": us.continent_code,
                "subdivision_code": f"US-{upper}",
                "subdivision_name": name,
                "census_region": region,
            }
            return LocaleInfo(doc, "US", region, tz, ("US", us.continent_code or "-", region))
        found = _country_locale(upper, raw)
        if found is not None:
            return found
    else:
        # language[-_]REGION[...], e.g. en_US, de-AT, en_GB.UTF-8: the region is a country, never a state
        for sep in ("_", "-"):
            lang, _, rest = text.partition(sep)
            region = rest[:2].upper()
            if (
                2 <= len(lang) <= 3
                and lang.isalpha()
                and len(rest) >= 2
                and region.isalpha()
                and (len(rest) == 2 or not rest[2].isalpha())
            ):
                found = _country_locale(region, raw)
                if found is not None:
                    return found
    doc = {
        "code": raw,
        "kind": "unknown",
        "country_code": None,
        "country_name": None,
        "continent_code": None,
        "subdivision_code": None,
        "subdivision_name": None,
        "census_region": None,
    }
    return LocaleInfo(doc, None, None, None)


def time_features(ts: int, timezone: str | None, source: str | None) -> TimeInfo:
    """The ISO UTC event time and the ``time`` sub-document for epoch seconds ``ts``."""
    days, rest = divmod(ts, 86_400)
    hour, rest = divmod(rest, 3_600)
    minute, second = divmod(rest, 60)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    event_time = f"{_utc_date(days)}T{hour:02d}:{minute:02d}:{second:02d}Z"
    local: Doc | None = None
    if timezone is not None:
        moment = datetime.fromtimestamp(ts, _zone(timezone))
        local_weekday = moment.weekday()
        local = {
            "timezone": timezone,
            "source": source,
            "time": moment.isoformat(),
            "hour": moment.hour,
            "weekday": local_weekday,
            "weekend": local_weekday >= 5,
            "day_segment": DAY_SEGMENTS[moment.hour // 6],
        }
    doc = {
        "hour": hour,
        "weekday": weekday,
        "weekend": weekday >= 5,
        "day_segment": DAY_SEGMENTS[hour // 6],
        "local": local,
    }
    return TimeInfo(event_time, doc, (weekday, hour), local is not None and local["hour"] < 6)


@lru_cache(maxsize=4_096)
def _utc_date(days: int) -> str:
    return datetime.fromtimestamp(days * 86_400, UTC).date().isoformat()


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def event_id_of(raw: bytes) -> str:
    """A stable id for an input without ``event_id``: BLAKE2b-128 of its bytes, hex."""
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


# --------------------------------------------------------------------------- the enricher


def _remember(cache: OrderedDict[K, V], size: int, key: K, value: V) -> V:
    """Store in a bounded cache: when full, the oldest entry goes (FIFO); size 0 stores nothing.

    O(1): ``OrderedDict.popitem(last=False)`` unlinks the head. (``del d[next(iter(d))]`` on a plain dict
    is O(n) once the cache is full: CPython leaves deleted slots at the front of the entry table until
    the next resize, and ``iter`` walks over them; see docs/performance.md.)
    """
    if size:
        if len(cache) >= size:
            cache.popitem(last=False)
        cache[key] = value
    return value


class Enricher:
    """Turns a validated event into the processed-login document (without the risk fields).

    Not thread-safe: one per consumer loop. Caches are bounded (FIFO): ``cache_size`` IPs; at most
    10,000 locales, (kind of IP, locale) places and (device type, app version) pairs; 20,000
    (second, timezone) pairs. A kind of IP is its (version, class, country): places, and the static
    risk factors computed with ``risk`` once per place, are shared by every IP of a kind.
    """

    def __init__(
        self,
        *,
        risk: RiskModel | None = None,
        min_app_version: str = "2.3.0",
        cache_size: int = 100_000,
        geoip_data_file: str = "geoip2fast-ipv6.dat.gz",
        consumer_version: str = "0",
    ) -> None:
        self.risk = risk if risk is not None else RiskModel()
        self._table = CountryTable(geoip(geoip_data_file))
        self._countries = countries()
        us_states()  # load pycountry's subdivisions now, not on the first event
        self._geo_docs: dict[str, Doc] = {}
        self.min_app_version = Version(min_app_version)
        self.consumer_version = consumer_version
        self._size = cache_size
        self._small_size = min(cache_size, 10_000)
        self._time_size = min(cache_size, 20_000)
        self._ips: OrderedDict[str, IpInfo] = OrderedDict()
        self._ip_kinds: dict[tuple[int, str, str | None], IpInfo] = {}  # versions x classes x countries
        self._locales: OrderedDict[str, LocaleInfo] = OrderedDict()
        self._places: OrderedDict[tuple[IpInfo, str | None], Place] = OrderedDict()
        self._clients: OrderedDict[tuple[str | None, str | None], Client] = OrderedDict()
        self._times: OrderedDict[tuple[int, str | None, str | None], TimeInfo] = OrderedDict()

    def cache_sizes(self) -> dict[str, int]:
        return {
            "ip": len(self._ips),
            "place": len(self._places),
            "locale": len(self._locales),
            "client": len(self._clients),
            "time": len(self._times),
        }

    def _geo_doc(self, code: str, fallback_name: str) -> tuple[Doc, CountryInfo | None]:
        info = self._countries.get(code)
        doc = self._geo_docs.get(code)
        if doc is None:
            if info is not None:
                doc = {
                    "country_code": code,
                    "country_name": info.name,
                    "continent_code": info.continent_code,
                    "continent_name": info.continent_name,
                }
            else:
                doc = {
                    "country_code": code,
                    "country_name": fallback_name,
                    "continent_code": None,
                    "continent_name": None,
                }
            self._geo_docs[code] = doc
        return doc, info

    def read_ip(self, ip: str) -> IpInfo:
        """Version, class and (for public addresses) geography of one IP address.

        The result depends only on (version, class, country): one shared ``IpInfo`` per such triple,
        so that places (``read_place``) can be cached per kind of IP rather than per address."""
        parsed = parse_ip(ip)
        if parsed is None:
            raise EnrichmentError(f"not an IP address: {ip[:64]!r}")
        version, value = parsed
        ip_class, v4 = classify(version, value)
        found = None
        if ip_class == "public":
            found = self._table.country(
                value if v4 is None else v4, ip if version == 4 or v4 is None else format_v4(v4)
            )
        kind = (version, ip_class, found[0] if found is not None else None)
        info = self._ip_kinds.get(kind)
        if info is None:
            info = self._ip_kinds[kind] = self._ip_info(version, ip_class, found)
        return info

    def _ip_info(self, version: int, ip_class: str, found: tuple[str, str] | None) -> IpInfo:
        if found is None:
            return IpInfo(version, ip_class, None, None, None, None)
        code, name = found
        doc, info = self._geo_doc(code, name)
        continent = doc["continent_code"]
        return IpInfo(
            version,
            ip_class,
            doc,
            code,
            continent,
            info.timezone if info is not None else None,
            (code, continent or "-", "-"),
        )

    def read_place(self, info: IpInfo, locale_raw: str | None) -> Place:
        """What an IP (of this kind) and a locale say together."""
        locale: LocaleInfo | None = None
        if locale_raw is not None:
            locale = self._locales.get(locale_raw)
            if locale is None:
                locale = _remember(self._locales, self._small_size, locale_raw, read_locale(locale_raw))
        # metric labels: the IP's country when known (with the locale's census region for the US), else
        # the locale's
        geo_key = info.geo_key
        if geo_key is not None:
            if info.country == "US" and locale is not None and locale.region is not None:
                geo_key = locale.geo_key
        elif locale is not None:
            geo_key = locale.geo_key
        # local time: the IP's country's zone; else the locale's, unless the IP is in another country
        timezone: str | None = info.timezone
        source: str | None = "ip"
        if timezone is None:
            timezone = source = None
            if (
                locale is not None
                and locale.timezone is not None
                and (info.country is None or info.country == locale.country)
            ):
                timezone, source = locale.timezone, "locale"
        locale_country = locale.country if locale is not None else None
        locale_continent = locale.doc["continent_code"] if locale is not None else None
        factors = self.risk.place_factors(
            info.ip_class, info.country, info.continent, locale_country, locale_continent
        )
        return Place(info, locale, timezone, source, geo_key or NO_GEO, factors)

    def read_client(self, device_type: str | None, app_version: str | None) -> Client:
        device = read_device(device_type)
        app = read_app_version(app_version, self.min_app_version)
        key = (device["platform"], app["major_minor"] or "-")
        return Client(device, app, key, self.risk.client_factors(device, app))

    def enrich(self, event: Event, ts: int, raw: bytes, processed_at: str) -> Enriched:
        """The document (without risk fields) and the cached facts it was built from."""
        ip = event.ip
        info = self._ips.get(ip)
        if info is None:
            info = _remember(self._ips, self._size, ip, self.read_ip(ip))
        place_key = (info, event.locale)
        place = self._places.get(place_key)
        if place is None:
            place = _remember(self._places, self._small_size, place_key, self.read_place(*place_key))
        time_key = (ts, place.timezone, place.timezone_source)
        moment = self._times.get(time_key)
        if moment is None:
            moment = _remember(self._times, self._time_size, time_key, time_features(*time_key))
        client_key = (event.device_type, event.app_version)
        client = self._clients.get(client_key)
        if client is None:
            client = _remember(self._clients, self._small_size, client_key, self.read_client(*client_key))
        locale = place.locale
        doc = {
            "schema_version": PROCESSED_SCHEMA_VERSION,
            "event_id": event.event_id or event_id_of(raw),
            "user_id": event.user_id,
            "timestamp": ts,
            "event_time": moment.event_time,
            "processed_at": processed_at,
            "ip": ip,
            "ip_version": info.version,
            "ip_class": info.ip_class,
            "geo": info.geo,
            "locale": locale.doc if locale is not None else None,
            "time": moment.doc,
            "device_id": event.device_id,
            "device": client.device,
            "app": client.app,
            "outcome": event.outcome,
            "auth_method": event.auth_method,
            "consumer_version": self.consumer_version,
        }
        return doc, place, moment, client


def processed_at_now(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
