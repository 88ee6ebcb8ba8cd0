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
retry all meet at one runner.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from app.config import Settings
from app.config.runners import TokenScope, parse_scope
from app.db import get_database
from app.runners.gitlab import GitLabClient, GitLabError
from app.runners.models import RunnerJob

log = logging.getLogger("smokehouse.runners")

START_MACHINE = "gitlab-start-runner"
HISTORY = timedelta(days=30)


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
        "smokehouse_recovered": True,
    }


def _served(
    settings: Settings, client: GitLabClient, now: datetime
) -> dict[int, tuple[str | None, str]]:
    """Project id -> (its path, the GitLab instance its jobs are recorded under)."""
    default_instance = (settings.gitlab.url or "gitlab").rstrip("/")
    served: dict[int, tuple[str | None, str]] = {}
    with get_database(settings.sqlalchemy_url).session() as session:
        rows = session.execute(
            select(RunnerJob.project_id, RunnerJob.project_name, func.max(RunnerJob.gitlab))
            .where(RunnerJob.created_at >= now - HISTORY)
            .group_by(RunnerJob.project_id, RunnerJob.project_name)
        ).all()
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
    from app.aws.errors import AwsError
    from app.workflows import service as workflows_service
    from app.workflows.service import scope as workflow_scope

    served = _served(settings, client, now)
    arn = workflow_scope(settings).state_machine(START_MACHINE)
    started = 0
    for project_id, (path, instance) in sorted(served.items()):
        try:
            pending = client.pending_jobs(project_id)
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
            name = f"recover-{job['id']}"
            event = {
                "id": name,
                "source": "smokehouse.runners",
                "detail-type": "Job Hook",
                "resources": [instance],
                "detail": job_hook(job, project_id, path),
            }
            try:
                workflows_service.start(settings, arn, name, json.dumps(event))
            except AwsError as exc:
                if exc.code != "ExecutionAlreadyExists":  # else: an earlier pass started it
                    log.warning("could not recover job %s: %s", job["id"], exc.message)
                continue
            except Exception as exc:
                log.warning("could not recover job %s: %s", job["id"], exc)
                continue
            log.warning(
                "job %s (project %s): pending, no webhook seen: started", job["id"], project_id
            )
            started += 1
    return started
