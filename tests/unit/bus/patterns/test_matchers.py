"""matchers.py: value normalisation, IP and wildcard helpers, every matcher."""

from __future__ import annotations

import pickle

import pytest

from app.bus.patterns.matchers import (
    FALSE,
    NAN,
    TRUE,
    AnythingBut,
    AnythingButIgnoreCase,
    AnythingButPrefix,
    AnythingButSuffix,
    AnythingButWildcard,
    BigNum,
    Cidr,
    Constraint,
    EqualsIgnoreCase,
    Exact,
    Exists,
    IpError,
    IpExact,
    Numeric,
    Prefix,
    Suffix,
    Wildcard,
    WildcardError,
    constraint,
    event_ip,
    ip_bytes,
    norm,
    wildcard_match,
    wildcard_segments,
)

INF = float("inf")


def test_norm() -> None:
    assert norm("x") == "x"
    assert norm(3) == 3.0
    assert type(norm(3)) is float
    assert norm(2.5) == 2.5
    assert norm(True) is TRUE
    assert norm(False) is FALSE
    assert norm(None) is None
    assert norm(float("nan")) is NAN
    assert norm(10**400) == BigNum(10**400)
    with pytest.raises(TypeError):
        norm([1])


def test_literals_pickle_to_the_same_object() -> None:
    assert pickle.loads(pickle.dumps(TRUE)) is TRUE
    assert pickle.loads(pickle.dumps(NAN)) is NAN


def test_ip_bytes() -> None:
    assert ip_bytes("10.0.0.1") == (32, 0x0A000001)
    assert ip_bytes("0.0.0.0") == (32, 0)
    assert ip_bytes("::1") == (128, 1)
    assert ip_bytes("0:0:0:0:0:0:0:1") == (128, 1)
    assert ip_bytes("::ffff:a00:1") == (32, 0x0A000001)
    with pytest.raises(IpError, match="Invalid IP address"):
        ip_bytes("10.0.0.256")
    with pytest.raises(IpError, match="Invalid IP address"):
        ip_bytes("10.0.0.01")
    with pytest.raises(IpError, match=r"Nonstandard IP address: host\.example"):
        ip_bytes("host.example")
    with pytest.raises(IpError, match="Nonstandard"):
        ip_bytes("::ffff:1.2.3.4")  # event-ruler's IPv6 pattern has no dots
    assert event_ip("10.0.0.1") == (32, 0x0A000001)
    assert event_ip("not an ip") is None
    assert event_ip("") is None
    assert event_ip("\uff11.\uff12.\uff13.\uff14") is None  # full-width digits: not an IP


def test_wildcard_segments() -> None:
    assert wildcard_segments("abc") == ("abc",)
    assert wildcard_segments("*") == ("", "")
    assert wildcard_segments("a*b*") == ("a", "b", "")
    assert wildcard_segments("a\\*b") == ("a*b",)
    assert wildcard_segments("a\\\\*") == ("a\\", "")
    with pytest.raises(WildcardError, match="Consecutive wildcard characters at pos 2"):
        wildcard_segments("a**")
    with pytest.raises(WildcardError, match="Invalid escape character at pos 2"):
        wildcard_segments("a\\b")
    with pytest.raises(WildcardError, match="Invalid escape character at pos 2"):
        wildcard_segments("a\\")
    with pytest.raises(WildcardError, match=r"at pos 3"):
        wildcard_segments("é**")  # positions are UTF-8 bytes after the opening quote


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*", "", True),
        ("*", "anything", True),
        ("", "", True),
        ("", "x", False),
        ("a*", "a", True),
        ("*a", "ba", True),
        ("a*b", "ab", True),
        ("a*b", "a", False),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "acb", False),
        ("*/lib/*", "/usr/lib/x", True),
        ("ab*ab", "ab", False),
        ("ab*ab", "abab", True),
        ("x*x*x", "xx", False),
    ],
)
def test_wildcard_match(pattern: str, value: str, expected: bool) -> None:
    assert wildcard_match(wildcard_segments(pattern), value) is expected


def test_exact_is_type_strict() -> None:
    assert Exact("300").matches("300")
    assert not Exact("300").matches(300.0)
    assert Exact(300.0).matches(300.0)
    assert not Exact(1.0).matches(TRUE)
    assert Exact(TRUE).matches(TRUE)
    assert Exact(None).matches(None)
    assert not Exact(None).matches("null")
    assert Exact(BigNum(10**400)).matches(BigNum(10**400))


def test_string_matchers() -> None:
    assert Prefix("ab").matches("abc")
    assert not Prefix("ab").matches("xab")
    assert Prefix("ab", ignore_case=True).matches("ABc")
    assert not Prefix("1").matches(12.0)
    assert Suffix(".png").matches("a.png")
    assert not Suffix(".png").matches("a.PNG")
    assert Suffix(".png", ignore_case=True).matches("a.PNG")
    assert EqualsIgnoreCase("alice").matches("ALICE")
    assert not EqualsIgnoreCase("a").matches(None)
    w = Wildcard("a*", ("a", ""))
    assert w.matches("abc")
    assert not w.matches(1.0)


def test_numeric() -> None:
    between = Numeric(0.0, True, 5.0, False)
    assert between.matches(5.0)
    assert between.matches(0.5)
    assert not between.matches(0.0)
    assert not between.matches(5.5)
    assert not between.matches("3")
    assert Numeric(-INF, False, 10.0, True).matches(-1e300)
    assert Numeric(3.0, False, 3.0, False).matches(3.0)
    assert not Numeric(-INF, False, INF, False).matches(NAN)


def test_ip_matchers() -> None:
    c = Cidr("10.0.0.0/24", 32, 0x0A000000, 0x0A0000FF)
    assert c.matches("10.0.0.255")
    assert not c.matches("10.0.1.0")
    assert not c.matches("::ffff:a01:1")
    assert c.matches("::ffff:a00:1")
    assert not c.matches(167772161.0)
    ip = IpExact("::1", 128, 1)
    assert ip.matches("::1")
    assert ip.matches("0::1")
    assert not ip.matches("::2")


def test_anything_but_family() -> None:
    ab = AnythingBut(frozenset({"a", "b"}))
    assert not ab.matches("a")
    assert ab.matches("c")
    assert ab.matches(None)
    assert ab.matches(1.0)
    abn = AnythingBut(frozenset({100.0}))
    assert not abn.matches(100.0)
    assert abn.matches("100")
    assert abn.matches(TRUE)
    abi = AnythingButIgnoreCase(frozenset({"init"}))
    assert not abi.matches("INIT")
    assert abi.matches("x")
    assert abi.matches(3.0)
    abp = AnythingButPrefix(("us-",))
    assert not abp.matches("us-east-1")
    assert abp.matches("eu-west-1")
    assert abp.matches(None)
    abs_ = AnythingButSuffix((".png", ".jpg"))
    assert not abs_.matches("a.jpg")
    assert abs_.matches("a.gif")
    abw = AnythingButWildcard((Wildcard("*/lib/*", ("", "/lib/", "")),))
    assert not abw.matches("/usr/lib/a")
    assert abw.matches("/usr/bin/a")
    assert abw.matches(1.0)


def test_exists_matches_every_value() -> None:
    assert all(Exists().matches(v) for v in ("", 0.0, None, TRUE))


def test_constraint() -> None:
    c = constraint([Exact("a"), Prefix("b")])
    assert c.matches("a")
    assert c.matches("bc")
    assert not c.matches("c")
    assert c.kind == 1
    assert constraint([Exact("a")]).kind == 0
    assert constraint([AnythingBut(frozenset({"a"}))]).kind == 3
    absent = Constraint(frozenset(), absent=True)
    assert absent.kind == 4
    assert not absent.matches("a")
    assert constraint([Exact("a"), Exact("a")]) == constraint([Exact("a")])
