"""Which IP addresses an outbound call made on a user's behalf may not reach (pure).

:func:`refusal` names the range an address falls in (``"loopback"``, ``"cloud metadata"``…) or
returns None for an ordinary public address. IPv6 forms that carry an IPv4 address (mapped
``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are
judged by the IPv4 address inside them, so ``::ffff:127.0.0.1`` is loopback.
"""

from __future__ import annotations

import ipaddress
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Metadata services of the clouds (AWS IMDS v4/v6, Alibaba, Oracle's legacy address...).
METADATA: Final[tuple[Network, ...]] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.169.254/32",
        "169.254.170.2/32",  # ECS task metadata
        "169.254.169.253/32",  # Amazon DNS (link-local)
        "100.100.100.200/32",  # Alibaba Cloud
        "192.0.0.192/32",  # Oracle Cloud
        "fd00:ec2::254/128",
        "fd00:ec2::23/128",
    )
)

#: Ranges refused by name, checked in order (the first that matches names the refusal).
RANGES: Final[tuple[tuple[str, Network], ...]] = tuple(
    (name, ipaddress.ip_network(net))
    for name, net in (
        ("unspecified", "0.0.0.0/8"),
        ("loopback", "127.0.0.0/8"),
        ("link-local", "169.254.0.0/16"),
        ("private", "10.0.0.0/8"),
        ("private", "172.16.0.0/12"),
        ("private", "192.168.0.0/16"),
        ("shared address space (CGNAT)", "100.64.0.0/10"),
        ("reserved", "192.0.0.0/24"),
        ("documentation", "192.0.2.0/24"),
        ("benchmarking", "198.18.0.0/15"),
        ("documentation", "198.51.100.0/24"),
        ("documentation", "203.0.113.0/24"),
        ("multicast", "224.0.0.0/4"),
        ("reserved", "240.0.0.0/4"),  # includes 255.255.255.255
        ("unspecified", "::/128"),
        ("loopback", "::1/128"),
        ("link-local", "fe80::/10"),
        ("site-local", "fec0::/10"),
        ("unique-local", "fc00::/7"),
        ("multicast", "ff00::/8"),
        ("documentation", "2001:db8::/32"),
        ("discard-only", "100::/64"),
        ("reserved", "2001::/23"),  # IETF protocol assignments (Teredo, ORCHID...)
    )
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


def parse(text: str) -> IPAddress | None:
    """An address literal (``[::1]`` brackets and ``%zone`` allowed), else None."""
    value = text.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = address.packed
    if address in _NAT64:
        return ipaddress.IPv4Address(packed[-4:])
    if packed[:12] == bytes(12) and int(address) > 1:  # ::a.b.c.d (deprecated "compatible")
        return ipaddress.IPv4Address(packed[-4:])
    return None


def canonical(address: IPAddress) -> IPAddress:
    """The address a connection really reaches: the IPv4 one inside an IPv6 wrapper."""
    return embedded_v4(address) or address


def refusal(address: IPAddress) -> str | None:
    """Why a user's outbound call may not reach ``address``, or None when it may."""
    inner = canonical(address)
    if any(inner in net for net in METADATA if net.version == inner.version):
        return "cloud metadata"
    if inner.version == 6 and inner in _NAT64_LOCAL:
        return "private"
    for name, net in RANGES:
        if net.version == inner.version and inner in net:
            return name
    if not inner.is_global:  # anything else IANA lists as not globally reachable
        return "reserved"
    return None
