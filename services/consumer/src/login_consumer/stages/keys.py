"""How events are keyed between the stages: the network of an address and its repartition partition.

The user stage writes each event to the repartition topic keyed by its network, in the partition
``crc32(network) % partitions``; ``in_process.py`` does the same without Kafka. Both keys must be the same
in every process and version: the network stage's state is per partition.
"""

from __future__ import annotations

import ipaddress
import zlib


def network_of(ip: str, prefix: int = 24) -> str | None:
    """The network an address belongs to for credential stuffing: IPv4 /24 (or the address), IPv6 /64;
    None for text that is neither (such an event completes without the network stage)."""
    if ":" not in ip:
        if ip.count(".") != 3:
            return None
        if prefix == 24:
            return ip.rpartition(".")[0] + ".0/24"
        return ip + "/32"
    try:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    except ValueError:
        return None


def network_partition(net: bytes, partitions: int) -> int:
    """The repartition-topic partition of a network (crc32: the same in every process and version)."""
    return zlib.crc32(net) % partitions
