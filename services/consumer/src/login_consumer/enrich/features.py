"""Enrichment's pure functions: one value in, one fact out (cached by the enricher per distinct value).

Device type -> platform, app version -> its parsed form and support, locale -> country or US state, epoch
seconds -> UTC and local time features, raw bytes -> a stable event id, and the bounded FIFO cache the
enricher keeps them in.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import TypeVar
from zoneinfo import ZoneInfo

from packaging.version import InvalidVersion, Version

from login_consumer.enrich.loaders import countries, us_states
from login_consumer.enrich.tables import DAY_SEGMENTS, PLATFORMS, Doc, LocaleInfo, TimeInfo

K = TypeVar("K")
V = TypeVar("V")


def day_segment(hour: int) -> str:
    return DAY_SEGMENTS[hour // 6]


def read_device(device_type: str | None) -> Doc:
    if device_type is None or not device_type.strip():
        return {"type": device_type, "platform": "unknown", "family": "unknown"}
    platform, family = PLATFORMS.get(device_type.strip().lower(), ("other", "other"))
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
