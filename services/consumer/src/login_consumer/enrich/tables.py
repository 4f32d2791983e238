"""Enrichment's fixed tables and the shapes of what it caches.

The US Census Bureau's four regions and each state's principal timezone (published facts that no package
ships), the device types' platforms, the day segments; and the cached facts (``IpInfo``, ``LocaleInfo``,
``TimeInfo``, ``Place``, ``Client``), shared between events and read-only once built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from login_consumer.risk import Factors

Doc = dict[str, Any]

# US Census Bureau regions (Northeast, Midwest, South, West) and each state's principal IANA timezone.
# State names come from pycountry; states spanning two zones get the zone of most of their population.
US_STATES: Final[dict[str, tuple[str, str]]] = {
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
PLATFORMS: Final[dict[str, tuple[str, str]]] = {
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
