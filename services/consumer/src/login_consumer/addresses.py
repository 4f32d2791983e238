"""IP address syntax and class, fast for IPv4 (the common case) and exact for IPv6.

IPv4: strict dotted-quad syntax through ``inet_pton`` (no leading zeros, no shorthand; the same strings
``ipaddress`` accepts) and a class from the IANA IPv4 Special-Purpose Address Registry, looked up by
integer range. IPv6 (and IPv4-mapped IPv6, classified as the IPv4 address it carries): ``ipaddress``.
"""

from __future__ import annotations

import ipaddress
import socket
from bisect import bisect_right
from typing import Final

CLASSES: Final = (
    "public",
    "private",
    "shared",
    "loopback",
    "link_local",
    "multicast",
    "reserved",
    "unspecified",
)

# IANA IPv4 special-purpose blocks that are not globally reachable, plus multicast (224.0.0.0/4).
_V4_BLOCKS: Final = (
    ("0.0.0.0/8", "reserved"),  # "this network"; 0.0.0.0 itself is unspecified
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared"),  # carrier-grade NAT
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link_local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "reserved"),  # documentation (TEST-NET-1)
    ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("198.51.100.0/24", "reserved"),  # documentation (TEST-NET-2)
    ("203.0.113.0/24", "reserved"),  # documentation (TEST-NET-3)
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # future use, and 255.255.255.255 (limited broadcast)
)
_V4_STARTS: Final = tuple(int(ipaddress.IPv4Network(net).network_address) for net, _ in _V4_BLOCKS)
_V4_ENDS: Final = tuple(int(ipaddress.IPv4Network(net).broadcast_address) for net, _ in _V4_BLOCKS)
_V4_CLASSES: Final = tuple(kind for _, kind in _V4_BLOCKS)
_V6_PRIVATE: Final = ipaddress.IPv6Network("fc00::/7")  # unique local addresses


def parse_ip(text: str) -> tuple[int, int] | None:
    """(version, address as an integer) for a valid IPv4/IPv6 address string, else None."""
    if "." in text and ":" not in text:
        try:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
        except (OSError, ValueError, UnicodeError):
            return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return addr.version, int(addr)


def classify_v4(value: int) -> str:
    if value == 0:
        return "unspecified"
    index = bisect_right(_V4_STARTS, value) - 1
    if index >= 0 and value <= _V4_ENDS[index]:
        return _V4_CLASSES[index]
    return "public"


def classify_v6(addr: ipaddress.IPv6Address) -> str:
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link_local"
    if addr.is_multicast:
        return "multicast"
    if addr in _V6_PRIVATE:
        return "private"
    if addr.is_global:
        return "public"
    return "reserved"


def classify(version: int, value: int) -> tuple[str, int | None]:
    """(class, the IPv4 integer to geolocate or None) of a parsed address."""
    if version == 4:
        return classify_v4(value), value
    addr = ipaddress.IPv6Address(value)
    mapped = addr.ipv4_mapped
    if mapped is not None:  # ::ffff:a.b.c.d is an IPv4 client
        return classify_v4(int(mapped)), int(mapped)
    return classify_v6(addr), None


def format_v4(value: int) -> str:
    return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))
