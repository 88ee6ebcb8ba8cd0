"""Leaf matchers of a compiled pattern and the normalised event values they test.

Event values are normalised once (``norm``) so that every matcher and every index can work on
plain hashable Python objects without ever confusing JSON types:

* strings stay ``str``;
* JSON numbers become ``float`` (event-ruler compares numbers as IEEE doubles, so ``300``,
  ``300.0`` and ``3e2`` are the same number); an integer too large for a double becomes
  ``BigNum`` and only ever equals the same integer;
* ``true``/``false`` become the ``TRUE``/``FALSE`` sentinels (``True == 1.0`` in Python, so the
  bools themselves cannot be used as dictionary keys next to numbers);
* ``null`` stays ``None``.

Strings never match numeric matchers and numbers never match string matchers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Final, TypeAlias


class Lit:
    """A JSON literal (``true``/``false``) as a dictionary-safe sentinel."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> str:
        return self.name.upper()


TRUE: Final = Lit("true")
FALSE: Final = Lit("false")
# Python's json module reads NaN; JSON (and Jackson) has no such number. It matches nothing
# but anything-but and exists.
NAN: Final = Lit("NaN")


@dataclass(frozen=True, slots=True)
class BigNum:
    """An integer outside the range of a double: compared exactly, never numerically."""

    value: int


Value: TypeAlias = str | float | Lit | BigNum | None


def norm(value: object) -> Value:
    """Normalise one JSON scalar (see the module docstring). Containers are not scalars."""
    t = type(value)
    if t is str:
        return value  # type: ignore[return-value]
    if t is float:
        return value if value == value else NAN  # type: ignore[return-value]
    if t is bool:
        return TRUE if value else FALSE
    if t is int:
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:
            return BigNum(value)  # type: ignore[arg-type]
    if value is None:
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return TRUE if value else FALSE
    if isinstance(value, int | float):
        return norm(float(value) if isinstance(value, float) else int(value))
    raise TypeError(f"not a JSON scalar: {value!r}")


# --------------------------------------------------------------------------------------------
# IP addresses, as event-ruler's CIDR class understands them
# --------------------------------------------------------------------------------------------
_IPV6 = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*", re.ASCII)
# Dotted IPv4 without leading zeros (octets over 255 are rejected after matching)
_IPV4 = re.compile(
    r"(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})"
)


class IpError(ValueError):
    pass


def ip_bytes(text: str) -> tuple[int, int]:
    """``(bits, value)`` of an IP literal; raises ``IpError`` with event-ruler's message.

    Only strings that look like an address to event-ruler's two regular expressions are
    considered (so no host names, zone ids or dotted IPv4 suffixes on IPv6). An IPv4-mapped IPv6
    address is an IPv4 address, as Java's ``InetAddress`` makes it.
    """
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() and p.isascii() for p in parts):
        value = 0
        for p in parts:
            octet = int(p)
            if octet > 255 or (p[0] == "0" and len(p) > 1):
                raise IpError(f"Invalid IP address: {text}")
            value = value << 8 | octet
        return 32, value
    if _IPV6.fullmatch(text):
        try:
            address = ipaddress.IPv6Address(text)
        except ValueError:
            raise IpError(f"Invalid IP address: {text}") from None
        mapped = address.ipv4_mapped
        if mapped is not None:
            return 32, int(mapped)
        return 128, int(address)
    raise IpError(f"Nonstandard IP address: {text}")


@lru_cache(maxsize=4096)
def event_ip(text: str) -> tuple[int, int] | None:
    """``ip_bytes`` for an event value: ``None`` when the string is not an IP literal."""
    if not text or not ("." in text or ":" in text):
        return None
    v4 = _IPV4.fullmatch(text)
    if v4 is not None:  # the common case, decided as ip_bytes decides it
        a, b, c, d = map(int, v4.groups())
        if a > 255 or b > 255 or c > 255 or d > 255:
            return None
        return 32, a << 24 | b << 16 | c << 8 | d
    try:
        return ip_bytes(text)
    except IpError:
        return None


# --------------------------------------------------------------------------------------------
# Wildcards
# --------------------------------------------------------------------------------------------
class WildcardError(ValueError):
    pass


def wildcard_segments(pattern: str) -> tuple[str, ...]:
    """Split a wildcard into its literal parts (one more than the number of ``*``).

    ``\\*`` is a literal star and ``\\\\`` a literal backslash; any other escape, or two stars in
    a row, is an error. Positions in messages are UTF-8 byte offsets in the *quoted* value, as in
    event-ruler's ``WildcardParser``.
    """
    segments: list[str] = []
    current: list[str] = []
    pos = 1  # the opening quote event-ruler puts in front
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                raise WildcardError(f"Consecutive wildcard characters at pos {pos}")
            segments.append("".join(current))
            current = []
        elif ch == "\\":
            if i + 1 < n and pattern[i + 1] in "*\\":
                current.append(pattern[i + 1])
                i += 1
                pos += 1
            else:
                raise WildcardError(f"Invalid escape character at pos {pos}")
        else:
            current.append(ch)
            pos += len(ch.encode("utf-8", "surrogatepass")) - 1
        pos += 1
        i += 1
    segments.append("".join(current))
    return tuple(segments)


def wildcard_match(segments: tuple[str, ...], value: str) -> bool:
    if len(segments) == 1:
        return value == segments[0]
    first = segments[0]
    last = segments[-1]
    if len(value) < len(first) + len(last):
        return False
    if not value.startswith(first) or not value.endswith(last):
        return False
    pos = len(first)
    end = len(value) - len(last)
    for middle in segments[1:-1]:
        found = value.find(middle, pos, end)
        if found < 0:
            return False
        pos = found + len(middle)
    return True


def fold(text: str) -> str:
    """Case folding used by the ``equals-ignore-case`` family."""
    return text.lower()


# --------------------------------------------------------------------------------------------
# Matchers. All are immutable and hashable; ``matches`` takes a normalised value.
# ``kind`` orders them for the compiled matcher: 0 exact, 1 indexable, 2 scanned, 3 broad.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Exact:
    """Equality with a string, number, ``true``, ``false`` or ``null``."""

    value: Value
    kind: ClassVar[int] = 0

    def matches(self, v: Value) -> bool:
        return type(v) is type(self.value) and v == self.value


@dataclass(frozen=True, slots=True)
class IpExact:
    """A pattern string that is an IP literal: equal addresses match (``::1`` = ``0::1``)."""

    text: str
    bits: int
    value: int
    kind: ClassVar[int] = 1

    def matches(self, v: Value) -> bool:
        if type(v) is not str:
            return False
        if v == self.text:
            return True
        ip = event_ip(v)
        return ip is not None and ip == (self.bits, self.value)


@dataclass(frozen=True, slots=True)
class Cidr:
    """An address range ``[lo, hi]``; ``lo`` is the address as written, like event-ruler."""

    text: str
    bits: int
    lo: int
    hi: int
    kind: ClassVar[int] = 1

    def matches(self, v: Value) -> bool:
        if type(v) is not str:
            return False
        ip = event_ip(v)
        return ip is not None and ip[0] == self.bits and self.lo <= ip[1] <= self.hi


@dataclass(frozen=True, slots=True)
class Prefix:
    value: str
    ignore_case: bool = False
    kind: ClassVar[int] = 1

    def matches(self, v: Value) -> bool:
        if type(v) is not str:
            return False
        return (fold(v) if self.ignore_case else v).startswith(self.value)


@dataclass(frozen=True, slots=True)
class Suffix:
    value: str
    ignore_case: bool = False
    kind: ClassVar[int] = 1

    def matches(self, v: Value) -> bool:
        if type(v) is not str:
            return False
        return (fold(v) if self.ignore_case else v).endswith(self.value)


@dataclass(frozen=True, slots=True)
class EqualsIgnoreCase:
    value: str  # folded
    kind: ClassVar[int] = 1

    def matches(self, v: Value) -> bool:
        return type(v) is str and fold(v) == self.value


@dataclass(frozen=True, slots=True)
class Wildcard:
    pattern: str
    segments: tuple[str, ...]
    kind: ClassVar[int] = 2

    def matches(self, v: Value) -> bool:
        return type(v) is str and wildcard_match(self.segments, v)


@dataclass(frozen=True, slots=True)
class Numeric:
    """A numeric range; ``=`` is ``lo == hi`` with both ends closed."""

    lo: float
    lo_open: bool
    hi: float
    hi_open: bool
    kind: ClassVar[int] = 1

    def matches(self, v: Value) -> bool:
        if type(v) is not float:
            return False
        if v < self.lo or (self.lo_open and v == self.lo):
            return False
        return not (v > self.hi or (self.hi_open and v == self.hi))


@dataclass(frozen=True, slots=True)
class Exists:
    """``{"exists": true}``: any leaf value, ``null`` included."""

    kind: ClassVar[int] = 3

    def matches(self, v: Value) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class AnythingBut:
    """``anything-but`` with strings or numbers: every value except those."""

    values: frozenset[Value]
    kind: ClassVar[int] = 3

    def matches(self, v: Value) -> bool:
        return v not in self.values


@dataclass(frozen=True, slots=True)
class AnythingButIgnoreCase:
    values: frozenset[str]  # folded
    kind: ClassVar[int] = 3

    def matches(self, v: Value) -> bool:
        return type(v) is not str or fold(v) not in self.values


@dataclass(frozen=True, slots=True)
class AnythingButPrefix:
    values: tuple[str, ...]
    kind: ClassVar[int] = 3

    def matches(self, v: Value) -> bool:
        return type(v) is not str or not v.startswith(self.values)


@dataclass(frozen=True, slots=True)
class AnythingButSuffix:
    values: tuple[str, ...]
    kind: ClassVar[int] = 3

    def matches(self, v: Value) -> bool:
        return type(v) is not str or not v.endswith(self.values)


@dataclass(frozen=True, slots=True)
class AnythingButWildcard:
    wildcards: tuple[Wildcard, ...]
    kind: ClassVar[int] = 3

    def matches(self, v: Value) -> bool:
        if type(v) is not str:
            return True
        return not any(wildcard_match(w.segments, v) for w in self.wildcards)


Matcher: TypeAlias = (
    Exact
    | IpExact
    | Cidr
    | Prefix
    | Suffix
    | EqualsIgnoreCase
    | Wildcard
    | Numeric
    | Exists
    | AnythingBut
    | AnythingButIgnoreCase
    | AnythingButPrefix
    | AnythingButSuffix
    | AnythingButWildcard
)


@dataclass(frozen=True, slots=True)
class Constraint:
    """What one field of one branch requires: any matcher matches, or (``absent``) no value."""

    matchers: frozenset[Matcher]
    absent: bool = False

    def matches(self, v: Value) -> bool:
        return any(m.matches(v) for m in self.matchers)

    @property
    def kind(self) -> int:
        """0 only exact values, 1 indexable, 2 scanned, 3 broad, 4 needs absence."""
        if self.absent:
            return 4
        return max((m.kind for m in self.matchers), default=0)


def constraint(matchers: Iterable[Matcher], absent: bool = False) -> Constraint:
    return Constraint(frozenset(matchers), absent)
