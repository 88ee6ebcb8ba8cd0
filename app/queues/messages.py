"""Work-queue messages (SQS → Lambda): store one, enqueue it, run it, complete it.

A message names a registered handler or a state machine. ``sync`` runs the handler and stores
its result; ``async`` gives the handler a task token (``context.extra["task_token"]``) and waits
for ``SendTaskSuccess``/``SendTaskFailure`` with it, the workflows' callback operations; a state
machine message starts one execution named after the message. Rows first, then the broker
(:func:`send_and_enqueue` registers the send on the unit of work); :func:`run` is idempotent,
so a redelivered message that finished is a no-op. A stored message is accepted, as SQS's
SendMessage is: if the broker is down at that moment, :func:`sweep` (on the scheduler) enqueues
it once the broker is back.

Async messages hold task tokens the workflows' callbacks do not know: :class:`MessageTokens`
answers for them, registered into :mod:`app.workflows.tokens` by :mod:`app.wiring`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.broker.queues import QUEUES
from app.celery_client import celery_for
from app.config import Settings
from app.db import after_commit, get_database, utcnow
from app.handlers import HandlerContext, handlers
from app.queues.models import FINISHED, MESSAGE_MODES, MESSAGE_STATUSES, PULL, QueueMessage
from app.workflows import errors as sfn_errors

log = logging.getLogger("smokehouse.queues")

HANDLE_TASK = "scaling.handle"
MAX_ERROR = 256
SWEEP_BATCH = 500


class MessageError(ValueError):
    """Bad input for a message; ``status`` is the HTTP status that says why (400 or 404)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def known_queues(settings: Settings) -> list[str]:
    """The queues a message may go to: every worker's queues plus the autoscaled ones."""
    return sorted({*QUEUES, *settings.scaling.queue_list})


def _machine_arn(session: Session, state_machine: str) -> str:
    from app.workflows.models import StateMachine

    arn = session.scalar(
        select(StateMachine.arn).where(
            or_(StateMachine.name == state_machine, StateMachine.arn == state_machine)
        )
    )
    if arn is None:
        raise MessageError(f"state machine {state_machine!r} does not exist", 404)
    return arn


def send_message(
    session: Session,
    settings: Settings,
    queue: str,
    *,
    handler: str | None = None,
    state_machine: str | None = None,
    payload: Any = None,
    mode: str = "sync",
) -> QueueMessage:
    """Validate and insert one ``queued`` message (the caller's unit of work enqueues it).
    ``state_machine`` is a name or an ARN; exactly one of it and ``handler`` is given."""
    if queue not in known_queues(settings):
        raise MessageError(f"queue {queue!r} is not a known work queue", 404)
    if (handler is None) == (state_machine is None):
        raise MessageError("give exactly one of handler and stateMachine")
    if mode not in MESSAGE_MODES:
        raise MessageError(f"mode must be one of {', '.join(MESSAGE_MODES)}, not {mode!r}")
    if handler is not None and handler not in handlers:
        raise MessageError(f"no handler named {handler!r} is registered")
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"the payload is not JSON: {exc}") from None
    now = utcnow()
    message = QueueMessage(
        id=str(uuid.uuid4()),
        queue=queue,
        handler=handler,
        state_machine=None if state_machine is None else _machine_arn(session, state_machine),
        mode=mode,
        payload=payload,
        status="queued",
        attempts=0,
        created_at=now,
        enqueued_at=now,
    )
    session.add(message)
    session.flush()
    return message


def enqueue(settings: Settings, messages: Sequence[tuple[str, str]]) -> None:
    """Send ``scaling.handle`` for committed ``(message id, queue)`` pairs; the task id is the
    message id. Raises if the broker is down (the rows stay ``queued``)."""
    celery = celery_for(settings)
    with celery.producer_or_acquire() as producer:
        for message_id, queue in messages:
            celery.send_task(
                HANDLE_TASK,
                kwargs={"message_id": message_id},
                queue=queue,
                task_id=message_id,
                producer=producer,
                retry=False,
            )


def send_and_enqueue(
    settings: Settings,
    queue: str,
    *,
    handler: str | None = None,
    state_machine: str | None = None,
    payload: Any = None,
    mode: str = "sync",
    count: int = 1,
) -> list[str]:
    """Store ``count`` messages in one transaction and enqueue them once it commits; their ids."""
    with get_database(settings.sqlalchemy_url).session() as session:
        ids = [
            send_message(
                session,
                settings,
                queue,
                handler=handler,
                state_machine=state_machine,
                payload=payload,
                mode=mode,
            ).id
            for _ in range(count)
        ]
        after_commit(session).call(_enqueue_stored, settings, [(i, queue) for i in ids])
    return ids


def _enqueue_stored(settings: Settings, found: Sequence[tuple[str, str]]) -> None:
    """:func:`enqueue`, after the commit; a stored message is accepted even if the broker is
    down, so a failure is a warning: the sweeper enqueues it later."""
    try:
        enqueue(settings, found)
    except Exception as exc:
        log.warning("could not enqueue %d messages (%s); the sweeper will retry", len(found), exc)


def due_for_sweep(session: Session, now: datetime, grace: timedelta) -> list[tuple[str, str]]:
    """``queued`` messages handed to the broker more than ``grace`` ago and never claimed
    (the broker was down, or lost them): marked enqueued now, returned as (id, queue)."""
    rows = session.execute(
        select(QueueMessage.id, QueueMessage.queue)
        .where(
            QueueMessage.status == "queued",
            QueueMessage.enqueued_at <= now - grace,
            QueueMessage.mode != PULL,  # SQS messages wait for a consumer, nobody pushes them
        )
        .order_by(QueueMessage.enqueued_at)
        .limit(SWEEP_BATCH)
    ).all()
    found = [(row.id, row.queue) for row in rows]
    if found:
        session.execute(
            update(QueueMessage)
            .where(QueueMessage.id.in_([message_id for message_id, _ in found]))
            .values(enqueued_at=now)
            .execution_options(synchronize_session=False)
        )
    return found


def sweep(settings: Settings, grace_seconds: float) -> int:
    """One sweeper pass: enqueue stragglers again; how many. A message that is only slow to
    be picked up (a deep backlog) may run twice at most once per grace: :func:`run` claims
    it first, so a copy that arrives after it finished does nothing."""
    with get_database(settings.sqlalchemy_url).session() as session:
        found = due_for_sweep(session, utcnow(), timedelta(seconds=grace_seconds))
        if found:
            log.info("sweeper enqueues %d work-queue messages again", len(found))
            after_commit(session).call(_enqueue_stored, settings, found)
    return len(found)


# --- running ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a worker needs to run a message, read in the transaction that claimed it."""

    id: str
    queue: str
    handler: str | None
    state_machine: str | None
    mode: str
    payload: Any
    attempts: int
    task_token: str | None


def _claim(settings: Settings, message_id: str) -> Claimed | None:
    """Mark the message running (async: waiting, with its token); ``None`` if it finished, or
    if this receive is past its queue's cap (then it is dead-lettered instead of run)."""
    with get_database(settings.sqlalchemy_url).session() as session:
        row = session.get(QueueMessage, message_id, with_for_update=True)
        if row is None:
            log.warning("work-queue message %s does not exist; dropped", message_id)
            return None
        if row.status in FINISHED:
            return None
        cap = settings.queues.receive_cap(row.queue)
        if row.attempts >= cap:
            row.status = "dead"
            row.error = "ReceiveCapExceeded"
            row.cause = (
                f"received {row.attempts} times without finishing (the cap for queue "
                f"{row.queue!r} is {cap}): its runs died with their workers"
            )
            row.finished_at = utcnow()
            log.error("work-queue message %s dead-lettered: %s", row.id, row.cause)
            return None
        row.attempts += 1
        row.started_at = row.started_at or utcnow()
        if row.handler is not None and row.mode == "async":
            row.task_token = row.task_token or str(uuid.uuid4())
            row.status = "waiting"
        else:
            row.status = "running"
        return Claimed(
            row.id,
            row.queue,
            row.handler,
            row.state_machine,
            row.mode,
            row.payload,
            row.attempts,
            row.task_token,
        )


def _finish(
    settings: Settings,
    message_id: str,
    *,
    expect: Sequence[str],
    result: Any = None,
    error: str | None = None,
    cause: str | None = None,
    execution_arn: str | None = None,
) -> bool:
    """Move a message from one of ``expect`` to succeeded/failed; False if it was not there."""
    values: dict[str, Any] = {
        "status": "failed" if error is not None else "succeeded",
        "result": result,
        "error": error,
        "cause": cause,
        "finished_at": utcnow(),
    }
    if execution_arn is not None:
        values["execution_arn"] = execution_arn
    with get_database(settings.sqlalchemy_url).session() as session:
        done = session.execute(
            update(QueueMessage)
            .where(QueueMessage.id == message_id, QueueMessage.status.in_(expect))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(done, "rowcount", 0))


def _error_of(exc: BaseException) -> tuple[str, str]:
    return type(exc).__name__[:MAX_ERROR], str(exc)


def run(settings: Settings, message_id: str) -> Any:
    """Run one message (the ``scaling.handle`` task); returns the stored result, if any.
    A redelivered message that finished does nothing; one that is ``waiting`` calls the handler
    again with the same token (at least once: the handler dedupes on ``invocation_id``)."""
    claimed = _claim(settings, message_id)
    if claimed is None:
        return None
    if claimed.state_machine is not None:
        return _start_execution(settings, claimed)
    assert claimed.handler is not None  # send_message checks one of the two is set
    context = HandlerContext(
        name=claimed.handler,
        invocation_id=claimed.id,
        attempt=claimed.attempts,
        extra={
            "queue": claimed.queue,
            "message_id": claimed.id,
            **({"task_token": claimed.task_token} if claimed.mode == "async" else {}),
        },
        settings=settings,
    )
    try:
        result = handlers.get(claimed.handler)(claimed.payload, context)
        json.dumps(result)
    except Exception as exc:
        error, cause = _error_of(exc)
        expect = ("waiting",) if claimed.mode == "async" else ("running",)
        _finish(settings, claimed.id, expect=expect, error=error, cause=cause)
        return None
    if claimed.mode == "async":
        return None  # completes when SendTaskSuccess/SendTaskFailure arrives with the token
    _finish(settings, claimed.id, expect=("running",), result=result)
    return result


def _start_execution(settings: Settings, claimed: Claimed) -> Any:
    from app.workflows import service as workflows_service

    try:
        arn, _ = workflows_service.start(
            settings,
            claimed.state_machine,
            f"queue-message-{claimed.id}",
            json.dumps(claimed.payload if claimed.payload is not None else {}),
        )
    except Exception as exc:
        error, cause = _error_of(exc)
        _finish(settings, claimed.id, expect=("running",), error=error, cause=cause)
        return None
    result = {"executionArn": arn}
    _finish(settings, claimed.id, expect=("running",), result=result, execution_arn=arn)
    return result


# --- callbacks (SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat) -------------------


def _waiting(settings: Settings, token: str) -> str | None:
    """The id of the message that holds ``token``; ``None`` if none does. A message that is no
    longer waiting answers ``TaskTimedOut``, as a finished workflow task does."""
    with get_database(settings.sqlalchemy_url).session() as session:
        row = session.execute(
            select(QueueMessage.id, QueueMessage.status).where(QueueMessage.task_token == token)
        ).first()
    if row is None:
        return None
    if row.status != "waiting":
        raise sfn_errors.task_timed_out()
    return str(row.id)


def complete(
    settings: Settings,
    token: str,
    *,
    output: Any = None,
    error: str | None = None,
    cause: str | None = None,
    failed: bool = False,
) -> bool:
    """Finish the waiting message that holds ``token``; False if no message holds it."""
    message_id = _waiting(settings, token)
    if message_id is None:
        return False
    if failed:
        error = error if error is not None else "States.TaskFailed"
    if not _finish(
        settings,
        message_id,
        expect=("waiting",),
        result=None if failed else output,
        error=error if failed else None,
        cause=cause if failed else None,
    ):
        raise sfn_errors.task_timed_out()
    return True


def heartbeat(settings: Settings, token: str) -> bool:
    """A heartbeat for a waiting message (accepted, nothing to record); False if none holds it."""
    return _waiting(settings, token) is not None


@dataclass(frozen=True, slots=True)
class MessageTokens:
    """Async work-queue messages as task-token holders for the workflows' callback operations
    (equal to one another, so registering twice registers once)."""

    def succeed(self, settings: Settings, token: str, output: Any) -> bool:
        return complete(settings, token, output=output)

    def fail(self, settings: Settings, token: str, error: str | None, cause: str | None) -> bool:
        return complete(settings, token, error=error, cause=cause, failed=True)

    def heartbeat(self, settings: Settings, token: str) -> bool:
        return heartbeat(settings, token)


# --- reading ------------------------------------------------------------------------------


def redrive(session: Session, settings: Settings, message_id: str, now: datetime) -> QueueMessage:
    """Give a dead-lettered message a fresh receive budget and queue it again (sent after
    commit). Only ``dead`` messages: redriving one twice, or a live one, is refused."""
    row = session.get(QueueMessage, message_id, with_for_update=True)
    if row is None:
        raise MessageError(f"no message {message_id}", 404)
    if row.status != "dead":
        raise MessageError(f"message {message_id} is {row.status}, not dead-lettered")
    row.status = "queued"
    row.attempts = 0
    row.error = row.cause = None
    row.task_token = None
    row.started_at = row.finished_at = None
    row.enqueued_at = now
    session.flush()
    after_commit(session).call(_enqueue_stored, settings, [(row.id, row.queue)])
    return row


def list_messages(
    session: Session, queue: str | None = None, status: str | None = None, limit: int = 50
) -> list[QueueMessage]:
    """Messages newest first, optionally of one queue and status."""
    if status is not None and status not in MESSAGE_STATUSES:
        raise MessageError(f"status must be one of {', '.join(MESSAGE_STATUSES)}")
    query = select(QueueMessage).order_by(QueueMessage.created_at.desc(), QueueMessage.id)
    if queue is not None:
        query = query.where(QueueMessage.queue == queue)
    if status is not None:
        query = query.where(QueueMessage.status == status)
    return list(session.scalars(query.limit(max(1, min(limit, 500)))))
