"""API keys: parsing, lookup by id and by secret, the generated local key, header forms."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app.auth import (
    AccessKey,
    KeyRing,
    check_secret_strength,
    credential_from_headers,
    issue_session,
    load_or_create_local_key,
    parse_access_keys,
    verify_session,
)


def test_parse_keys_with_roles() -> None:
    keys = parse_access_keys(" AK1:s1:admin , AK2:s2:viewer ,")
    assert [(k.id, k.role, k.can_write) for k in keys] == [
        ("AK1", "admin", True),
        ("AK2", "viewer", False),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("AK1:s1", "must look like id:secret:role"),
        ("AK1::admin", "must look like id:secret:role"),
        ("AK1:s1:owner", "expected admin or viewer"),
        ("AK1:s1:admin,AK1:s2:viewer", "listed twice"),
    ],
)
def test_bad_key_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_access_keys(spec)


def test_keyring_finds_by_id_and_by_secret() -> None:
    ring = KeyRing(parse_access_keys("AK1:s1:admin,AK2:s2:viewer"))
    assert ring.by_id("AK2") is not None
    assert ring.by_id("nope") is None
    found = ring.by_secret("s2")
    assert found is not None
    assert found.id == "AK2"
    assert ring.by_secret("s3") is None
    assert not KeyRing(())


def test_local_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    first = load_or_create_local_key(tmp_path / "data")
    again = load_or_create_local_key(tmp_path / "data")
    assert first == again
    assert first.role == "admin"
    assert len(first.secret) >= 32
    mode = stat.S_IMODE((tmp_path / "data" / "access-key").stat().st_mode)
    assert mode == 0o600


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-api-key": "k"}, "k"),
        ({"authorization": "Bearer k"}, "k"),
        ({"authorization": "bearer  k "}, "k"),
        ({"authorization": "Basic k"}, None),
        ({"authorization": "Bearer "}, None),
        ({}, None),
    ],
)
def test_credential_from_headers(headers: dict[str, str], expected: str | None) -> None:
    assert credential_from_headers(headers) == expected


# --- session tokens and secret strength (pure) ---------------------------------------------------


_KEY = AccessKey("AKS", "session-unit-6Tz9Qw3Lm8Xc2Vb5", "viewer")


def test_a_session_round_trips_until_it_expires() -> None:
    ring = KeyRing((_KEY,))
    token = issue_session(_KEY, ttl_seconds=60, now=1000)
    assert ring.session(token, now=1059) == _KEY
    assert ring.session(token, now=1060) is None
    assert verify_session(token, ring.by_id, now=1000) is not None
    assert _KEY.secret not in token
    assert ring.authenticate(_KEY.secret) is None  # a raw secret is no bearer credential


def test_a_session_dies_with_its_key() -> None:
    token = issue_session(_KEY)
    rotated = AccessKey(_KEY.id, "session-unit-rotated-1Hq7Xz4Wm", "viewer")
    promoted = AccessKey(_KEY.id, _KEY.secret, "admin")
    assert KeyRing((rotated,)).authenticate(token) is None
    assert KeyRing((promoted,)).authenticate(token) is None
    assert KeyRing(()).authenticate(token) is None


@pytest.mark.parametrize(
    "value", ["short", "CHANGE-ME-long-random-secret", "changeme-please-0123456789", "a" * 30]
)
def test_weak_secrets_are_refused_without_echoing_them(value: str) -> None:
    with pytest.raises(ValueError, match="the thing") as refused:
        check_secret_strength("the thing", value)
    assert value not in str(refused.value)


def test_a_random_secret_passes() -> None:
    check_secret_strength("the thing", "Zx8-qP2rT7vL0mN4wK9sB3yH")
