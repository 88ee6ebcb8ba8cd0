"""``POST /webhooks/gitlab``: GitLab's webhook (API Gateway's place in the original design).

The token is checked before the body is read; the body is read up to the size limit (413
beyond). 200 with the bus event id, or ``{"duplicate": true}`` for a delivery already taken;
401 for a wrong or missing ``X-Gitlab-Token``, 403 with a reason for a payload about a project
outside the token's scope (GitLab shows it in the hook's recent events), 400 with a reason for a
malformed payload. Nothing is stored for a refused delivery.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.runners.batcher import batcher_for
from app.runners.settings import webhook_grants
from app.runners.webhook import WebhookRejected, match_token, prepare

router = APIRouter(tags=["runners"])


def _refuse(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"detail": reason}, status_code=status)


async def _body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it grows past ``limit`` bytes (without buffering the rest)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/webhooks/gitlab")
async def gitlab_webhook(request: Request) -> JSONResponse:
    """Accept one GitLab webhook delivery: check, dedupe, put on the bus, answer."""
    settings = request.app.state.settings
    grants = webhook_grants(settings)
    if not grants:
        return _refuse(
            503,
            "no webhook token is configured (SMOKEHOUSE_GITLAB_WEBHOOK_TOKENS or "
            "SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN)",
        )
    grant = match_token(request.headers.get("x-gitlab-token"), grants)
    if grant is None:
        return _refuse(401, "missing or wrong X-Gitlab-Token")
    limit = settings.runners.webhook_max_bytes
    body = await _body(request, limit)
    if body is None:
        return _refuse(413, f"the payload is over {limit} bytes")
    try:
        prepared = prepare(body, request.headers, grant.scope)
    except WebhookRejected as exc:
        return _refuse(exc.status, exc.reason)
    try:
        accepted = await batcher_for(request.app.state, settings).submit(prepared)
    except Exception as exc:  # database down: GitLab retries a 5xx
        return _refuse(503, f"cannot store the webhook now: {type(exc).__name__}")
    if isinstance(accepted, WebhookRejected):
        return _refuse(accepted.status, accepted.reason)
    if accepted.duplicate:
        return JSONResponse({"duplicate": True})
    return JSONResponse({"eventId": accepted.event_id})
