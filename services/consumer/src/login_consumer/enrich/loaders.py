"""Enrichment's reference data, loaded once per process from maintained packages.

geoip2fast's bundled dataset (IP -> country, ``geoip`` and ``CountryTable``), pycountry (country and US
state names), pycountry-convert-ng (country -> continent), tzdata's zone.tab (country -> timezone).
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
import pycountry_convert  # type: ignore[import-untyped]
from geoip2fast import GeoIP2Fast

from login_consumer.enrich.tables import US_STATES, CountryInfo
from login_consumer.errors import EnrichmentError


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
        if code in US_STATES:
            region, tz = US_STATES[code]
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
