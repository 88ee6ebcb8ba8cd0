"""Access keys and the credentials derived from them.

An access key (``SMOKEHOUSE_ACCESS_KEYS``: ``id:secret:role``) signs AWS-compatible requests
(SigV4: the secret never travels). Everything else -- the dashboard, GraphQL, the work-queue
routes -- takes a short-lived *session token* that ``POST /auth/session`` (or ``smokehouse
session``) issues for a key; the secret crosses the wire once, at login, never again. Start-up
refuses weak and placeholder secrets (:func:`check_secret_strength`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

Role = Literal["admin", "viewer"]
#: Where the front door (:mod:`app.frontdoor`) leaves the authenticated :class:`AccessKey` in
#: the ASGI scope.
SCOPE_CALLER: Final = "smokehouse.caller"
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
    """Look keys up by id (SigV4) or check a session token issued for one of them."""

    def __init__(self, keys: tuple[AccessKey, ...]) -> None:
        self._by_id = {key.id: key for key in keys}

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def first(self) -> AccessKey | None:
        return next(iter(self._by_id.values()), None)

    def by_id(self, key_id: str) -> AccessKey | None:
        return self._by_id.get(key_id)

    def by_secret(self, secret: str) -> AccessKey | None:
        """The key whose secret this is (constant time): only the login exchange uses it."""
        found: AccessKey | None = None
        for key in self._by_id.values():
            if hmac.compare_digest(key.secret.encode(), secret.encode()):
                found = key
        return found

    def login(self, key_id: str | None, secret: str) -> AccessKey | None:
        """The key for a login: ``secret`` alone, or with its id (then both must match)."""
        key = self.by_secret(secret)
        if key is None or (key_id is not None and not hmac.compare_digest(key.id, key_id)):
            return None
        return key

    def session(self, token: str, *, now: float | None = None) -> AccessKey | None:
        """The key a valid, unexpired session token was issued for; ``None`` otherwise."""
        found = verify_session(token, self.by_id, now=now)
        return None if found is None else found.key

    def authenticate(self, credential: str | None, *, now: float | None = None) -> AccessKey | None:
        """The caller behind a bearer credential. Only session tokens are accepted: an access
        key's secret sent as a bearer credential is refused (it must not travel)."""
        if not credential or not is_session_token(credential):
            return None
        return self.session(credential, now=now)


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
    """The bearer credential (a session token): ``Authorization: Bearer <token>`` or AppSync's
    ``x-api-key`` header."""
    api_key = headers.get("x-api-key")
    if api_key:
        return api_key
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


# --- Secret strength ---------------------------------------------------------------------------

#: Shortest secret accepted at start (access-key secrets, webhook tokens, the secret key).
MIN_SECRET_LENGTH: Final = 24
#: Words that mark a value as a placeholder (``CHANGE-ME-…`` from .env.example, ``changeme``...).
_PLACEHOLDER = re.compile(
    r"change[-_ ]?me|changeit|replace[-_ ]?me|placeholder|your[-_]?(secret|token|key)|"
    r"example|xxxx|^(password|passw0rd|secret|s3cr3t|token|default|admin|test)\d*$",
    re.IGNORECASE,
)


def check_secret_strength(name: str, value: str, *, min_length: int = MIN_SECRET_LENGTH) -> None:
    """Refuse a weak or placeholder secret: ``ValueError`` whose message names ``name`` (what the
    secret is, e.g. "the secret of access key 'AK1'") and never shows the value.

    Meant for settings validators (pydantic turns the ``ValueError`` into the one-line
    ``ConfigError`` naming the variable)."""
    if _PLACEHOLDER.search(value):
        raise ValueError(f"{name} is a placeholder; generate one, e.g. `openssl rand -hex 24`")
    if len(value) < min_length:
        raise ValueError(
            f"{name} is {len(value)} characters; use at least {min_length} random ones, "
            "e.g. `openssl rand -hex 24`"
        )
    if len(set(value)) < 6:
        raise ValueError(f"{name} repeats too few characters to be random")


# --- Session tokens ----------------------------------------------------------------------------
#
# The dashboard, GraphQL and the work-queue routes never see an access key's secret after login:
# ``POST /auth/session`` (or ``smokehouse session``) exchanges it for a token
#
#     shs1.<base64url(JSON {"k": key id, "r": role, "i": issued, "e": expires})>.<base64url(mac)>
#
# where mac = HMAC-SHA256(session_key(key), "shs1." + payload). The MAC key is derived from the
# access key's own secret and id, so the token is stateless and dies when the key's secret
# rotates (or the key is removed, or its role changes: the role is checked against the key).

SESSION_PREFIX: Final = "shs1."
DEFAULT_SESSION_TTL: Final = 8 * 3600
_SESSION_LABEL: Final = b"smokehouse session v1\x00"


def session_key(key: AccessKey) -> bytes:
    """The MAC key for ``key``'s sessions (never the SigV4 secret itself)."""
    return hmac.new(key.secret.encode(), _SESSION_LABEL + key.id.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_session(
    key: AccessKey, *, ttl_seconds: int = DEFAULT_SESSION_TTL, now: float | None = None
) -> str:
    """A session token for ``key``, valid ``ttl_seconds`` from ``now`` (epoch seconds)."""
    issued = int(time.time() if now is None else now)
    claims = {"k": key.id, "r": key.role, "i": issued, "e": issued + int(ttl_seconds)}
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(session_key(key), (SESSION_PREFIX + payload).encode(), hashlib.sha256)
    return f"{SESSION_PREFIX}{payload}.{_b64(mac.digest())}"


def is_session_token(credential: str) -> bool:
    return credential.startswith(SESSION_PREFIX)


@dataclass(frozen=True, slots=True)
class Session:
    key: AccessKey
    expires: int


#: Longest token looked at (a real one is ~150 characters).
_MAX_TOKEN: Final = 1024


def verify_session(
    token: str, lookup: Callable[[str], AccessKey | None], *, now: float | None = None
) -> Session | None:
    """Check a token's MAC (constant time), expiry and role against the key it names."""
    if len(token) > _MAX_TOKEN or not token.startswith(SESSION_PREFIX):
        return None
    payload, dot, mac = token[len(SESSION_PREFIX) :].partition(".")
    if not dot or not payload or not mac:
        return None
    try:
        claims = json.loads(_unb64(payload))
        given = _unb64(mac)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    key_id, role, expires = claims.get("k"), claims.get("r"), claims.get("e")
    if not isinstance(key_id, str) or not isinstance(expires, int):
        return None
    key = lookup(key_id)
    if key is None:
        return None
    expected = hmac.new(session_key(key), (SESSION_PREFIX + payload).encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.digest(), given):
        return None
    if role != key.role or expires <= (time.time() if now is None else now):
        return None
    return Session(key=key, expires=expires)
