"""Access keys the tests configure, and session tokens for them.

Secrets are long and random-looking: start-up refuses short and placeholder ones
(:func:`app.auth.check_secret_strength`). GraphQL, the dashboard and the work-queue routes take
session tokens, never a key's secret: :func:`auth` mints one offline (tokens are stateless, so
one minted here is valid for an app configured with the same key) -- ``POST /auth/session`` is
tested on its own.
"""

from __future__ import annotations

from app.auth import AccessKey, issue_session

ADMIN_SECRET = "admin-7Qw3vN9xK2pL5tR8yB4m"
VIEWER_SECRET = "viewer-4Hj8sD2fG6kZ9cV3nX7q"
ADMIN = AccessKey("AKADMIN", ADMIN_SECRET, "admin")
VIEWER = AccessKey("AKVIEW", VIEWER_SECRET, "viewer")
#: ``SMOKEHOUSE_ACCESS_KEYS`` with an admin and a viewer key.
KEYS = f"{ADMIN.id}:{ADMIN_SECRET}:admin,{VIEWER.id}:{VIEWER_SECRET}:viewer"

_KNOWN = {ADMIN_SECRET: ADMIN, VIEWER_SECRET: VIEWER}


def token(key: AccessKey | str = ADMIN) -> str:
    """A session token for ``key`` (or for the known key with that secret; any other string is
    returned as is, so a test can send a wrong credential the same way)."""
    if isinstance(key, str):
        found = _KNOWN.get(key)
        if found is None:
            return key
        key = found
    return issue_session(key)


def auth(key: AccessKey | str = ADMIN) -> dict[str, str]:
    """``Authorization: Bearer <session token>`` for ``key``."""
    return {"Authorization": f"Bearer {token(key)}"}
