"""API keys: parsing, lookup by id and by secret, the generated local key, header forms."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app.auth import KeyRing, credential_from_headers, load_or_create_local_key, parse_access_keys


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
