"""The reconcile loop: make EC2 and the container engine agree with the jobs, whatever was lost.

Webhooks get lost, workflows fail half-way and instances outlive their jobs; one pass
(``reconcile``, run by the scheduler every 60 s: ``runners-reconcile`` in the beat schedule):

* terminates instances/containers tagged ``smokehouse:job-id`` that we have no runner for, whose
  runner is no longer live, whose job finished (a lost or failed finish), that are older than
  their profile's max lifetime, or that stayed idle after their job was stolen;
* marks runners whose instance is gone (powered off after its one job) terminated, and runners
  stuck launching failed;
* starts the start workflow again for jobs whose runner failed to start (while attempts last)
  and for jobs waiting for a free slot of their profile;
* asks GitLab for the pending jobs of the projects it serves and starts runners for those whose
  webhook never arrived, and -- first thing in the pass -- for the status of every unfinished
  job that has a live runner, so a lost ``success``/``failed``/``canceled`` hook (or a job
  deleted from GitLab) stops its runner in this same pass instead of at its max lifetime
  (:mod:`app.runners.recover`);
* deletes the GitLab runner registration of every runner it marks terminated (as the stop
  workflow does), so no registration outlives its instance or container.

Delivery guarantee: a pass is at-least-once and every step is idempotent (terminating an
instance twice, recording a finish twice, deleting a runner twice -- GitLab's 404 counts as
done); a step that fails is reported in ``errors`` and retried by the next pass, never looped.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import get_database, utcnow
from app.runners import lifecycle
from app.runners.gitlab import GitLabClient, GitLabError, gitlab_client
from app.runners.interruptions import interrupted, retry, spot_terminated, unanswered
from app.runners.models import LIVE_RUNNER_STATES, Runner, RunnerJob
from app.runners.profiles import ContainerProfile, Ec2Profile, Profiles
from app.runners.settings import RunnersSettings
from app.runners.transitions import RunnerView, reclaim_reason
from app.secrets import delete_owned

log = logging.getLogger("smokehouse.runners")

START_MACHINE = "gitlab-start-runner"
JOB_TAG = "smokehouse:job-id"
RUNNER_TAG = "smokehouse:runner"
DEFAULT_LIFETIME = timedelta(hours=2)
WAKE_BATCH = 50


@dataclass
class ReconcileReport:
    terminated: dict[str, str] = field(default_factory=dict)  # instance/container → reason
    gone: list[str] = field(default_factory=list)  # runners whose instance had disappeared
    failed: list[str] = field(default_factory=list)  # runners stuck launching
    started: int = 0  # start workflows started again (retries and waiting jobs)
    recovered: int = 0  # pending jobs whose webhook was lost, started from GitLab's API
    finished: list[int] = field(default_factory=list)  # jobs whose lost finish GitLab told us
    forgotten: list[int] = field(default_factory=list)  # GitLab runners deleted with their runner
    interrupted: list[str] = field(default_factory=list)  # spot instances EC2 took back
    errors: list[str] = field(default_factory=list)


def _lifetime(profiles: Profiles, name: str | None) -> timedelta:
    profile = profiles.profiles.get(name or "")
    if isinstance(profile, Ec2Profile):
        return timedelta(minutes=profile.max_lifetime_minutes)
    if isinstance(profile, ContainerProfile):
        return timedelta(minutes=profile.timeout_minutes)
    return DEFAULT_LIFETIME


def view(
    session: Session, name: str | None, provider_id: str, created: datetime, profiles: Profiles
) -> tuple[RunnerView, Runner | None]:
    """Reconcile's view of one instance/container of ours, from our rows."""
    runner = session.get(Runner, name) if name else None
    if runner is None:
        runner = session.scalar(select(Runner).where(Runner.provider_id == provider_id))
    if runner is None:
        return (
            RunnerView(
                name or provider_id, None, created, DEFAULT_LIFETIME, False, None, False, False
            ),
            None,
        )
    job = session.get(RunnerJob, runner.job_pk) if runner.job_pk is not None else None
    state: str | None = runner.state
    if runner.provider_id is not None and runner.provider_id != provider_id:
        state = "replaced"  # a second instance for the same runner: not the recorded one
    terminal = job is not None and job.finished_at is not None
    ran_own = job is not None and (
        job.ran_on == runner.name
        or (runner.gitlab_runner_id is not None and job.ran_on_id == runner.gitlab_runner_id)
    )
    return (
        RunnerView(
            runner.name,
            state,
            created,
            _lifetime(profiles, runner.profile),
            terminal,
            job.finished_at if job is not None else None,
            lifecycle.runs_live_job(session, runner),
            ran_own,
        ),
        runner,
    )


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags") or []}


def our_instances(ec2: Any) -> list[dict[str, Any]]:
    """Instances tagged as ours that are not yet shutting down or terminated."""
    found: list[dict[str, Any]] = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "tag-key", "Values": [JOB_TAG]},
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "stopping", "stopped"],
            },
        ]
    )
    for page in pages:
        for reservation in page.get("Reservations", []):
            found.extend(reservation.get("Instances", []))
    return found


def _mark(
    session: Session, runner: Runner | None, reason: str, now: datetime, report: ReconcileReport
) -> None:
    """Record a runner terminated; its GitLab runner is deleted after the pass (``forgotten``),
    as the stop workflow does, so no registration outlives its instance."""
    if runner is None or runner.state == "terminated":
        return
    runner.state, runner.stopped_at, runner.updated_at = "terminated", now, now
    runner.error = runner.error or reason
    delete_owned(session, runner.name)  # the runner's token dies with it
    lifecycle.unbind_ended(session, runner, now)
    if runner.gitlab_runner_id is not None:
        report.forgotten.append(runner.gitlab_runner_id)


def reconcile_ec2(
    settings: Settings,
    runners: RunnersSettings,
    profiles: Profiles,
    ec2: Any,
    now: datetime,
    report: ReconcileReport,
) -> None:
    database = get_database(settings.sqlalchemy_url)
    instances = our_instances(ec2)
    idle = timedelta(seconds=runners.idle_seconds)
    grace = timedelta(seconds=runners.launch_timeout_seconds)
    doomed: dict[str, tuple[str, str | None]] = {}
    with database.session() as session:
        for instance in instances:
            instance_id = str(instance["InstanceId"])
            name = _tags(instance).get(RUNNER_TAG)
            launched = instance.get("LaunchTime") or now
            runner_view, runner = view(session, name, instance_id, launched, profiles)
            reason = reclaim_reason(runner_view, now, idle=idle, grace=grace)
            if reason is not None:
                doomed[instance_id] = (reason, runner.name if runner is not None else None)
    if doomed:
        try:
            ec2.terminate_instances(InstanceIds=sorted(doomed))
        except Exception as exc:  # next pass tries again
            report.errors.append(f"TerminateInstances: {exc}")
            doomed = {}
    seen = {str(i["InstanceId"]) for i in instances}
    with database.session() as session:
        for instance_id, (reason, name) in doomed.items():
            report.terminated[instance_id] = reason
            runner = session.get(Runner, name, with_for_update=True) if name else None
            if runner is not None and runner.provider_id == instance_id:
                _mark(session, runner, reason, now, report)
        live = session.scalars(
            select(Runner).where(
                Runner.kind == "ec2", Runner.state.in_((*LIVE_RUNNER_STATES, "terminating"))
            )
        ).all()
        vanished: list[str] = []
        for runner in live:
            if runner.provider_id is not None and runner.provider_id not in seen:
                if runner.provider_id not in doomed:
                    report.gone.append(runner.name)
                    vanished.append(runner.provider_id)
                _mark(session, runner, "instance gone", now, report)
            elif runner.provider_id is None and now - runner.updated_at > grace:
                report.failed.append(runner.name)
                lifecycle.fail_start(session, runner, "launch did not finish in time", now)
    for instance_id in spot_terminated(ec2, vanished):  # EC2 took spot capacity back
        report.interrupted.append(instance_id)
        interrupted(settings, instance_id, now)


def reconcile_containers(
    settings: Settings,
    runners: RunnersSettings,
    profiles: Profiles,
    engine: Any,
    now: datetime,
    report: ReconcileReport,
) -> None:
    database = get_database(settings.sqlalchemy_url)
    idle = timedelta(seconds=runners.idle_seconds)
    grace = timedelta(seconds=runners.launch_timeout_seconds)
    containers = engine.list_ours()
    doomed: dict[str, str] = {}
    with database.session() as session:
        for container in containers:
            if container.is_expired(now):
                doomed[container.name] = "over its timeout"
                continue
            name = container.labels.get(RUNNER_TAG, container.name)
            created = container.started_at or now
            runner_view, _ = view(session, name, container.id, created, profiles)
            if container.status in ("exited", "dead"):
                doomed[container.name] = "exited"
                continue
            reason = reclaim_reason(runner_view, now, idle=idle, grace=grace)
            if reason is not None:
                doomed[container.name] = reason
    seen = {c.name for c in containers} - set(doomed)
    for name, reason in doomed.items():
        try:
            logs = engine.stop(name)
        except Exception as exc:
            report.errors.append(f"stop container {name}: {exc}")
            continue
        report.terminated[name] = reason
        with database.session() as session:
            runner = session.get(Runner, name, with_for_update=True)
            if runner is not None:
                runner.logs = logs if logs is not None else runner.logs
                _mark(session, runner, reason, now, report)
    with database.session() as session:
        live = session.scalars(
            select(Runner).where(
                Runner.kind == "container",
                Runner.state.in_((*LIVE_RUNNER_STATES, "terminating")),
                Runner.provider_id.is_not(None),
            )
        ).all()
        for runner in live:
            if runner.name not in seen and runner.name not in doomed:
                report.gone.append(runner.name)
                _mark(session, runner, "container gone", now, report)


def _restart_inputs(
    session: Session, profiles: Profiles, runners: RunnersSettings
) -> list[tuple[int, str, dict[str, Any]]]:
    """Jobs to start again: failed starts with attempts left, and waiting jobs that fit."""
    chosen: list[tuple[int, str, dict[str, Any]]] = []
    failed = session.scalars(
        select(RunnerJob)
        .where(
            RunnerJob.phase == "failed",
            RunnerJob.finished_at.is_(None),
            RunnerJob.ran_on.is_(None),
            RunnerJob.start_attempts < runners.max_start_attempts,
        )
        .order_by(RunnerJob.created_at)
        .limit(WAKE_BATCH)
    ).all()
    chosen.extend((j.id, j.gitlab, j.payload) for j in failed if j.payload)
    chosen.extend(_waiting(session, profiles))
    return chosen


def _waiting(session: Session, profiles: Profiles) -> list[tuple[int, str, dict[str, Any]]]:
    chosen: list[tuple[int, str, dict[str, Any]]] = []
    waiting = session.scalars(
        select(RunnerJob)
        .where(
            RunnerJob.phase == "waiting",
            RunnerJob.finished_at.is_(None),
            RunnerJob.ran_on.is_(None),
        )
        .order_by(RunnerJob.created_at)
        .limit(WAKE_BATCH)
    ).all()
    free: dict[str, int] = {}
    for job in waiting:
        name = job.profile or ""
        profile = profiles.profiles.get(name)
        if profile is None or not job.payload:
            continue
        if name not in free:
            free[name] = profile.max_concurrent - lifecycle.live_count(session, name)
        if free[name] > 0:
            free[name] -= 1
            chosen.append((job.id, job.gitlab, job.payload))
    return chosen


def start_again(settings: Settings, jobs: Iterable[tuple[int, str, dict[str, Any]]]) -> int:
    """Start the start workflow for each job (its last pending payload); duplicates are
    harmless, since only one execution can reserve a job's runner."""
    from app.workflows import service as workflows_service
    from app.workflows.service import scope

    arn = scope(settings).state_machine(START_MACHINE)
    started = 0
    for job_pk, gitlab, payload in jobs:
        name = f"restart-{job_pk}-{uuid.uuid4().hex[:12]}"
        event = {
            "id": name,
            "source": "smokehouse.runners",
            "resources": [gitlab],
            "detail": payload,
        }
        try:
            workflows_service.start(settings, arn, name, json.dumps(event))
            started += 1
        except Exception as exc:
            log.warning("could not start %s again for job %s: %s", START_MACHINE, job_pk, exc)
    return started


def wake_waiting(settings: Settings, profiles: Profiles) -> int:
    """Start jobs waiting for a slot of their profile (after a runner stopped)."""
    with get_database(settings.sqlalchemy_url).session() as session:
        jobs = _waiting(session, profiles)
    return start_again(settings, jobs) if jobs else 0


def reconcile(
    settings: Settings,
    runners: RunnersSettings,
    profiles: Profiles,
    *,
    now: datetime | None = None,
    ec2: Any | None = None,
    containers: Any | None = None,
) -> ReconcileReport:
    """One pass. ``ec2`` is a boto3 EC2 client (default: from AWS's standard configuration);
    ``containers`` a :class:`~app.runners.containers.ContainerRunners` (default: one when a
    container profile exists)."""
    now = now or utcnow()
    report = ReconcileReport()
    client = gitlab_client(settings.gitlab)  # None: no GitLab API, lost hooks cannot be found
    try:
        _pass(settings, runners, profiles, now, ec2, containers, client, report)
    finally:
        if client is not None:
            client.close()
    for problem in report.errors:
        log.warning("reconcile: %s", problem)
    return report


def _pass(
    settings: Settings,
    runners: RunnersSettings,
    profiles: Profiles,
    now: datetime,
    ec2: Any | None,
    containers: Any | None,
    client: GitLabClient | None,
    report: ReconcileReport,
) -> None:
    from app.runners.recover import recover_lost_finishes, recover_lost_jobs

    if client is not None:  # first, so this same pass stops what a lost finish left running
        report.finished = recover_lost_finishes(settings, client, now, report.errors, profiles)
    kinds: set[str] = {p.kind for p in profiles.profiles.values()}
    with get_database(settings.sqlalchemy_url).session() as session:
        kinds |= set(session.scalars(select(Runner.kind).distinct()).all())
    if ec2 is not None or "ec2" in kinds:
        try:
            if ec2 is None:
                import boto3

                ec2 = boto3.client("ec2")
            reconcile_ec2(settings, runners, profiles, ec2, now, report)
        except Exception as exc:  # no AWS configuration, EC2 unreachable: said, next pass
            report.errors.append(f"ec2: {exc}")
    own_engine = containers is None and "container" in kinds
    if own_engine:
        from app.runners.containers import ContainerRunners

        containers = ContainerRunners()
    if containers is not None:
        try:
            reconcile_containers(settings, runners, profiles, containers, now, report)
        except Exception as exc:
            report.errors.append(f"containers: {exc}")
        finally:
            if own_engine:
                containers.close()
    with get_database(settings.sqlalchemy_url).session() as session:
        jobs = _restart_inputs(session, profiles, runners)
    report.started = start_again(settings, jobs) if jobs else 0
    if client is None:
        return
    for runner_id in report.forgotten:
        try:
            client.delete_runner(runner_id)
        except GitLabError as exc:  # GitLab drops stale ephemeral runners itself, eventually
            report.errors.append(f"delete GitLab runner {runner_id}: {exc}")
    try:
        report.recovered = recover_lost_jobs(settings, client, now)
    except GitLabError as exc:
        report.errors.append(f"gitlab: {exc}")
    with get_database(settings.sqlalchemy_url).session() as session:
        claims = unanswered(session, now)
    for job_pk in claims:  # interruptions GitLab could not retry when they came
        if retry(settings, job_pk) is None:
            report.errors.append(f"gitlab: job row {job_pk} interrupted, still not retried")
