"""The pure rules of a job's and a runner's life: status order, names, what to reclaim.

Webhooks arrive at least once and in any order (GitLab sends them from background workers, and
the bus and workflows add their own retries), so a job's status only moves forward: a terminal
status sticks, and an earlier status arriving late changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.runners.models import LIVE_RUNNER_STATES, TERMINAL_STATUSES

#: GitLab's build statuses in the order a job goes through them; unknown ones rank lowest.
STATUS_ORDER = (
    "created",
    "waiting_for_resource",
    "preparing",
    "scheduled",
    "manual",
    "pending",
    "running",
)
RUNNER_NAME = re.compile(r"^smokehouse-(\d+)-([0-9a-f]{6})$")


def rank(status: str) -> int:
    if status in TERMINAL_STATUSES:
        return len(STATUS_ORDER) + 1
    try:
        return STATUS_ORDER.index(status)
    except ValueError:
        return -1


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES


def next_status(current: str | None, incoming: str) -> str:
    """The job's status after an event: forward only; the first terminal status sticks."""
    if current is None:
        return incoming
    if is_terminal(current):
        return current
    return incoming if rank(incoming) >= rank(current) else current


def runner_name(gitlab: str, job_id: int) -> str:
    """The runner's name and GitLab description: ``smokehouse-<job id>-<instance hash>``."""
    digest = hashlib.sha256(gitlab.encode()).hexdigest()[:6]
    return f"smokehouse-{int(job_id)}-{digest}"


def job_of_runner(description: str | None) -> int | None:
    """The job a runner was started for, from its description; None if not one of ours."""
    found = RUNNER_NAME.match(description or "")
    return int(found.group(1)) if found else None


@dataclass(frozen=True, slots=True)
class JobFacts:
    """What a Job Hook says about a job, checked."""

    job_id: int
    project_id: int
    status: str
    job_name: str
    stage: str | None
    ref: str | None
    pipeline_id: int | None
    project_path: str | None
    runner_id: int | None
    runner_description: str | None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"the Job Hook has no integer {what}")
    return value


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def job_facts(detail: Any) -> JobFacts:
    """Parse a Job Hook payload (``object_kind: build``); ValueError names what is missing."""
    if not isinstance(detail, dict) or detail.get("object_kind") != "build":
        raise ValueError("not a Job Hook payload (object_kind must be 'build')")
    status = detail.get("build_status")
    if not isinstance(status, str) or not status:
        raise ValueError("the Job Hook has no build_status")
    runner: dict[str, Any] = detail["runner"] if isinstance(detail.get("runner"), dict) else {}
    project: dict[str, Any] = detail["project"] if isinstance(detail.get("project"), dict) else {}
    return JobFacts(
        job_id=_int(detail.get("build_id"), "build_id"),
        project_id=_int(detail.get("project_id"), "project_id"),
        status=status,
        job_name=_opt_str(detail.get("build_name")) or "",
        stage=_opt_str(detail.get("build_stage")),
        ref=_opt_str(detail.get("ref")),
        pipeline_id=_opt_int(detail.get("pipeline_id")),
        project_path=_opt_str(project.get("path_with_namespace"))
        or _opt_str(detail.get("project_name")),
        runner_id=_opt_int(runner.get("id")),
        runner_description=_opt_str(runner.get("description")),
    )


@dataclass(frozen=True, slots=True)
class RunnerView:
    """What reconcile knows of one runner of ours (from the database and the provider)."""

    name: str
    state: str | None  # our row's state; None when we have no row for it
    created_at: datetime  # when the provider started it
    max_lifetime: timedelta
    own_job_terminal: bool
    own_job_finished_at: datetime | None
    ran_own_job: bool  # its own job reported this runner as the one that ran it
    running_live_job: bool  # some unfinished job reports this runner as the one running it


def reclaim_reason(
    runner: RunnerView, now: datetime, *, idle: timedelta, grace: timedelta
) -> str | None:
    """Why reconcile should terminate a live instance/container of ours, or None to keep it."""
    age = now - runner.created_at
    if runner.state is None:
        return "unknown runner" if age > grace else None
    if age > runner.max_lifetime:
        return "older than the profile's max lifetime"
    if runner.state not in LIVE_RUNNER_STATES:
        return f"runner is {runner.state}"
    if runner.running_live_job:
        return None
    if runner.own_job_terminal and runner.ran_own_job:
        return "its job finished"
    if runner.own_job_terminal:
        finished = runner.own_job_finished_at or runner.created_at
        if now - finished > idle:
            return "its job finished elsewhere and it stayed idle"
    return None
