"""``/healthz`` (the process answers), ``/readyz`` (its dependencies answer), ``/metrics``.

``/readyz`` is public (load balancers, compose health checks) but tells an anonymous caller only
which components fail; what went wrong (exception text, which may name hosts and ports) and the
latencies are shown to an admin's session token only.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.auth import credential_from_headers
from app.health.probes import check_all

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    components = await check_all(request.app.state.settings)
    failing = [c.name for c in components if not c.ok]
    caller = request.app.state.keyring.authenticate(credential_from_headers(request.headers))
    admin = caller is not None and caller.can_write
    body: dict[str, Any] = {
        "status": "unavailable" if failing else "ready",
        "failing": failing,
        "components": {c.name: asdict(c) if admin else {"ok": c.ok} for c in components},
    }
    return JSONResponse(body, status_code=503 if failing else 200)


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
