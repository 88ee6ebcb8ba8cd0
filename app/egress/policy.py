"""The egress policy: may a user's outbound call reach this host and port?

Checked on resolved addresses, never on names alone: a host name is resolved once, every
address it resolves to is checked, and the client connects only to those addresses (see
:mod:`app.egress.client`), so a DNS answer that changes between check and connect (rebinding)
changes nothing.

Order of the checks, for each resolved address:

1. the service's own endpoints are refused, always, even when allow-listed: the API and embedded
   MQTT ports on this machine (loopback, unspecified, this host's addresses, ``HTTP_HOST``) and
   the configured database, broker, Redis and MQTT endpoints;
2. an allow-listed host name (exact, or ``*.lan`` for its subdomains) or CIDR is allowed;
3. an address in a refused range (:func:`app.egress.addresses.refusal`) is refused;
4. anything else (a public address) is allowed.

A name that resolves to several addresses is refused if any of them is.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.config.egress import split_list
from app.egress.addresses import IPAddress, Network, canonical, parse, refusal

if TYPE_CHECKING:
    from app.config import Settings

Resolver = Callable[[str, int], list[str]]

DEFAULT_PORTS = {
    "postgresql": 5432,
    "postgresql+psycopg": 5432,
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "amqps": 5671,
    "pyamqp": 5672,
    "mqtt": 1883,
    "tcp": 1883,
    "mqtts": 8883,
    "ssl": 8883,
    "http": 80,
    "https": 443,
}


class EgressError(Exception):
    """An outbound call did not happen or did not finish; ``str()`` says why in one line."""


class EgressRefused(EgressError):
    """The policy refuses the destination (before any connection to it)."""

    def __init__(self, host: str, port: int, address: str | None, reason: str) -> None:
        self.host, self.port, self.address, self.reason = host, port, address, reason
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if address is not None and parse(host) is None:
            where += f" (resolves to {address})"
        super().__init__(f"egress refused: {where} is {reason}")


class EgressUnresolved(EgressError):
    """The host name does not resolve."""


class EgressTimeout(EgressError):
    """The call's total deadline passed."""


class EgressTooLarge(EgressError):
    """The response is larger than the cap; reading stopped there."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _host_matches(host: str, patterns: Iterable[str]) -> bool:
    name = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]):
                return True
        elif name == pattern:
            return True
    return False


@dataclass(frozen=True)
class EgressPolicy:
    allow_networks: tuple[Network, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    #: Ports of this service on this machine (API, embedded MQTT).
    own_local_ports: frozenset[int] = frozenset()
    #: Addresses of this machine the own ports are refused on (besides loopback/unspecified).
    local_addresses: frozenset[IPAddress] = frozenset()
    #: (address or lower-case host name, port) of the configured database/broker/redis/MQTT.
    own_endpoints: frozenset[tuple[str, int]] = frozenset()
    timeout_seconds: float = 60.0
    max_response_bytes: int = 1024 * 1024
    max_redirects: int = 0
    resolver: Resolver = field(default=system_resolver, compare=False)

    # --- the checks -------------------------------------------------------------------------

    def _own(self, host: str, address: IPAddress, port: int) -> str | None:
        inner = canonical(address)
        if port in self.own_local_ports and (
            inner.is_loopback or inner.is_unspecified or inner in self.local_addresses
        ):
            return "one of smokehouse's own ports"
        if (str(inner), port) in self.own_endpoints or (
            host.lower().rstrip("."),
            port,
        ) in self.own_endpoints:
            return "one of smokehouse's own service endpoints"
        return None

    def address_problem(self, host: str, address: IPAddress, port: int) -> str | None:
        """Why ``address`` (which ``host`` resolved to) may not be called on ``port``."""
        own = self._own(host, address, port)
        if own is not None:
            return own
        if _host_matches(host, self.allow_hosts):
            return None
        inner = canonical(address)
        if any(inner in net for net in self.allow_networks if net.version == inner.version):
            return None
        if any(address in net for net in self.allow_networks if net.version == address.version):
            return None
        return refusal(address)

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        literal = parse(host)
        if literal is not None:
            return [literal]
        try:
            found = self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise EgressUnresolved(f"could not resolve {host}: {exc}") from None
        addresses = [a for a in (parse(text) for text in found) if a is not None]
        if not addresses:
            raise EgressUnresolved(f"could not resolve {host}: no address")
        return addresses

    def check(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` once and check every address; the addresses to connect to.
        Raises :class:`EgressRefused` or :class:`EgressUnresolved`."""
        host = host.strip("[]")
        addresses = self.resolve(host, port)
        for address in addresses:
            problem = self.address_problem(host, address, port)
            if problem is not None:
                raise EgressRefused(host, port, str(address), problem)
        return addresses

    def check_url(self, url: str) -> list[IPAddress]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EgressRefused(url, 0, None, "not an http(s) URL")
        return self.check(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme])


# --- from the settings ---------------------------------------------------------------------


def _endpoint(url: str | None) -> tuple[str, int] | None:
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    return (parts.hostname.lower(), port) if port else None


def _addresses_of(host: str) -> set[IPAddress]:
    literal = parse(host)
    if literal is not None:
        return {canonical(literal)}
    try:
        return {canonical(a) for a in (parse(t) for t in system_resolver(host, 0)) if a}
    except (OSError, UnicodeError):
        return set()


@functools.cache
def _this_host() -> frozenset[IPAddress]:
    found: set[IPAddress] = set()
    for name in {socket.gethostname(), socket.getfqdn()}:
        found |= _addresses_of(name)
    return frozenset(found)


@functools.lru_cache(maxsize=32)
def _build(
    allow: str,
    timeout_seconds: float,
    max_response_bytes: int,
    max_redirects: int,
    own_ports: frozenset[int],
    http_host: str,
    endpoint_urls: tuple[str | None, ...],
) -> EgressPolicy:
    networks: list[Network] = []
    hosts: list[str] = []
    for entry in split_list(allow):
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.append(entry.lower().rstrip("."))
    endpoints: set[tuple[str, int]] = set()
    for url in endpoint_urls:
        found = _endpoint(url)
        if found is None:
            continue
        endpoints.add(found)
        endpoints |= {(str(a), found[1]) for a in _addresses_of(found[0])}
    return EgressPolicy(
        allow_networks=tuple(networks),
        allow_hosts=tuple(hosts),
        own_local_ports=own_ports,
        local_addresses=_this_host() | frozenset(_addresses_of(http_host)),
        own_endpoints=frozenset(endpoints),
        timeout_seconds=timeout_seconds,
        max_response_bytes=max_response_bytes,
        max_redirects=max_redirects,
    )


def policy_for(settings: Settings) -> EgressPolicy:
    """The policy ``settings`` describe (built once per distinct configuration)."""
    egress = settings.egress
    return _build(
        egress.allow,
        egress.timeout_seconds,
        egress.max_response_bytes,
        egress.max_redirects,
        frozenset({settings.http_port, settings.embedded_mqtt_port}),
        settings.http_host,
        (settings.database_url, settings.broker_url, settings.redis_url, settings.mqtt_url),
    )
