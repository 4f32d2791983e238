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

from collections import OrderedDict
from datetime import UTC, datetime

from packaging.version import Version

from login_common.contract import PROCESSED_SCHEMA_VERSION
from login_consumer.addresses import classify, format_v4, parse_ip
from login_consumer.enrich.features import (
    _remember,
    event_id_of,
    read_app_version,
    read_device,
    read_locale,
    time_features,
)
from login_consumer.enrich.loaders import CountryTable, countries, geoip, us_states
from login_consumer.enrich.tables import (
    NO_GEO,
    Client,
    CountryInfo,
    Doc,
    Enriched,
    IpInfo,
    LocaleInfo,
    Place,
    TimeInfo,
)
from login_consumer.errors import EnrichmentError
from login_consumer.risk import RiskModel
from login_consumer.validate import Event


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
