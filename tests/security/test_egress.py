"""The egress policy alone: address classification (hypothesis), the order of the checks, and
the pinned client against real local servers (rebinding, deadline, size cap)."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.config import ConfigError, load_settings
from app.egress import (
    EgressPolicy,
    EgressRefused,
    EgressTimeout,
    EgressTooLarge,
    EgressUnresolved,
    policy_for,
    request,
)
from app.egress.addresses import canonical, refusal

ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


def v4_in(network: str) -> st.SearchStrategy[ipaddress.IPv4Address]:
    net = ipaddress.IPv4Network(network)
    return st.integers(int(net.network_address), int(net.broadcast_address)).map(
        ipaddress.IPv4Address
    )


def v6_in(network: str) -> st.SearchStrategy[ipaddress.IPv6Address]:
    net = ipaddress.IPv6Network(network)
    return st.integers(int(net.network_address), int(net.broadcast_address)).map(
        ipaddress.IPv6Address
    )


# --- classification ------------------------------------------------------------------------


@given(v4_in("127.0.0.0/8"))
def test_all_of_127_8_is_loopback(address: ipaddress.IPv4Address) -> None:
    assert refusal(address) == "loopback"


@given(st.one_of(v4_in("10.0.0.0/8"), v4_in("172.16.0.0/12"), v4_in("192.168.0.0/16")))
def test_rfc1918_is_private(address: ipaddress.IPv4Address) -> None:
    assert refusal(address) == "private"


@given(v4_in("100.64.0.0/10"))
def test_cgnat_is_refused(address: ipaddress.IPv4Address) -> None:
    assert refusal(address) in {"shared address space (CGNAT)", "cloud metadata"}


@given(v4_in("169.254.0.0/16"))
def test_link_local_is_refused(address: ipaddress.IPv4Address) -> None:
    assert refusal(address) in {"link-local", "cloud metadata"}


@given(v6_in("fc00::/7"))
def test_unique_local_is_refused(address: ipaddress.IPv6Address) -> None:
    assert refusal(address) in {"unique-local", "cloud metadata"}


@given(v6_in("fe80::/10"))
def test_ipv6_link_local_is_refused(address: ipaddress.IPv6Address) -> None:
    assert refusal(address) == "link-local"


@given(st.one_of(v4_in("224.0.0.0/4"), v6_in("ff00::/8")))
def test_multicast_is_refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert refusal(address) == "multicast"


@given(ipv4)
def test_ipv6_forms_of_an_ipv4_address_are_judged_as_that_address(
    address: ipaddress.IPv4Address,
) -> None:
    packed = address.packed
    mapped = ipaddress.IPv6Address(bytes(10) + b"\xff\xff" + packed)
    nat64 = ipaddress.IPv6Address(bytes.fromhex("0064ff9b") + bytes(8) + packed)
    six_to_four = ipaddress.IPv6Address(b"\x20\x02" + packed + bytes(10))
    for wrapped in (mapped, nat64, six_to_four):
        assert canonical(wrapped) == address
        assert refusal(wrapped) == refusal(address)


@given(st.one_of(ipv4, ipv6))
def test_only_globally_reachable_addresses_pass(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    inner = canonical(address)
    if refusal(address) is None:
        assert inner.is_global
    if not inner.is_global:
        assert refusal(address) is not None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("100.64.0.1", "shared address space (CGNAT)"),
        ("fd12:3456::1", "unique-local"),
        ("255.255.255.255", "reserved"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_named_addresses(text: str, reason: str | None) -> None:
    assert refusal(ipaddress.ip_address(text)) == reason


# --- the policy ----------------------------------------------------------------------------


def fixed(*answers: str) -> Any:
    return lambda host, port: list(answers)


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    policy = EgressPolicy(resolver=fixed("93.184.216.34", "10.0.0.7"))
    with pytest.raises(EgressRefused) as caught:
        policy.check("mixed.example", 443)
    assert caught.value.reason == "private"
    assert "resolves to 10.0.0.7" in str(caught.value)
    assert EgressPolicy(resolver=fixed("93.184.216.34")).check("ok.example", 443)


def test_localhost_resolves_to_loopback_and_is_refused() -> None:
    with pytest.raises(EgressRefused) as caught:
        EgressPolicy().check("localhost", 80)
    assert caught.value.reason == "loopback"


def test_an_unresolvable_name_is_an_error_not_a_pass() -> None:
    with pytest.raises(EgressUnresolved):
        EgressPolicy().check("no-such-host.invalid", 80)


def test_allow_list_cidrs_and_names_override_the_ranges() -> None:
    settings = load_settings(egress={"allow": "10.0.0.0/8, nas.lan, *.home.arpa, fd00::/8"})
    policy = policy_for(settings)
    assert policy.check("10.1.2.3", 80)
    assert policy.check("fd00::5", 80)
    for name in ("nas.lan", "printer.home.arpa"):
        named = EgressPolicy(allow_hosts=policy.allow_hosts, resolver=fixed("192.168.1.20")).check(
            name, 80
        )
        assert named == [ipaddress.ip_address("192.168.1.20")]
    with pytest.raises(EgressRefused):
        policy.check("192.168.1.20", 80)  # not on the list
    with pytest.raises(EgressRefused):
        EgressPolicy(allow_hosts=policy.allow_hosts, resolver=fixed("127.0.0.1")).check(
            "other.lan", 80
        )


def test_own_ports_are_refused_even_when_allow_listed() -> None:
    settings = load_settings(
        http_port=8123,
        embedded_mqtt_port=18830,
        database_url="postgresql://u:p@127.0.0.1:5432/db",
        redis_url="redis://127.0.0.1:6390/0",
        egress={"allow": "127.0.0.0/8,::1"},
    )
    policy = policy_for(settings)
    for host, port in [
        ("127.0.0.1", 8123),
        ("::1", 8123),
        ("0.0.0.0", 8123),
        ("::ffff:127.0.0.1", 18830),
        ("127.0.0.1", 5432),
        ("127.0.0.1", 6390),
    ]:
        with pytest.raises(EgressRefused) as caught:
            policy.check(host, port)
        assert "own" in caught.value.reason
    assert policy.check("127.0.0.1", 8124)  # allow-listed, not ours


def test_bad_settings_name_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(egress={"allow": "not a host!"})
    assert str(caught.value).startswith("SMOKEHOUSE_EGRESS_ALLOW:")
    with pytest.raises(ConfigError) as caught:
        load_settings(egress={"aws_sdk_allow": "describeImages"})
    assert str(caught.value).startswith("SMOKEHOUSE_EGRESS_AWS_SDK_ALLOW:")


def test_the_environment_sets_the_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOKEHOUSE_EGRESS_ALLOW", "192.168.0.0/16")
    monkeypatch.setenv("SMOKEHOUSE_EGRESS_TIMEOUT_SECONDS", "7")
    monkeypatch.setenv("SMOKEHOUSE_EGRESS_MAX_RESPONSE_BYTES", "65536")
    egress = load_settings().egress
    assert (egress.allow, egress.timeout_seconds, egress.max_response_bytes) == (
        "192.168.0.0/16",
        7.0,
        65536,
    )


# --- the client against real servers -------------------------------------------------------


class Server:
    """A local HTTP server on ``host`` that counts its requests."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                if self.path == "/drip-headers":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    for _ in range(60):
                        self.wfile.write(b"X-Drip: 1\r\n")
                        self.wfile.flush()
                        time.sleep(0.1)
                    return
                body = b"x" * (2 * 1024 * 1024) if self.path == "/big" else b"fine"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    allowed, victim = Server("127.0.0.1"), Server("127.0.0.2")
    yield allowed, victim
    allowed.close()
    victim.close()


def test_the_client_connects_to_the_address_it_checked(servers: tuple[Server, Server]) -> None:
    """DNS rebinding: the first answer is allowed, every later one points at a refused
    address; the call must use the first (one resolution, pinned connection)."""
    allowed, victim = servers
    answers = iter([["127.0.0.1"]] + [["127.0.0.2"]] * 10)
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    policy = EgressPolicy(
        allow_networks=(ipaddress.ip_network("127.0.0.1/32"),), resolver=rebinding
    )
    # victim and allowed listen on different ports: make the name's port the allowed one
    response = request(policy, "GET", f"http://rebind.test:{allowed.port}/pinned")
    assert response.status_code == 200
    assert response.text == "fine"
    assert calls == ["rebind.test"]
    assert allowed.hits == ["/pinned"]
    assert victim.hits == []


def test_header_drip_is_cut_at_the_total_deadline(servers: tuple[Server, Server]) -> None:
    allowed, _ = servers
    policy = EgressPolicy(
        allow_networks=(ipaddress.ip_network("127.0.0.1/32"),), timeout_seconds=1.0
    )
    started = time.monotonic()
    with pytest.raises(EgressTimeout):
        request(policy, "GET", f"http://127.0.0.1:{allowed.port}/drip-headers")
    assert time.monotonic() - started < 1.8


def test_the_body_is_cut_at_the_cap(servers: tuple[Server, Server]) -> None:
    allowed, _ = servers
    policy = EgressPolicy(
        allow_networks=(ipaddress.ip_network("127.0.0.1/32"),), max_response_bytes=64 * 1024
    )
    with pytest.raises(EgressTooLarge) as caught:
        request(policy, "GET", f"http://127.0.0.1:{allowed.port}/big")
    assert "larger than 65536 bytes" in str(caught.value)


def test_unix_sockets_and_proxies_are_not_a_way_around(
    servers: tuple[Server, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, victim = servers
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.2:{victim.port}")
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.2:{victim.port}")
    with pytest.raises(EgressRefused):
        request(EgressPolicy(), "GET", f"http://127.0.0.1:{victim.port}/")
    assert victim.hits == []


def test_slow_dns_is_cut_at_the_total_deadline() -> None:
    def slow(host: str, port: int) -> list[str]:
        time.sleep(3)
        return ["93.184.216.34"]

    started = time.monotonic()
    with pytest.raises(EgressTimeout):
        request(EgressPolicy(resolver=slow, timeout_seconds=0.5), "GET", "http://slow.test/")
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1"])
def test_odd_spellings_of_loopback_are_judged_after_resolution(host: str) -> None:
    with pytest.raises(EgressRefused) as caught:
        EgressPolicy().check(host, 80)
    assert caught.value.reason == "loopback"
