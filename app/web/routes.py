"""Serve the dashboard: ``GET /`` is its page, ``/ui/…`` its static files.

``POST /`` stays the AWS JSON API (a different method on the same path), and nothing here
claims ``/graphql``, ``/healthz``, ``/readyz``, ``/metrics``, ``/webhooks/…`` or ``/queues/…``.
The page is sent with ``no-cache`` (revalidated every load, so an upgrade shows at once); the
assets carry ETags from :class:`StaticFiles`, so a phone on the LAN revalidates cheaply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.auth import credential_from_headers
from app.config import Settings

STATIC: Final = Path(__file__).resolve().parent / "static"
PREFIX: Final = "/ui"

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get(f"{PREFIX}/session")
async def session(request: Request) -> dict[str, object]:
    """Who this key is: the login form checks a key here, and hides mutations for viewers
    (the GraphQL mutations refuse them anyway)."""
    secret = credential_from_headers(request.headers)
    key = request.app.state.keyring.by_secret(secret) if secret else None
    if key is None:
        raise HTTPException(status_code=401, detail="Missing or invalid API key")
    return {"id": key.id, "role": key.role, "canWrite": key.can_write}


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC, follow_symlink=False)


def cors_origins(settings: Settings) -> list[str]:
    """``SMOKEHOUSE_CORS_ORIGINS``: comma-separated origins, ``*`` for any; unset: none."""
    return [o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()]


def install(api: FastAPI, settings: Settings) -> None:
    """Mount the dashboard on ``api``. Browsers on other origins may call the API only when
    ``SMOKEHOUSE_CORS_ORIGINS`` lists them (keys travel in headers, never cookies)."""
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
