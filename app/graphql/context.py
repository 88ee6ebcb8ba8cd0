"""Request context and permissions: who is calling, and may they write?

HTTP requests carry a session token (``POST /auth/session``) in ``Authorization: Bearer`` or
``x-api-key``; the front door (:mod:`app.frontdoor`) refuses anonymous ones with 401 before the
body is read, and this context checks again. WebSocket subscriptions put the same header in
``connection_init``'s payload (browsers cannot set headers on a WebSocket), checked in
``on_ws_connect``. An access key's secret is never accepted here: it must not travel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from fastapi import HTTPException
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from strawberry.fastapi import BaseContext
from strawberry.permission import BasePermission
from strawberry.types import Info

from app.auth import SCOPE_CALLER, AccessKey, KeyRing, credential_from_headers
from app.config import Settings
from app.db import get_database

T = TypeVar("T")
L = TypeVar("L")


class Context(BaseContext):
    """Settings, the key ring, the caller's key (``None`` until a WebSocket authenticates) and
    the per-request dataloaders (a fresh cache for every request: no stale reads across them).

    Each domain's GraphQL module owns its loader class and asks for it with
    ``context.loaders(BusLoaders)``: made on first use, one per class per context, so this
    module knows no domain and a request builds only the loaders it uses."""

    def __init__(self, settings: Settings, keyring: KeyRing, key: AccessKey | None) -> None:
        super().__init__()
        self.settings = settings
        self.keyring = keyring
        self.key = key
        self._loaders: dict[Callable[[Settings], object], object] = {}

    def loaders(self, kind: Callable[[Settings], L]) -> L:
        """This context's instance of the loader class ``kind`` (``kind(settings)`` the first
        time)."""
        found = self._loaders.get(kind)
        if found is None:
            found = self._loaders[kind] = kind(self.settings)
        return cast(L, found)


async def get_context(connection: HTTPConnection) -> Context:
    state = connection.app.state
    key = connection.scope.get(SCOPE_CALLER) or state.keyring.authenticate(
        credential_from_headers(connection.headers)
    )
    if key is None and connection.scope["type"] == "http":
        raise HTTPException(
            status_code=401,
            detail="Missing or invalid session token: log in with POST /auth/session and send "
            "Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Context(state.settings, state.keyring, key)


class IsAuthenticated(BasePermission):
    message = "Not authenticated: send a session token"

    def has_permission(self, source: Any, info: Info[Context, Any], **kwargs: Any) -> bool:
        return info.context.key is not None


class CanWrite(BasePermission):
    message = "This API key is read-only (role viewer)"

    def has_permission(self, source: Any, info: Info[Context, Any], **kwargs: Any) -> bool:
        key = info.context.key
        return key is not None and key.can_write


async def in_session(settings: Settings, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction on a worker thread (commits if it returns), so resolvers
    never block the event loop on the database."""

    def run() -> T:
        with get_database(settings.sqlalchemy_url).session() as session:
            return work(session)

    return await run_in_threadpool(run)
