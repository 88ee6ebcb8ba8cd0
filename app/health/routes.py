"""``/healthz`` (the process answers), ``/readyz`` (its dependencies answer), ``/metrics``.

``/readyz`` is public (load balancers, compose health checks) but tells an anonymous caller only
which components fail; what went wrong (exception text, which may name hosts and ports) and the
latencies are shown to an admin's session token only.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

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
    """This process's metrics, or, under ``smokehouse api --workers N`` (several processes
    behind one port), every worker's together (prometheus-client's multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
