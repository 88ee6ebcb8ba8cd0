"""API keys shared by the AWS-compatible API (SigV4) and GraphQL (x-api-key / Bearer)."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "viewer")


@dataclass(frozen=True, slots=True)
class AccessKey:
    """One credential: the id is public (SigV4 access key id), the secret is not."""

    id: str
    secret: str
    role: Role

    @property
    def can_write(self) -> bool:
        return self.role == "admin"


def parse_access_keys(spec: str) -> tuple[AccessKey, ...]:
    """Parse ``id:secret:role,id:secret:role``; raise ``ValueError`` naming the bad entry."""
    keys: list[AccessKey] = []
    seen: set[str] = set()
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"access key {entry.split(':')[0]!r} must look like id:secret:role")
        key_id, secret, role = parts
        if role not in ROLES:
            raise ValueError(f"access key {key_id!r} has role {role!r}; expected admin or viewer")
        if key_id in seen:
            raise ValueError(f"access key {key_id!r} is listed twice")
        seen.add(key_id)
        keys.append(AccessKey(key_id, secret, role))
    return tuple(keys)


class KeyRing:
    """Look keys up by id (SigV4) or by secret (x-api-key), comparing secrets in constant time."""

    def __init__(self, keys: tuple[AccessKey, ...]) -> None:
        self._by_id = {key.id: key for key in keys}

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def first(self) -> AccessKey | None:
        return next(iter(self._by_id.values()), None)

    def by_id(self, key_id: str) -> AccessKey | None:
        return self._by_id.get(key_id)

    def by_secret(self, secret: str) -> AccessKey | None:
        found: AccessKey | None = None
        for key in self._by_id.values():
            if hmac.compare_digest(key.secret.encode(), secret.encode()):
                found = key
        return found


def load_or_create_local_key(data_dir: Path) -> AccessKey:
    """The embedded mode's admin key: made once into the data dir (mode 0600), then reused."""
    path = data_dir / "access-key"
    if path.exists():
        keys = parse_access_keys(path.read_text().strip())
        if keys:
            return keys[0]
    data_dir.mkdir(parents=True, exist_ok=True)
    key = AccessKey("SH" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30), "admin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{key.id}:{key.secret}:{key.role}\n")
    return key


def credential_from_headers(headers: Mapping[str, str]) -> str | None:
    """AppSync's ``x-api-key`` or ``Authorization: Bearer <secret>``."""
    api_key = headers.get("x-api-key")
    if api_key:
        return api_key
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
