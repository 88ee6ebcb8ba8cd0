"""Lost-webhook recovery: pending jobs GitLab has and we never heard of get their runner.

GitLab sends a Job Hook once (and retries a failed delivery a few times); a hook lost on the way
-- smokehouse down, a network cut, GitLab's own queue -- would leave the job pending forever,
since reconcile only retried jobs it had recorded. Each reconcile pass therefore asks GitLab's
API for the pending jobs of the projects it serves -- ``SMOKEHOUSE_GITLAB_WATCH`` (projects and
groups) and every project it saw a job of in the last 30 days -- and starts the start workflow
for each job it has no record of, with a Job Hook made from the API's answer.

Nothing is started twice: the execution is named after the job (``recover-<job id>``), so the
next pass asks for the same execution; and ``runners.plan-start`` records a job once per
(instance, job id) and reserves its single runner, so a late real hook, a recovered one and a
retry all meet at one runner. A recovery execution that *ended* without recording the job (it
FAILED, TIMED_OUT or was ABORTED before ``plan-start`` stored anything) does not block the job
for good: the next pass starts ``recover-<job id>-2`` and so on, up to
:data:`MAX_RECOVERIES` executions; past that the job is left alone and logged (a job that can
never be started is not retried in a loop).

Lost finishes (:func:`recover_lost_finishes`): the other way round, a ``success``/``failed``/
``canceled`` hook lost on the way left the job's runner up until its profile's max lifetime (an
orphan instance or container, and a slot of the profile taken). Each pass asks GitLab for the
status of every unfinished job that has a live runner; a finished job is recorded as its hook
would have been (the runner GitLab names included) and its runners are planned to stop
(``terminating``), which the same reconcile pass then terminates. A job GitLab answers 404 for,
under a project it still shows us, was deleted: recorded ``canceled``. A project GitLab no
longer shows (deleted, or our token lost access -- we cannot tell) changes nothing: the max
lifetime still ends its runners. Duplicates are absorbed by :func:`lifecycle.record` (status
only moves forward, one timeline row per status) and by the runner states (a runner already
``terminating``/``terminated`` is not planned again), so a real hook arriving late changes
nothing twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from app.config import Settings
from app.config.runners import TokenScope, parse_scope
from app.db import get_database
from app.runners import lifecycle
from app.runners.gitlab import GitLabClient, GitLabError, GitLabUnavailable
from app.runners.models import LIVE_RUNNER_STATES, TERMINAL_STATUSES, Runner, RunnerJob
from app.runners.profiles import Profiles
from app.runners.transitions import JobFacts

log = logging.getLogger("smokehouse.runners")

START_MACHINE = "gitlab-start-runner"
HISTORY = timedelta(days=30)
#: Recovery executions per job (``recover-<id>``, ``recover-<id>-2``...) before giving up.
MAX_RECOVERIES = 3
#: Unfinished jobs with a live runner whose status is asked of GitLab per pass (the least
#: recently heard of first). Live runners are bounded by the profiles' ``max_concurrent``, so
#: this covers all of them on any sane configuration; one GET each, stopped at the first
#: GitLab outage.
FINISH_BATCH = 500
#: Timeline/event id of what reconcile learnt from GitLab's API rather than from a hook.
RECONCILED = "reconcile"


def job_hook(job: dict[str, Any], project_id: int, project_path: str | None) -> dict[str, Any]:
    """The Job Hook GitLab would have sent for a pending job (the fields plan-start reads)."""
    pipeline: dict[str, Any] = job["pipeline"] if isinstance(job.get("pipeline"), dict) else {}
    return {
        "object_kind": "build",
        "build_id": job["id"],
        "build_name": job.get("name") or "",
        "build_stage": job.get("stage"),
        "build_status": "pending",
        "build_created_at": job.get("created_at"),
        "build_started_at": None,
        "build_finished_at": None,
        "ref": job.get("ref"),
        "tag": job.get("tag", False),
        "retries_count": 0,
        "pipeline_id": pipeline.get("id"),
        "project_id": project_id,
        "project_name": project_path,
        "project": {"id": project_id, "path_with_namespace": project_path},
        "runner": None,
        lifecycle.RECOVERED_MARK: True,
    }


def _normal(url: str) -> str:
    root = url.strip().rstrip("/")
    root = root.removesuffix("/api/v4").rstrip("/")
    return root.casefold()


def hook_instance(api_url: str | None, seen: set[str]) -> str:
    """The instance name (``X-Gitlab-Instance``) a recovered job is recorded under, so a late
    real hook for it meets the same (instance, job id) row and its one runner: the only
    instance our hooks came from, else the one that is the API's URL (ignoring a trailing
    ``/`` or ``/api/v4`` and case), else the API's URL without them. Recording it under
    another name than its hooks use would give a late hook a second job row -- a second
    runner."""
    if len(seen) == 1:
        return next(iter(seen))
    wanted = _normal(api_url or "gitlab")
    for instance in sorted(seen):
        if _normal(instance) == wanted:
            return instance
    return (api_url or "gitlab").strip().rstrip("/").removesuffix("/api/v4").rstrip("/")


def _served(
    settings: Settings, client: GitLabClient, now: datetime
) -> dict[int, tuple[str | None, str]]:
    """Project id -> (its path, the GitLab instance its jobs are recorded under)."""
    served: dict[int, tuple[str | None, str]] = {}
    with get_database(settings.sqlalchemy_url).session() as session:
        rows = session.execute(
            select(RunnerJob.project_id, RunnerJob.project_name, func.max(RunnerJob.gitlab))
            .where(RunnerJob.created_at >= now - HISTORY)
            .group_by(RunnerJob.project_id, RunnerJob.project_name)
        ).all()
        seen = set(
            session.scalars(
                select(RunnerJob.gitlab).where(RunnerJob.created_at >= now - HISTORY).distinct()
            )
        )
    default_instance = hook_instance(settings.gitlab.url, seen)
    for project_id, path, instance in rows:
        served[int(project_id)] = (path, instance or default_instance)
    scope = parse_scope(settings.gitlab.watch) if settings.gitlab.watch.strip() else TokenScope()
    for project_id in scope.project_ids:
        served.setdefault(project_id, (None, default_instance))
    projects: list[dict[str, Any]] = []
    for path in scope.project_paths:
        found = client.project(path)
        if found is not None:
            projects.append(found)
    for group in scope.group_paths:
        projects.extend(client.group_projects(group))
    for project in projects:
        if isinstance(project.get("id"), int):
            path = project.get("path_with_namespace")
            served.setdefault(project["id"], (path, default_instance))
    return served


def recover_lost_jobs(settings: Settings, client: GitLabClient, now: datetime) -> int:
    """Start runners for pending jobs we never recorded; how many start workflows began."""
    from app.workflows.service import scope as workflow_scope

    served = _served(settings, client, now)
    arn = workflow_scope(settings).state_machine(START_MACHINE)
    started = 0
    for project_id, (path, instance) in sorted(served.items()):
        try:
            pending = client.pending_jobs(project_id)
        except GitLabUnavailable as exc:  # GitLab is away: not one timeout per project
            log.warning("pending jobs unavailable, GitLab away: %s", exc)
            break
        except GitLabError as exc:
            log.warning("pending jobs of project %s unavailable: %s", project_id, exc)
            continue
        ids = [int(j["id"]) for j in pending if isinstance(j.get("id"), int)]
        if not ids:
            continue
        with get_database(settings.sqlalchemy_url).session() as session:
            known = set(session.scalars(select(RunnerJob.job_id).where(RunnerJob.job_id.in_(ids))))
        for job in pending:
            if not isinstance(job.get("id"), int) or job["id"] in known:
                continue
            detail = job_hook(job, project_id, path)
            if _start_recovery(settings, arn, int(job["id"]), instance, detail):
                log.warning(
                    "job %s (project %s): pending, no webhook seen: started", job["id"], project_id
                )
                started += 1
    return started


def _ended_without_success(settings: Settings, arn: str) -> bool:
    """The execution ``arn`` exists and ended FAILED, TIMED_OUT or ABORTED."""
    from app.workflows import service as workflows_service

    with get_database(settings.sqlalchemy_url).session() as session:
        try:
            found = workflows_service.get_execution(session, arn)
        except Exception:  # gone (retention) or unreadable: treat as still blocking
            return False
        return found.execution.status in ("FAILED", "TIMED_OUT", "ABORTED")


def _start_recovery(
    settings: Settings, machine_arn: str, job_id: int, instance: str, detail: dict[str, Any]
) -> bool:
    """Start the first free ``recover-<job id>[-n]`` execution; True when one was started.

    An existing execution that is running or succeeded means an earlier pass has it in hand
    (False); one that ended without success lets the next name go, up to MAX_RECOVERIES."""
    from app.aws.errors import AwsError
    from app.workflows import service as workflows_service
    from app.workflows.service import scope as workflow_scope

    for attempt in range(1, MAX_RECOVERIES + 1):
        name = f"recover-{job_id}" if attempt == 1 else f"recover-{job_id}-{attempt}"
        event = {
            "id": name,
            "source": "smokehouse.runners",
            "detail-type": "Job Hook",
            "resources": [instance],
            "detail": detail,
        }
        try:
            workflows_service.start(settings, machine_arn, name, json.dumps(event))
            return True
        except AwsError as exc:
            if exc.code != "ExecutionAlreadyExists":
                log.warning("could not recover job %s: %s", job_id, exc.message)
                return False
        except Exception as exc:
            log.warning("could not recover job %s: %s", job_id, exc)
            return False
        execution = workflow_scope(settings).execution(START_MACHINE, name)
        if not _ended_without_success(settings, execution):
            return False  # an earlier pass started it and it is running or done
    log.error(
        "job %s: pending, never recorded, and %d recovery executions ended without starting it:"
        " left alone (see the executions recover-%s*)",
        job_id,
        MAX_RECOVERIES,
        job_id,
    )
    return False


def recover_lost_finishes(
    settings: Settings, client: GitLabClient, now: datetime, errors: list[str], profiles: Profiles
) -> list[int]:
    """Ask GitLab about the unfinished jobs that have a live runner (their own, or the one a
    hook said runs them); record the finished ones and plan their runners' stop. Returns the
    job ids recorded finished; GitLab errors go to ``errors`` (the next pass asks again). A
    GitLab that cannot be reached ends the round at the first job (one timeout, not one per
    job: the pass must stay shorter than its interval)."""
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        rows = session.execute(
            select(RunnerJob)
            .join(
                Runner,
                or_(Runner.job_pk == RunnerJob.id, Runner.name == RunnerJob.ran_on),
            )
            .where(RunnerJob.finished_at.is_(None), Runner.state.in_(LIVE_RUNNER_STATES))
            .order_by(RunnerJob.updated_at)
            .limit(FINISH_BATCH)
        ).scalars()
        jobs = {
            job.id: (
                job.gitlab,
                JobFacts(
                    job_id=job.job_id,
                    project_id=job.project_id,
                    status=job.status,
                    job_name=job.job_name,
                    stage=job.stage,
                    ref=job.ref,
                    pipeline_id=job.pipeline_id,
                    project_path=job.project_name,
                    runner_id=None,
                    runner_description=None,
                ),
            )
            for job in rows.unique()
        }
    finished: list[int] = []
    for instance, known in jobs.values():
        try:
            facts = _finish_facts(client, known)
        except GitLabUnavailable as exc:  # GitLab is away: ask nobody else this pass
            errors.append(f"gitlab: status of job {known.job_id}: {exc}")
            break
        except GitLabError as exc:
            errors.append(f"gitlab: status of job {known.job_id}: {exc}")
            continue
        if facts is None:
            continue
        with database.session() as session:
            job = lifecycle.record(session, instance, facts, now, event_id=RECONCILED)
            plan = lifecycle.plan_stop(session, job, facts, now, profiles)
        log.warning(
            "job %s (project %s): GitLab says %s, no hook seen: stopping %s",
            facts.job_id,
            facts.project_id,
            facts.status,
            ", ".join(plan.runners) or "nothing",
        )
        finished.append(facts.job_id)
    return finished


def _finish_facts(client: GitLabClient, known: JobFacts) -> JobFacts | None:
    """The finish GitLab shows for a job we think unfinished, or None (still going, or GitLab
    cannot tell)."""
    found = client.job(known.project_id, known.job_id)
    if found is None:
        if client.project(known.project_id) is None:
            return None  # deleted project or lost access: cannot tell; max lifetime ends it
        return replace(known, status="canceled")  # the job was deleted (its pipeline erased)
    status = found.get("status")
    if status not in TERMINAL_STATUSES:
        return None
    runner: dict[str, Any] = found["runner"] if isinstance(found.get("runner"), dict) else {}
    runner_id = runner.get("id")
    description = runner.get("description")
    return replace(
        known,
        status=str(status),
        runner_id=runner_id
        if isinstance(runner_id, int) and not isinstance(runner_id, bool)
        else None,
        runner_description=description if isinstance(description, str) else None,
    )
