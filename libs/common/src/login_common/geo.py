"""Reference points of countries and great-circle distance, shared by the simulator and the detectors.

IP geolocation (geoip2fast's default data file) resolves an address to a country only, so "where a login
happened" is the country's reference point: its capital city (approximate WGS84 coordinates). The
producer labels impossible travel with these points and the consumer's detector measures with them, so
both sides agree on every distance. Countries missing here have no point: no distance can be measured.
"""

from __future__ import annotations

import math
from typing import Final

EARTH_RADIUS_KM: Final = 6371.0088

# ISO 3166-1 alpha-2 -> (latitude, longitude) of the capital city.
COUNTRY_POINTS: Final[dict[str, tuple[float, float]]] = {
    "AE": (24.45, 54.38),
    "AR": (-34.60, -58.38),
    "AT": (48.21, 16.37),
    "AU": (-35.28, 149.13),
    "BD": (23.81, 90.41),
    "BE": (50.85, 4.35),
    "BR": (-15.79, -47.88),
    "CA": (45.42, -75.70),
    "CH": (46.95, 7.45),
    "CL": (-33.45, -70.67),
    "CN": (39.90, 116.41),
    "CO": (4.71, -74.07),
    "CZ": (50.08, 14.44),
    "DE": (52.52, 13.40),
    "DK": (55.68, 12.57),
    "EG": (30.04, 31.24),
    "ES": (40.42, -3.70),
    "FI": (60.17, 24.94),
    "FR": (48.86, 2.35),
    "GB": (51.51, -0.13),
    "GR": (37.98, 23.73),
    "HK": (22.32, 114.17),
    "HU": (47.50, 19.04),
    "ID": (-6.21, 106.85),
    "IE": (53.35, -6.26),
    "IL": (31.77, 35.22),
    "IN": (28.61, 77.21),
    "IT": (41.90, 12.50),
    "JP": (35.68, 139.69),
    "KE": (-1.29, 36.82),
    "KR": (37.57, 126.98),
    "MA": (34.02, -6.84),
    "MX": (19.43, -99.13),
    "MY": (3.14, 101.69),
    "NG": (9.08, 7.40),
    "NL": (52.37, 4.90),
    "NO": (59.91, 10.75),
    "NZ": (-41.29, 174.78),
    "PE": (-12.05, -77.04),
    "PH": (14.60, 120.98),
    "PK": (33.68, 73.05),
    "PL": (52.23, 21.01),
    "PT": (38.72, -9.14),
    "RO": (44.43, 26.10),
    "RU": (55.76, 37.62),
    "SA": (24.71, 46.68),
    "SE": (59.33, 18.07),
    "SG": (1.35, 103.82),
    "TH": (13.76, 100.50),
    "TR": (39.93, 32.86),
    "TW": (25.03, 121.57),
    "UA": (50.45, 30.52),
    "US": (38.90, -77.04),
    "VN": (21.03, 105.85),
    "ZA": (-25.75, 28.19),
}


# The geoip2fast dataset both services use (IPv4 and IPv6). geoip2fast keeps its data in module globals, so
# every reader in a process must load the same file: a reader created with another file replaces the data
# under all the others.
GEOIP_DATA_FILE = "geoip2fast-ipv6.dat.gz"


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Haversine distance in km between two (latitude, longitude) points in degrees."""
    lat1, lon1 = math.radians(a[0]), math.radians(a[1])
    lat2, lon2 = math.radians(b[0]), math.radians(b[1])
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def country_distance_km(a: str, b: str) -> float | None:
    """Distance between two countries' reference points; None when either has no point."""
    pa, pb = COUNTRY_POINTS.get(a), COUNTRY_POINTS.get(b)
    if pa is None or pb is None:
        return None
    return great_circle_km(pa, pb)
