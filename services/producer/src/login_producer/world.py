"""The simulated world: where users live, their time zones, where attackers operate.

Countries are indexed (``COUNTRIES[i]``) so per-user state can keep a bitmask of countries. A user's
*region* is a US state (which is also the event's ``locale``, as in the common data generator) or, outside
the US, the capital city; the region fixes the user's UTC offset (daylight saving is not simulated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from login_common.geo import COUNTRY_POINTS


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    region: str  # capital city (non-US); US users get a state instead
    utc_offset_h: float
    user_weight: float  # share of the population living there
    attack_weight: float  # share of attack campaigns run from there
    travel_weight: float  # popularity as a trip destination

    @property
    def point(self) -> tuple[float, float]:
        return COUNTRY_POINTS[self.code]


US: Final = "US"

COUNTRIES: Final[tuple[Country, ...]] = (
    Country("US", "-", -5, 60.0, 8.0, 6.0),
    Country("CA", "Ottawa", -5, 4.0, 0.0, 5.0),
    Country("MX", "Mexico City", -6, 3.0, 0.0, 6.0),
    Country("BR", "Brasilia", -3, 3.0, 7.0, 2.0),
    Country("AR", "Buenos Aires", -3, 1.0, 0.0, 1.0),
    Country("CO", "Bogota", -5, 1.0, 0.0, 1.0),
    Country("GB", "London", 0, 4.0, 0.0, 6.0),
    Country("IE", "Dublin", 0, 0.5, 0.0, 1.0),
    Country("FR", "Paris", 1, 2.5, 0.0, 6.0),
    Country("DE", "Berlin", 1, 3.0, 6.0, 4.0),
    Country("NL", "Amsterdam", 1, 1.0, 8.0, 2.0),
    Country("ES", "Madrid", 1, 1.5, 0.0, 5.0),
    Country("IT", "Rome", 1, 1.5, 0.0, 5.0),
    Country("PL", "Warsaw", 1, 1.0, 0.0, 1.0),
    Country("SE", "Stockholm", 1, 0.5, 0.0, 1.0),
    Country("UA", "Kyiv", 2, 0.5, 6.0, 0.3),
    Country("RO", "Bucharest", 2, 0.5, 6.0, 0.5),
    Country("TR", "Ankara", 3, 1.0, 0.0, 2.0),
    Country("RU", "Moscow", 3, 0.5, 14.0, 0.3),
    Country("AE", "Abu Dhabi", 4, 0.5, 0.0, 2.0),
    Country("IN", "New Delhi", 5.5, 2.5, 8.0, 2.0),
    Country("CN", "Beijing", 8, 0.5, 14.0, 1.0),
    Country("JP", "Tokyo", 9, 1.5, 0.0, 3.0),
    Country("KR", "Seoul", 9, 0.5, 0.0, 1.5),
    Country("SG", "Singapore", 8, 0.5, 0.0, 2.0),
    Country("ID", "Jakarta", 7, 1.0, 5.0, 1.5),
    Country("PH", "Manila", 8, 1.0, 0.0, 1.0),
    Country("VN", "Hanoi", 7, 0.5, 8.0, 1.0),
    Country("AU", "Canberra", 10, 1.5, 0.0, 2.0),
    Country("NZ", "Wellington", 12, 0.5, 0.0, 0.5),
    Country("ZA", "Pretoria", 2, 0.5, 0.0, 1.0),
    Country("NG", "Abuja", 1, 0.5, 6.0, 0.3),
    Country("EG", "Cairo", 2, 0.5, 0.0, 1.0),
    Country("KE", "Nairobi", 3, 0.3, 0.0, 0.5),
)
COUNTRY_INDEX: Final = {c.code: i for i, c in enumerate(COUNTRIES)}

# (state, UTC offset in hours, population weight): the US locale of the common data generator.
US_STATES: Final[tuple[tuple[str, int, float], ...]] = (
    ("CA", -8, 39.0),
    ("TX", -6, 30.0),
    ("FL", -5, 22.0),
    ("NY", -5, 20.0),
    ("PA", -5, 13.0),
    ("IL", -6, 12.6),
    ("OH", -5, 11.8),
    ("GA", -5, 10.9),
    ("NC", -5, 10.7),
    ("MI", -5, 10.0),
    ("NJ", -5, 9.3),
    ("VA", -5, 8.7),
    ("WA", -8, 7.8),
    ("AZ", -7, 7.3),
    ("MA", -5, 7.0),
    ("TN", -6, 7.0),
    ("IN", -5, 6.8),
    ("MD", -5, 6.2),
    ("MO", -6, 6.2),
    ("WI", -6, 5.9),
    ("CO", -7, 5.8),
    ("MN", -6, 5.7),
    ("SC", -5, 5.3),
    ("AL", -6, 5.1),
    ("LA", -6, 4.6),
    ("KY", -5, 4.5),
    ("OR", -8, 4.2),
    ("OK", -6, 4.0),
    ("CT", -5, 3.6),
    ("UT", -7, 3.4),
    ("IA", -6, 3.2),
    ("NV", -8, 3.2),
    ("AR", -6, 3.0),
    ("MS", -6, 2.9),
    ("KS", -6, 2.9),
    ("NM", -7, 2.1),
    ("NE", -6, 2.0),
    ("ID", -7, 1.9),
    ("WV", -5, 1.8),
    ("HI", -10, 1.4),
    ("NH", -5, 1.4),
    ("ME", -5, 1.4),
    ("RI", -5, 1.1),
    ("MT", -7, 1.1),
    ("DE", -5, 1.0),
    ("SD", -6, 0.9),
    ("ND", -6, 0.8),
    ("AK", -9, 0.7),
    ("DC", -5, 0.7),
    ("VT", -5, 0.6),
    ("WY", -7, 0.6),
)

# Login propensity by local hour (0..23), peak 1.0: quiet nights, a morning rise, an evening peak.
DAILY_RHYTHM: Final[tuple[float, ...]] = (
    0.10, 0.06, 0.04, 0.03, 0.03, 0.05, 0.15, 0.40, 0.65, 0.70, 0.70, 0.72,
    0.80, 0.75, 0.70, 0.70, 0.72, 0.80, 0.90, 1.00, 1.00, 0.90, 0.60, 0.30,
)  # fmt: skip
WEEKEND_FACTOR: Final = 0.85
# Mean acceptance of the rhythm over a week (every local hour equally likely).
RHYTHM_MEAN: Final = sum(DAILY_RHYTHM) / 24 * (5 + 2 * WEEKEND_FACTOR) / 7
WORK_HOURS: Final = range(9, 18)
