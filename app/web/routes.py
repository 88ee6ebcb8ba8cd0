"""Serve the dashboard: ``GET /`` is its page, ``/ui/…`` its static files, ``/sw.js`` its service
worker (scope ``/``; it caches the app shell only) and ``/favicon.ico`` its icon.

``POST /`` stays the AWS JSON API (a different method on the same path), and nothing here
claims ``/graphql``, ``/healthz``, ``/readyz``, ``/metrics``, ``/webhooks/…`` or ``/queues/…``.
The page is sent with ``no-cache`` (revalidated every load, so an upgrade shows at once); the
assets carry ETags from :class:`StaticFiles`, so a phone on the LAN revalidates cheaply.
``POST /auth/session`` is the login: it exchanges an access key's secret for a session token.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from app.auth import SCOPE_CALLER, credential_from_headers, issue_session
from app.config import Settings

STATIC: Final = Path(__file__).resolve().parent / "static"
PREFIX: Final = "/ui"

SERVICE_WORKER: Final = Path(__file__).resolve().parent / "service_worker.js"
#: What the service worker caches: the page and every file it loads, not data.
SHELL_SUFFIXES: Final = (".css", ".js", ".png", ".svg", ".webmanifest")

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    """Browsers ask for it whatever the page says (a 404 is a red line in the console)."""
    return FileResponse(STATIC / "favicon-32.png", media_type="image/png")


@cache
def service_worker_source() -> bytes:
    """``service_worker.js`` with its shell list and a cache name that changes with any file."""
    files = sorted(p for p in STATIC.rglob("*") if p.is_file() and p.suffix in SHELL_SUFFIXES)
    digest = hashlib.sha256()
    for path in [STATIC / "index.html", *files]:
        digest.update(path.relative_to(STATIC).as_posix().encode() + b"\0" + path.read_bytes())
    shell = ["/", *(f"{PREFIX}/{p.relative_to(STATIC).as_posix()}" for p in files)]
    source = SERVICE_WORKER.read_text()
    source = source.replace("__CACHE__", f"smokehouse-{digest.hexdigest()[:16]}")
    return source.replace("__SHELL__", json.dumps(shell)).encode()


@router.get("/sw.js")
async def service_worker() -> Response:
    return Response(
        service_worker_source(),
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"},
    )


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=512, description="The access key's secret.")
    id: str | None = Field(default=None, max_length=128, description="Its id (optional).")


@router.post("/auth/session")
async def login(body: Login, request: Request) -> dict[str, object]:
    """Exchange an access key's secret for a session token (the only request that carries the
    secret; everything after sends the token). The token lives ``SMOKEHOUSE_SESSION_TTL_SECONDS``
    and dies at once when the key's secret or role changes."""
    settings: Settings = request.app.state.settings
    key = request.app.state.keyring.login(body.id, body.key)
    if key is None:
        raise HTTPException(status_code=401, detail="Unknown access key")
    token = issue_session(key, ttl_seconds=settings.session_ttl_seconds)
    return {
        "token": token,
        "tokenType": "Bearer",
        "expiresIn": settings.session_ttl_seconds,
        "id": key.id,
        "role": key.role,
        "canWrite": key.can_write,
    }


@router.get(f"{PREFIX}/session")
async def session(request: Request) -> dict[str, object]:
    """Who this session is: the dashboard hides mutations for viewers (the GraphQL mutations
    refuse them anyway)."""
    key = request.scope.get(SCOPE_CALLER) or request.app.state.keyring.authenticate(
        credential_from_headers(request.headers)
    )
    if key is None:
        raise HTTPException(status_code=401, detail="Missing or invalid session token")
    return {"id": key.id, "role": key.role, "canWrite": key.can_write}


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC, follow_symlink=False)


def cors_origins(settings: Settings) -> list[str]:
    """``SMOKEHOUSE_CORS_ORIGINS``: comma-separated origins, ``*`` for any; unset: none."""
    return [o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()]


def install(api: FastAPI, settings: Settings) -> None:
    """Mount the dashboard on ``api``. Browsers on other origins may call the API only when
    ``SMOKEHOUSE_CORS_ORIGINS`` lists them (session tokens travel in headers, never cookies)."""
    api.include_router(router)
    api.mount(PREFIX, static_files(), name="ui")
    origins = cors_origins(settings)
    if origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["x-api-key", "authorization", "content-type"],
            max_age=600,
        )
