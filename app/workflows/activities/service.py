"""Activities: Step Functions' control plane for them, and the poller's side of their tasks.

``GetActivityTask`` takes a task in two short transactions, never holding a connection while it
waits (the wait is :mod:`~app.workflows.activities.api`'s):

1. :func:`_claim` — one ``UPDATE … RETURNING`` on the oldest available task of the activity,
   picked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (concurrent pollers take different rows and
   never wait on each other); on SQLite writers are serialised and the UPDATE's own condition
   decides. It sets a short lease (``claim``, ``claimed_until``): a poller that dies before
   step 2 leaves the task to the next one once the lease lapses.
2. :func:`_start` — the engine's durable step records ``ActivityStarted`` (``TaskStarted`` with
   the worker's name) and deletes the row, in one transaction: a task is handed out once.

A task whose execution no longer waits on it (stopped, timed out before anyone polled) is
dropped on the way, and the poller takes the next.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, cast

from sqlalchemy import Table, delete, func, or_, select
from sqlalchemy.orm import Session

from app import tagging
from app.aws.errors import AwsError
from app.config import Settings
from app.db import get_database, utcnow
from app.workflows import errors, service
from app.workflows.activities.arns import activity_arn, activity_name
from app.workflows.activities.models import Activity, ActivityTask
from app.workflows.arns import check_name
from app.workflows.asl import TaskFailed, TaskStarted
from app.workflows.engine import Timed, apply
from app.workflows.models import Execution, ExecutionTask
from app.workflows.store import ACTIVE, Loaded
from app.workflows.store import load as load_execution

#: AWS's default quota of registered activities per account and region.
MAX_ACTIVITIES: Final = 10_000
#: How long a poller holds a task between taking it and recording ActivityStarted.
CLAIM_LEASE_SECONDS: Final = 30.0
#: Dead rows (tasks no longer waited on) a single poll clears before it gives up for now.
MAX_SKIPS: Final = 50
ENCRYPTION_TYPES: Final = ("AWS_OWNED_KEY", "CUSTOMER_MANAGED_KMS_KEY")

OFFERED = cast(Table, ActivityTask.__table__)


def activity_does_not_exist(arn: str) -> AwsError:
    return errors.sfn_error("ActivityDoesNotExist", "Activity Does Not Exist", arn)


# --- the control plane ------------------------------------------------------------------------


def get_activity(session: Session, arn: Any) -> Activity:
    activity_name(arn)
    found = session.get(Activity, arn)
    if found is None:
        raise activity_does_not_exist(str(arn))
    return found


def tag_key(session: Session, arn: Any) -> str:
    """Where an activity's tags are kept (``states:activity:<name>``, like a state machine's
    ``states:stateMachine:<name>``); ``ResourceNotFound`` when it does not exist, as
    TagResource/ListTagsForResource answer."""
    try:
        found = get_activity(session, arn)
    except AwsError:
        raise errors.resource_not_found(str(arn)) from None
    return "states:activity:" + found.name


def _encryption(value: Any) -> dict[str, Any] | None:
    """The model checked the members' types and ranges; a customer-managed key needs its id."""
    if value is None:
        return None
    kind = value.get("type")
    if kind not in ENCRYPTION_TYPES:
        raise errors.sfn_error(
            "InvalidEncryptionConfiguration", "Invalid Encryption Configuration", str(kind)
        )
    if kind == "CUSTOMER_MANAGED_KMS_KEY" and not value.get("kmsKeyId"):
        raise AwsError(
            "InvalidEncryptionConfiguration",
            "kmsKeyId is required when the encryption type is CUSTOMER_MANAGED_KMS_KEY",
        )
    if kind == "AWS_OWNED_KEY" and (
        value.get("kmsKeyId") is not None or value.get("kmsDataKeyReusePeriodSeconds") is not None
    ):
        raise AwsError(
            "InvalidEncryptionConfiguration",
            "kmsKeyId and kmsDataKeyReusePeriodSeconds apply to CUSTOMER_MANAGED_KMS_KEY only",
        )
    return {k: value[k] for k in ("type", "kmsKeyId", "kmsDataKeyReusePeriodSeconds") if k in value}


def _tags(tags: Sequence[dict[str, Any]] | None) -> dict[str, str]:
    if any(t.get("key") is None for t in tags or ()):
        raise errors.validation("Every tag needs a key.")
    return {str(t["key"]): str(t.get("value", "")) for t in tags or ()}


def create_activity(
    session: Session,
    settings: Settings,
    name: Any,
    tags: Sequence[dict[str, Any]] | None = None,
    encryption: Any = None,
) -> Activity:
    """CreateActivity. Idempotent by name, as on AWS: asking again returns the activity as it
    is, different tags ignored (they are not updated); a different encryption configuration is
    ``ActivityAlreadyExists``."""
    name = check_name(name)
    arn = activity_arn(settings.region, settings.account_id, name)
    wanted = _encryption(encryption)
    given = _tags(tags)
    existing = session.get(Activity, arn)
    if existing is not None:
        if (existing.encryption_configuration or None) != wanted:
            raise errors.sfn_error("ActivityAlreadyExists", "Activity Already Exists", arn)
        return existing
    count = session.scalar(select(func.count()).select_from(Activity)) or 0
    if count >= MAX_ACTIVITIES:
        raise AwsError(
            "ActivityLimitExceeded",
            f"The maximum number of activities ({MAX_ACTIVITIES}) is reached",
        )
    activity = Activity(arn=arn, name=name, encryption_configuration=wanted, created_at=utcnow())
    session.add(activity)
    session.flush()  # a concurrent create of the same name fails here; unit_of_work retries
    if given:
        try:
            tagging.tag(session, "states:activity:" + name, given)
        except tagging.TagError as error:
            if error.too_many:
                raise errors.too_many_tags(arn) from None
            raise errors.validation(error.message) from None
    return activity


def list_activities(session: Session, limit: Any, token: Any) -> service.Page:
    page = service.paginate(session, select(Activity).order_by(Activity.name), limit, token)
    return service.Page([row[0] for row in page.items], page.next_token)


def delete_activity(session: Session, arn: Any) -> None:
    """DeleteActivity: gone at once, its tags with it; deleting what does not exist is not an
    error (the model lists only ``InvalidArn``). Tasks already scheduled stay available to
    pollers until they end; a Task state that schedules one later fails with
    ``States.Runtime``, as on AWS."""
    name = activity_name(arn)
    session.execute(delete(Activity).where(Activity.arn == arn))
    tagging.forget(session, ["states:activity:" + name])


# --- a task that cannot be scheduled ------------------------------------------------------------


def missing_cause(loaded: Loaded, ref: str, arn: str) -> str | None:
    """AWS's cause for a Task state naming an activity that does not exist (None when the
    execution no longer waits on ``ref``)."""
    pending = loaded.state.pending.get(ref)
    frame = None if pending is None else loaded.state.frames.get(pending.frame)
    if frame is None:
        return None
    return (
        f"An error occurred while executing the state '{frame.state}' "
        f"(entered at the event id #{frame.entered_event_id}). The activity {arn} does not exist."
    )


def fail_missing(settings: Settings, execution_id: int, ref: str, arn: str) -> None:
    """Fail a task scheduled on an activity that does not exist: ``States.Runtime``, which no
    Retry or Catch handles, so the execution fails as on AWS."""

    def maker(_session: Session, loaded: Loaded) -> tuple[list[Timed], list[str]]:
        cause = missing_cause(loaded, ref, arn)
        if cause is None:
            return [], []
        return [(TaskFailed(ref, "States.Runtime", cause), utcnow())], []

    apply(settings, execution_id, maker, rows={ref: "done"})


def execution_id_of(session: Session, execution_arn: str) -> int | None:
    found: int | None = session.scalar(select(Execution.id).where(Execution.arn == execution_arn))
    return found


def loaded_execution(session: Session, execution_arn: str) -> Loaded | None:
    execution_id = execution_id_of(session, execution_arn)
    return None if execution_id is None else load_execution(session, execution_id)


# --- polling ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    token: str
    execution_id: int
    ref: str
    input: str
    claim: str


@dataclass(frozen=True, slots=True)
class Polled:
    """What GetActivityTask answers with."""

    token: str
    input: str


def check_activity(settings: Settings, arn: Any) -> None:
    """``InvalidArn`` / ``ActivityDoesNotExist`` before a poll starts waiting."""
    with get_database(settings.sqlalchemy_url).session() as session:
        get_activity(session, arn)


def _claim(settings: Settings, arn: str) -> Claimed | None:
    """Step 1: lease the oldest available task of the activity (dropping, on the way, tasks
    whose execution stopped waiting for them)."""
    with get_database(settings.sqlalchemy_url).session() as session:
        for _ in range(MAX_SKIPS):
            now = utcnow()
            claimable = or_(OFFERED.c.claim.is_(None), OFFERED.c.claimed_until < now)
            # A CTE: PostgreSQL evaluates a locking one exactly once.
            picked = (
                select(OFFERED.c.task_token)
                .where(OFFERED.c.activity_arn == arn, claimable)
                .order_by(OFFERED.c.scheduled_at, OFFERED.c.task_token)
                .limit(1)
                .with_for_update(skip_locked=True)
                .cte("picked")
            )
            claim = str(uuid.uuid4())
            row = session.execute(
                OFFERED.update()
                .where(OFFERED.c.task_token.in_(select(picked.c.task_token)), claimable)
                .values(claim=claim, claimed_until=now + timedelta(seconds=CLAIM_LEASE_SECONDS))
                .returning(
                    OFFERED.c.task_token, OFFERED.c.execution_id, OFFERED.c.ref, OFFERED.c.input
                )
            ).first()
            if row is None:
                return None
            status = session.scalar(
                select(ExecutionTask.status).where(
                    ExecutionTask.execution_id == row.execution_id, ExecutionTask.ref == row.ref
                )
            )
            if status in ACTIVE:
                return Claimed(row.task_token, row.execution_id, row.ref, row.input, claim)
            session.execute(delete(ActivityTask).where(ActivityTask.task_token == row.task_token))
    return None


def _start(settings: Settings, claimed: Claimed, worker_name: str | None) -> bool:
    """Step 2: record ActivityStarted and take the row off the activity, in one step. False
    when the execution no longer waits on the task (the row is dropped then)."""
    live: list[bool] = []

    def maker(session: Session, loaded: Loaded) -> tuple[list[Timed], list[str]]:
        live.clear()
        gone = session.execute(
            delete(ActivityTask).where(
                ActivityTask.task_token == claimed.token, ActivityTask.claim == claimed.claim
            )
        )
        if gone.rowcount != 1 or claimed.ref not in loaded.state.pending:  # type: ignore[attr-defined]
            live.append(False)
            return [], []
        live.append(True)
        return [(TaskStarted(claimed.ref, worker_name=worker_name), utcnow())], []

    apply(settings, claimed.execution_id, maker)
    if not live:  # the execution is over (or gone): the maker never ran
        with get_database(settings.sqlalchemy_url).session() as session:
            session.execute(
                delete(ActivityTask).where(
                    ActivityTask.task_token == claimed.token, ActivityTask.claim == claimed.claim
                )
            )
        return False
    # Applied, or ignored because the task had started already (a worker took it inline:
    # see resource.py); either way this poller now holds it.
    return live[-1]


def poll_once(settings: Settings, arn: str, worker_name: str | None) -> Polled | None:
    """Take one available task of the activity, or None when there is none right now."""
    for _ in range(MAX_SKIPS):
        claimed = _claim(settings, arn)
        if claimed is None:
            return None
        if _start(settings, claimed, worker_name):
            return Polled(claimed.token, claimed.input)
    return None
