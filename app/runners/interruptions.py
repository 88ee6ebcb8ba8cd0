"""Spot interruptions: EC2 takes a spot instance back, the job it was running is retried through
GitLab's API, and the retry's runner is launched on demand.

Two ways in, both at least once:

* the bus: EC2's ``EC2 Spot Instance Interruption Warning`` (source ``aws.ec2``, sent two
  minutes ahead), forwarded by the operator to ``PutEvents``; the shipped rule
  ``gitlab-spot-interruption`` sends it to ``runners.spot-interrupted``;
* reconcile: a runner's instance found terminated with ``StateReason``
  ``Server.SpotInstanceTermination`` (no forwarding needed, up to a pass late).

Duplicates are absorbed by the job's timeline: the first ``interrupted`` mark (unique per job)
is the claim, so one interruption asks GitLab once. The job is canceled (a running job cannot
be retried) and retried; GitLab answers with the new job, which is recorded ``on_demand`` with
``retry_of`` and started at once (its own pending hook then finds it started). When GitLab
cannot be asked, the claim stays without a ``retried`` mark and reconcile asks again after
:data:`RETRY_AFTER`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased

from app.config import Settings
from app.db import get_database, utcnow
from app.runners import lifecycle
from app.runners.gitlab import GitLabClient, GitLabError, gitlab_client
from app.runners.models import LIVE_RUNNER_STATES, Runner, RunnerJob, RunnerJobEvent
from app.runners.transitions import job_facts

log = logging.getLogger("smokehouse.runners")

SPOT_REASON = "Server.SpotInstanceTermination"
WARNING = "EC2 Spot Instance Interruption Warning"
#: A claim older than this without a ``retried`` mark is asked of GitLab again by reconcile...
RETRY_AFTER = timedelta(seconds=60)
#: ... until it is this old: then it is left alone (logged once a pass, never looped forever).
GIVE_UP_AFTER = timedelta(hours=1)


def _job_on(session: Session, runner: Runner) -> RunnerJob | None:
    """The unfinished job the runner runs (GitLab's word), else the one bound to it."""
    running = session.scalar(
        select(RunnerJob)
        .where(RunnerJob.ran_on == runner.name, RunnerJob.finished_at.is_(None))
        .with_for_update()
    )
    if running is not None or runner.job_pk is None:
        return running
    bound = session.get(RunnerJob, runner.job_pk, with_for_update=True)
    return bound if bound is not None and bound.finished_at is None else None


def interrupted(
    settings: Settings, instance_id: str, now: datetime | None = None
) -> dict[str, Any]:
    """EC2 is taking ``instance_id`` back: claim its job and have GitLab retry it."""
    now = now or utcnow()
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        runner = session.scalar(
            select(Runner)
            .where(Runner.provider_id == instance_id, Runner.kind == "ec2")
            .with_for_update()
        )
        if runner is None:
            return {"handled": False, "reason": "not one of our runners"}
        if runner.market != "spot":  # a forged or misrouted warning retries nothing
            return {"handled": False, "reason": f"runner {runner.name} is not a spot instance"}
        runner.error = runner.error or f"spot instance {instance_id} interrupted"
        if runner.state in LIVE_RUNNER_STATES:
            runner.state, runner.updated_at = "terminating", now  # EC2 ends it; reconcile marks
        job = _job_on(session, runner)
        if job is None:
            return {"handled": True, "job": None}
        if not lifecycle.timeline(session, job, "interrupted", now, runner=runner.name):
            return {"handled": True, "job": job.job_id, "retried": None}  # a duplicate
        job.error, job.updated_at = f"spot instance {instance_id} interrupted", now
        job_pk, job_id = job.id, job.job_id
    from app.runners.metrics import INTERRUPTIONS

    INTERRUPTIONS.inc()
    return {"handled": True, "job": job_id, "retried": retry(settings, job_pk)}


def retry(settings: Settings, job_pk: int) -> int | None:
    """Cancel and retry an interrupted job with GitLab, record the new job on demand and start
    it; returns the new job's id (None when GitLab could not be asked: reconcile asks later)."""
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        job = session.get(RunnerJob, job_pk)
        if job is None:
            return None
        project_id, job_id = job.project_id, job.job_id
    client = gitlab_client(settings.gitlab)
    if client is None:
        log.warning("job %s: spot interruption, but no GitLab API to retry it with", job_id)
        return None
    try:
        new = _retry_with(client, project_id, job_id)
    except GitLabError as exc:
        log.warning("job %s: spot interruption, GitLab did not retry it: %s", job_id, exc)
        return None
    finally:
        client.close()
    new_id = int(new["id"])
    with database.session() as session:
        job = session.get(RunnerJob, job_pk, with_for_update=True)
        assert job is not None
        now = utcnow()
        lifecycle.timeline(session, job, "retried", now, event_id=str(new_id))
        replacement = _record_retry(session, job, new_id, now)
        start = (replacement.id, replacement.gitlab, dict(replacement.payload or {}))
    from app.runners.reconcile import start_again

    start_again(settings, [start])
    log.info("job %s: spot interruption, retried as job %s on demand", job_id, new_id)
    return new_id


def _retry_with(client: GitLabClient, project_id: int, job_id: int) -> dict[str, Any]:
    client.cancel_job(project_id, job_id)  # a running job is not retryable; finished: no-op
    return client.retry_job(project_id, job_id)


def _record_retry(session: Session, job: RunnerJob, new_id: int, now: datetime) -> RunnerJob:
    """The retry's row, on demand (its own pending hook may have made it already)."""
    payload = {
        **(job.payload or {}),
        "object_kind": "build",
        "build_id": new_id,
        "build_status": "pending",
        "project_id": job.project_id,
        "build_name": job.job_name,
        "runner": None,
    }
    payload.setdefault("project", {"id": job.project_id, "path_with_namespace": job.project_name})
    replacement = lifecycle.record(session, job.gitlab, job_facts(payload), now, payload=payload)
    replacement.on_demand, replacement.retry_of = True, job.job_id
    session.flush()
    return replacement


def spot_terminated(ec2: Any, instance_ids: list[str]) -> list[str]:
    """Of these instances, those EC2 terminated to take spot capacity back."""
    if not instance_ids:
        return []
    found: list[str] = []
    try:
        pages = ec2.get_paginator("describe_instances").paginate(InstanceIds=instance_ids)
        for page in pages:
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    if (instance.get("StateReason") or {}).get("Code") == SPOT_REASON:
                        found.append(str(instance["InstanceId"]))
    except Exception as exc:  # e.g. InvalidInstanceID.NotFound once EC2 forgot them
        log.info("could not look for spot interruptions: %s", exc)
    return found


def unanswered(session: Session, now: datetime) -> list[int]:
    """Jobs claimed as interrupted longer than :data:`RETRY_AFTER` (and less than
    :data:`GIVE_UP_AFTER`) ago that GitLab never retried."""
    claim, done = aliased(RunnerJobEvent), aliased(RunnerJobEvent)
    rows = session.execute(
        select(claim.job_pk)
        .outerjoin(done, and_(done.job_pk == claim.job_pk, done.status == "retried"))
        .where(
            claim.status == "interrupted",
            claim.at < now - RETRY_AFTER,
            claim.at > now - GIVE_UP_AFTER,
            done.id.is_(None),
        )
        .limit(20)
    ).all()
    return [int(job_pk) for (job_pk,) in rows]
