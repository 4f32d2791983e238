"""Enrichment: geography, locale, time, platform, app version and IP class for each valid event.

``enricher.py`` holds the ``Enricher`` (the hot path, with its bounded caches); ``features.py`` the pure
functions it caches per distinct value; ``loaders.py`` the reference data loaded once; ``tables.py`` the
fixed tables and the shapes of the cached facts. This package re-exports what the rest of the consumer
uses.
"""

from login_consumer.enrich.enricher import Enricher, processed_at_now
from login_consumer.enrich.features import (
    _remember,
    day_segment,
    event_id_of,
    read_app_version,
    read_device,
    read_locale,
    time_features,
)
from login_consumer.enrich.loaders import CountryTable, countries, country_timezones, geoip, us_states
from login_consumer.enrich.tables import Client, Enriched, Place, TimeInfo

__all__ = [
    "Client",
    "CountryTable",
    "Enriched",
    "Enricher",
    "Place",
    "TimeInfo",
    "_remember",
    "countries",
    "country_timezones",
    "day_segment",
    "event_id_of",
    "geoip",
    "processed_at_now",
    "read_app_version",
    "read_device",
    "read_locale",
    "time_features",
    "us_states",
]
