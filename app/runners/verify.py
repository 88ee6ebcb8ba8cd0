"""Is a Job Hook true? Asked of GitLab's API before anything is launched or stopped.

The webhook only checks the token and its scope (it must answer GitLab fast and makes no API
call), so a holder of a project's token could still claim any job of that project. With
``SMOKEHOUSE_GITLAB_URL`` and an API token (``read_api``), the workflows' first steps ask GitLab:

- **pending** (``runners.plan-start``): the job exists *under the claimed project* (GitLab
  answers 404 for another project's job), its pipeline's project is that project, the claimed
  ``project.path_with_namespace`` is that project's path (path-scoped tokens rely on it), and
  GitLab says it is ``pending``. Otherwise nothing is launched and the job shows
  ``not verified: …`` (phase ``unverified``; phase ``failed`` when GitLab could not be asked, so
  the reconcile loop tries again).
- **finished** (``runners.plan-stop``): the same ownership checks, GitLab says the job is finished
  (success, failed, canceled, skipped), and the runner the hook names is the one GitLab says ran
  it. Otherwise nothing is stopped or recorded. A GitLab that cannot be asked is an error (the
  step is retried; an ephemeral runner powers itself off after its one job anyway).

Without the API nothing here runs: the token scope is then the only guard.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.config import Settings
from app.db import get_database, utcnow
from app.runners import lifecycle
from app.runners.gitlab import GitLabClient, GitLabError, GitLabUnavailable, gitlab_client
from app.runners.models import TERMINAL_STATUSES, Runner
from app.runners.transitions import JobFacts, is_terminal
from app.runners.webhook import WebhookRejected, payload_project

log = logging.getLogger("smokehouse.runners")

#: Our phases a refused pending hook may overwrite (never a job that is under way).
OVERWRITABLE_PHASES = ("received", "waiting", "unverified", "failed")


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""
    retry: bool = False  # GitLab could not be asked: try again later
    job: dict[str, Any] | None = None  # GitLab's view of the job, when it answered


def _owned(client: GitLabClient, facts: JobFacts, detail: dict[str, Any]) -> Verdict:
    """The job exists under the claimed project and the claimed path is that project's."""
    where = f"job {facts.job_id} of project {facts.project_id}"
    try:
        claimed_path = payload_project(detail)[1]
    except WebhookRejected as exc:
        return Verdict(False, exc.reason)
    try:
        job = client.job(facts.project_id, facts.job_id)
        if job is None:
            return Verdict(False, f"GitLab has no job {facts.job_id} in project {facts.project_id}")
        project = client.project(facts.project_id) if claimed_path else None
    except GitLabUnavailable as exc:
        return Verdict(False, f"GitLab could not be asked about {where}: {exc}", retry=True)
    except GitLabError as exc:
        return Verdict(
            False,
            f"GitLab refused to show {where} ({exc.status}: {exc.message}); "
            "the API token needs read_api on the project",
        )
    if job.get("id") != facts.job_id:
        return Verdict(False, f"GitLab answered job {job.get('id')!r} when asked for {where}")
    pipeline = job.get("pipeline")
    owner = pipeline.get("project_id") if isinstance(pipeline, dict) else None
    if isinstance(owner, int) and owner != facts.project_id:
        return Verdict(
            False, f"job {facts.job_id} belongs to project {owner}, not {facts.project_id}"
        )
    if claimed_path:
        real = project.get("path_with_namespace") if project is not None else None
        if not isinstance(real, str) or real.casefold() != claimed_path.casefold():
            return Verdict(
                False,
                f"project {facts.project_id} is {real or 'unknown to GitLab'}, not {claimed_path}",
            )
    return Verdict(True, job=job)


def verify_pending(client: GitLabClient, facts: JobFacts, detail: dict[str, Any]) -> Verdict:
    owned = _owned(client, facts, detail)
    if not owned.ok or owned.job is None:
        return owned
    status = owned.job.get("status")
    if status != "pending":
        return Verdict(False, f"GitLab says job {facts.job_id} is {status}, not pending")
    return owned


def verify_finished(client: GitLabClient, facts: JobFacts, detail: dict[str, Any]) -> Verdict:
    owned = _owned(client, facts, detail)
    if not owned.ok or owned.job is None:
        return owned
    status = owned.job.get("status")
    if status not in TERMINAL_STATUSES:
        return Verdict(False, f"GitLab says job {facts.job_id} is {status}, not finished")
    runner = owned.job.get("runner")
    ran_on = runner.get("id") if isinstance(runner, dict) else None
    if facts.runner_id is not None and ran_on != facts.runner_id:
        return Verdict(
            False,
            f"GitLab says job {facts.job_id} ran on runner {ran_on}, not {facts.runner_id}",
        )
    if facts.runner_id is None and facts.runner_description is not None:
        return Verdict(False, "the hook names a runner without its id")
    if facts.runner_id is None and ran_on is not None:
        return Verdict(False, f"GitLab says job {facts.job_id} ran on runner {ran_on}")
    return owned


def _client(settings: Settings) -> GitLabClient | None:
    return gitlab_client(settings.gitlab) if settings.gitlab.verify_jobs else None


def check_pending(
    settings: Settings,
    gitlab: str,
    facts: JobFacts,
    detail: dict[str, Any],
    event_id: str | None,
) -> dict[str, Any] | None:
    """For ``runners.plan-start``: None to go ahead (verified, or no GitLab API to ask), else
    its answer (``{"action": "skip", "reason": "not verified: …"}``), the reason recorded on the
    job; nothing is launched."""
    client = _client(settings)
    if client is None:
        return None
    try:
        verdict = verify_pending(client, facts, detail)
    finally:
        client.close()
    if verdict.ok:
        return None
    reason = f"not verified: {verdict.reason}"
    log.warning("pending job %s of project %s %s", facts.job_id, facts.project_id, reason)
    with get_database(settings.sqlalchemy_url).session() as session:
        # the payload is kept only for a retry (reconcile starts "failed" jobs again)
        job = lifecycle.record(
            session,
            gitlab,
            facts,
            utcnow(),
            event_id=event_id,
            payload=detail if verdict.retry else None,
        )
        own = session.scalar(select(Runner.name).where(Runner.job_pk == job.id))
        if own is None and job.phase in OVERWRITABLE_PHASES and not is_terminal(job.status):
            job.phase = "failed" if verdict.retry else "unverified"
            job.error = reason[:2000]
            job.updated_at = utcnow()
    return {"action": "skip", "reason": reason}


def check_finished(
    settings: Settings, facts: JobFacts, detail: dict[str, Any]
) -> dict[str, Any] | None:
    """For ``runners.plan-stop``: None to go ahead, else its answer (nothing to terminate),
    before anything is recorded. Raises GitLabUnavailable when GitLab cannot be asked (the
    step is retried)."""
    client = _client(settings)
    if client is None:
        return None
    try:
        verdict = verify_finished(client, facts, detail)
    finally:
        client.close()
    if verdict.ok:
        return None
    if verdict.retry:
        raise GitLabUnavailable(0, verdict.reason)
    reason = f"not verified: {verdict.reason}"
    log.warning(
        "finished job %s of project %s %s: nothing stopped", facts.job_id, facts.project_id, reason
    )
    return {"terminate": False, "InstanceIds": [], "runners": [], "reason": reason}
