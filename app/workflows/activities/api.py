"""``AWSStepFunctions.*`` for activities: CreateActivity, DescribeActivity, ListActivities,
DeleteActivity and GetActivityTask (the workers' long poll). SendTaskSuccess/Failure/Heartbeat
are the callbacks every task token uses (:mod:`app.workflows.callbacks`).

``GetActivityTask`` is a coroutine, as SQS's ReceiveMessage is: it takes a task at once if one
is available; else it subscribes to the activity's wake-up channel (:mod:`.wake`), checks again
(a task scheduled in between is not missed) and waits — for a wake-up, a re-check every
:data:`RECHECK_SECONDS` (a lost wake-up, or a poller's lease that lapsed), or the deadline,
:data:`POLL_SECONDS` (60 s, as on AWS), when it answers ``{}`` (no ``taskToken``: what AWS calls
"a taskToken with a null string"). A waiting poll holds no thread and no database connection:
each check is one short unit of work in the thread pool. The number of polls one API process
holds at once is bounded by :data:`MAX_POLLERS` per activity (``ActivityWorkerLimitExceeded``
past it), not by the thread pool.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any, Final, TypeVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.aws.errors import AwsError
from app.aws.operations import AwsCall, Handler, registry
from app.common import long_poll
from app.workflows import service as workflows_service
from app.workflows.activities import service, wake
from app.workflows.activities.models import Activity
from app.workflows.activities.service import Polled

PREFIX: Final = "AWSStepFunctions"
#: How long GetActivityTask waits for a task (AWS: 60 s; tests shorten it).
POLL_SECONDS: float = 60.0
#: A waiting poll re-checks the table at least this often.
RECHECK_SECONDS: float = 2.0
#: Concurrent GetActivityTask polls per activity in one API process (AWS's quota is 1,000).
MAX_POLLERS: int = 1000
T = TypeVar("T")

_polling: Counter[str] = Counter()


def _op(name: str, *, write: bool) -> Callable[[Handler], Handler]:
    return registry.operation(PREFIX, name, write=write)


def _unit(call: AwsCall, work: Callable[[Session], T]) -> T:
    return workflows_service.unit_of_work(call.require_settings(), work)


def _view(activity: Activity) -> dict[str, Any]:
    view: dict[str, Any] = {
        "activityArn": activity.arn,
        "name": activity.name,
        "creationDate": activity.created_at,
    }
    if activity.encryption_configuration:
        view["encryptionConfiguration"] = activity.encryption_configuration
    return view


@_op("CreateActivity", write=True)
def create_activity(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        activity = service.create_activity(
            session,
            call.require_settings(),
            params["name"],
            params.get("tags"),
            params.get("encryptionConfiguration"),
        )
        return {"activityArn": activity.arn, "creationDate": activity.created_at}

    return _unit(call, work)


@_op("DescribeActivity", write=False)
def describe_activity(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    return _unit(call, lambda session: _view(service.get_activity(session, params["activityArn"])))


@_op("ListActivities", write=False)
def list_activities(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        page = service.list_activities(session, params.get("maxResults"), params.get("nextToken"))
        out: dict[str, Any] = {
            "activities": [
                {"activityArn": a.arn, "name": a.name, "creationDate": a.created_at}
                for a in page.items
            ]
        }
        if page.next_token:
            out["nextToken"] = page.next_token
        return out

    return _unit(call, work)


@_op("DeleteActivity", write=True)
def delete_activity(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    _unit(call, lambda session: service.delete_activity(session, params["activityArn"]))
    return {}


def _answer(polled: Polled | None) -> dict[str, Any]:
    return {} if polled is None else {"taskToken": polled.token, "input": polled.input}


@_op("GetActivityTask", write=True)
async def get_activity_task(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Take a task at once if there is one; else long-poll (see the module's docstring)."""
    settings = call.require_settings()
    arn, worker = params["activityArn"], params.get("workerName")
    await run_in_threadpool(service.check_activity, settings, arn)
    if _polling[arn] >= MAX_POLLERS:
        raise AwsError(
            "ActivityWorkerLimitExceeded",
            f"The maximum number of workers concurrently polling for activity tasks "
            f"({MAX_POLLERS}) is reached",
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + POLL_SECONDS
    _polling[arn] += 1
    try:
        polled = await run_in_threadpool(service.poll_once, settings, arn, worker)
        if polled is not None:
            return _answer(polled)
        async with long_poll.wake_ups(lambda: wake.listener(settings, arn)) as woke:
            while True:
                polled = await run_in_threadpool(service.poll_once, settings, arn, worker)
                left = deadline - loop.time()
                if polled is not None or left <= 0:
                    return _answer(polled)
                await long_poll.wait(woke, min(left, RECHECK_SECONDS))
    finally:
        _polling[arn] -= 1
        if _polling[arn] <= 0:
            del _polling[arn]
