"""``POST /queues/{queue}/messages`` and ``GET /queues/{queue}/messages/{id}``: the HTTP producer.

Authenticated like GraphQL (a session token in ``Authorization: Bearer`` or ``x-api-key``; the
front door checks it before the body is read and caps the body at 256 KiB); sending needs an admin
key. The message is committed, then enqueued (:func:`app.queues.messages.send_and_enqueue`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from app.auth import SCOPE_CALLER, AccessKey, credential_from_headers
from app.db import get_database
from app.queues import messages
from app.queues.models import QueueMessage

router = APIRouter(tags=["queues"])


def caller(request: Request) -> AccessKey:
    """The caller's key; 401 without a valid one."""
    key = request.scope.get(SCOPE_CALLER) or request.app.state.keyring.authenticate(
        credential_from_headers(request.headers)
    )
    if key is None:
        raise HTTPException(
            status_code=401,
            detail="Missing or invalid session token: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key  # type: ignore[no-any-return]


Caller = Annotated[AccessKey, Depends(caller)]


class SendMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    handler: str | None = None
    state_machine: str | None = Field(default=None, alias="stateMachine")
    payload: Any = None
    mode: Literal["sync", "async"] = "sync"


class MessageView(BaseModel):
    id: str
    queue: str
    handler: str | None
    stateMachine: str | None  # noqa: N815 (the JSON field name)
    mode: str
    status: str
    payload: Any
    result: Any
    error: str | None
    cause: str | None
    executionArn: str | None  # noqa: N815
    attempts: int
    createdAt: datetime  # noqa: N815
    startedAt: datetime | None  # noqa: N815
    finishedAt: datetime | None  # noqa: N815

    @classmethod
    def of(cls, row: QueueMessage) -> MessageView:
        return cls(
            id=row.id,
            queue=row.queue,
            handler=row.handler,
            stateMachine=row.state_machine,
            mode=row.mode,
            status=row.status,
            payload=row.payload,
            result=row.result,
            error=row.error,
            cause=row.cause,
            executionArn=row.execution_arn,
            attempts=row.attempts,
            createdAt=row.created_at,
            startedAt=row.started_at,
            finishedAt=row.finished_at,
        )


def _read(request: Request, queue: str, message_id: str) -> MessageView | None:
    with get_database(request.app.state.settings.sqlalchemy_url).session() as session:
        row = session.get(QueueMessage, message_id)
        return None if row is None or row.queue != queue else MessageView.of(row)


@router.post("/queues/{queue}/messages", status_code=202)
async def post_message(queue: str, body: SendMessage, request: Request, key: Caller) -> MessageView:
    """Store one message and enqueue it; 202 with the stored message."""
    if not key.can_write:
        raise HTTPException(status_code=403, detail="This API key is read-only (role viewer)")
    settings = request.app.state.settings
    try:
        [message_id] = await run_in_threadpool(
            lambda: messages.send_and_enqueue(
                settings,
                queue,
                handler=body.handler,
                state_machine=body.state_machine,
                payload=body.payload,
                mode=body.mode,
            )
        )
    except messages.MessageError as exc:
        raise HTTPException(status_code=exc.status, detail=exc.reason) from None
    found = await run_in_threadpool(_read, request, queue, message_id)
    assert found is not None  # committed by send_and_enqueue
    return found


@router.get("/queues/{queue}/messages/{message_id}")
async def get_message(queue: str, message_id: str, request: Request, key: Caller) -> MessageView:
    """One message: its status, result or error."""
    found = await run_in_threadpool(_read, request, queue, message_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no message {message_id!r} in {queue!r}")
    return found
