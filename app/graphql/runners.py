"""``runners``: GitLab CI jobs with their status timeline, the runners (EC2 instances,
containers) started for them with state and cost hints, the runner profiles, and a mutation to
terminate a runner by hand."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from strawberry.types import Info

from app.config import ConfigError
from app.db import utcnow
from app.graphql.context import CanWrite, Context, IsAuthenticated, in_session
from app.runners import manual
from app.runners.models import LIVE_RUNNER_STATES, Runner, RunnerJob, RunnerJobEvent
from app.runners.profiles import ContainerProfile, Ec2Profile, Profiles, load_profiles
from app.runners.settings import profiles_path
from app.secrets.redact import redact

MAX_LIMIT = 500
LOG_TAIL = 8192


@strawberry.type
class JobStatusEvent:
    status: str
    at: datetime
    runner: str | None = strawberry.field(description="runner.description, once one ran it")


@strawberry.type
class CiRunner:
    name: str = strawberry.field(description="Also the GitLab runner's description.")
    kind: str = strawberry.field(description="ec2 or container")
    profile: str
    state: str = strawberry.field(
        description="launching, running, terminating, terminated or failed"
    )
    provider_id: str | None = strawberry.field(description="EC2 instance id or container id")
    instance_type: str | None
    market: str | None = strawberry.field(description="spot or on-demand (EC2)")
    attempt: int
    gitlab_runner_id: int | None
    job_id: int = strawberry.field(description="The GitLab job it was started for.")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    running_minutes: float = strawberry.field(description="Started → stopped (or now).")
    cost_hint: str = strawberry.field(
        description="What is billed: instance type and market, running minutes."
    )
    logs: str | None = strawberry.field(description="Tail of a container's captured logs.")


@strawberry.type
class CiJob:
    gitlab: str = strawberry.field(description="The GitLab instance (X-Gitlab-Instance).")
    job_id: int
    project_id: int
    project: str | None
    pipeline_id: int | None
    name: str
    stage: str | None
    ref: str | None
    status: str = strawberry.field(description="GitLab's build_status, latest that counts.")
    phase: str = strawberry.field(
        description="received, waiting, launching, running, finished, unmatched or failed"
    )
    profile: str | None
    tags: list[str] | None
    tags_source: str | None = strawberry.field(description="gitlab (API) or map (fallback)")
    ran_on: str | None = strawberry.field(description="The runner that ran it (may be stolen).")
    start_attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    timeline: list[JobStatusEvent]
    runner: CiRunner | None


@strawberry.type
class RunnerProfile:
    name: str
    kind: str
    tags: list[str]
    default: bool
    run_untagged: bool
    max_concurrent: int
    live: int = strawberry.field(description="Runners launching or running now.")
    instance_types: list[str] | None
    spot: bool | None
    max_lifetime_minutes: int | None
    image: str | None
    timeout_minutes: int | None


def _runner(row: Runner, job_id: int, now: datetime) -> CiRunner:
    minutes = 0.0
    if row.started_at is not None:
        minutes = round(((row.stopped_at or now) - row.started_at).total_seconds() / 60, 2)
    what = (
        f"{row.instance_type or '?'} {row.market or 'on-demand'}"
        if row.kind == "ec2"
        else "container"
    )
    return CiRunner(
        name=row.name,
        kind=row.kind,
        profile=row.profile,
        state=row.state,
        provider_id=row.provider_id,
        instance_type=row.instance_type,
        market=row.market,
        attempt=row.attempt,
        gitlab_runner_id=row.gitlab_runner_id,
        job_id=job_id,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        stopped_at=row.stopped_at,
        running_minutes=minutes,
        cost_hint=f"{what}, {minutes:g} min",
        logs=redact(row.logs[-LOG_TAIL:]) if row.logs else None,
    )


def _jobs(session: Session, rows: list[RunnerJob]) -> list[CiJob]:
    """Jobs with their timelines and runners, in two extra queries (not one per job)."""
    ids = [r.id for r in rows]
    timelines: dict[int, list[JobStatusEvent]] = defaultdict(list)
    runners: dict[int, Runner] = {}
    if ids:
        events = session.scalars(
            select(RunnerJobEvent)
            .where(RunnerJobEvent.job_pk.in_(ids))
            .order_by(RunnerJobEvent.at, RunnerJobEvent.id)
        )
        for event in events:
            timelines[event.job_pk].append(
                JobStatusEvent(status=event.status, at=event.at, runner=event.runner)
            )
        runners = {
            r.job_pk: r for r in session.scalars(select(Runner).where(Runner.job_pk.in_(ids)))
        }
    now = utcnow()
    return [
        CiJob(
            gitlab=r.gitlab,
            job_id=r.job_id,
            project_id=r.project_id,
            project=r.project_name,
            pipeline_id=r.pipeline_id,
            name=r.job_name,
            stage=r.stage,
            ref=r.ref,
            status=r.status,
            phase=r.phase,
            profile=r.profile,
            tags=list(r.tags) if r.tags is not None else None,
            tags_source=r.tags_source,
            ran_on=r.ran_on,
            start_attempts=r.start_attempts,
            error=r.error,
            created_at=r.created_at,
            updated_at=r.updated_at,
            finished_at=r.finished_at,
            timeline=timelines.get(r.id, []),
            runner=_runner(runners[r.id], r.job_id, now) if r.id in runners else None,
        )
        for r in rows
    ]


async def resolve_ci_jobs(
    info: Info[Context, Any],
    status: str | None = None,
    phase: str | None = None,
    project_id: int | None = None,
    limit: int = 50,
) -> list[CiJob]:
    """GitLab jobs, newest first."""

    def work(session: Session) -> list[CiJob]:
        query = select(RunnerJob).order_by(RunnerJob.created_at.desc(), RunnerJob.id.desc())
        if status is not None:
            query = query.where(RunnerJob.status == status)
        if phase is not None:
            query = query.where(RunnerJob.phase == phase)
        if project_id is not None:
            query = query.where(RunnerJob.project_id == project_id)
        return _jobs(session, list(session.scalars(query.limit(max(1, min(limit, MAX_LIMIT))))))

    return await in_session(info.context.settings, work)


async def resolve_ci_job(
    info: Info[Context, Any], job_id: int, gitlab: str | None = None
) -> CiJob | None:
    """One job by id (``gitlab`` picks the instance when several send webhooks)."""

    def work(session: Session) -> CiJob | None:
        query = select(RunnerJob).where(RunnerJob.job_id == job_id)
        if gitlab is not None:
            query = query.where(RunnerJob.gitlab == gitlab)
        rows = list(session.scalars(query.order_by(RunnerJob.id.desc()).limit(1)))
        found = _jobs(session, rows)
        return found[0] if found else None

    return await in_session(info.context.settings, work)


async def resolve_ci_runners(
    info: Info[Context, Any], include_stopped: bool = False, limit: int = 100
) -> list[CiRunner]:
    """Runners newest first; only live ones (launching, running, terminating) by default."""

    def work(session: Session) -> list[CiRunner]:
        query = (
            select(Runner, RunnerJob.job_id)
            .join(RunnerJob, RunnerJob.id == Runner.job_pk)
            .order_by(Runner.created_at.desc())
        )
        if not include_stopped:
            query = query.where(Runner.state.in_((*LIVE_RUNNER_STATES, "terminating")))
        now = utcnow()
        rows = session.execute(query.limit(max(1, min(limit, MAX_LIMIT)))).all()
        return [_runner(runner, job_id, now) for runner, job_id in rows]

    return await in_session(info.context.settings, work)


def _profiles(info: Info[Context, Any]) -> Profiles:
    try:
        return load_profiles(profiles_path(info.context.settings))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


async def resolve_runner_profiles(info: Info[Context, Any]) -> list[RunnerProfile]:
    """The configured profiles (re-read from the file) with their live runner counts."""
    profiles = await run_in_threadpool(_profiles, info)

    def work(session: Session) -> dict[str, int]:
        rows = session.execute(
            select(Runner.profile, func.count())
            .where(Runner.state.in_(LIVE_RUNNER_STATES))
            .group_by(Runner.profile)
        ).all()
        return {str(name): int(count) for name, count in rows}

    live = await in_session(info.context.settings, work)
    found: list[RunnerProfile] = []
    for name, p in profiles.profiles.items():
        ec2 = p if isinstance(p, Ec2Profile) else None
        box = p if isinstance(p, ContainerProfile) else None
        found.append(
            RunnerProfile(
                name=name,
                kind=p.kind,
                tags=list(p.tags),
                default=name == profiles.default,
                run_untagged=p.run_untagged,
                max_concurrent=p.max_concurrent,
                live=live.get(name, 0),
                instance_types=list(ec2.instance_types) if ec2 else None,
                spot=ec2.spot if ec2 else None,
                max_lifetime_minutes=ec2.max_lifetime_minutes if ec2 else None,
                image=box.image if box else None,
                timeout_minutes=box.timeout_minutes if box else None,
            )
        )
    return found


async def resolve_terminate_runner(info: Info[Context, Any], name: str) -> CiRunner:
    """Terminate a runner's instance (or stop its container) now, whatever its job does."""
    settings = info.context.settings
    try:
        await run_in_threadpool(manual.terminate_runner, settings, name)
    except manual.UnknownRunner as exc:
        raise ValueError(str(exc)) from None

    def work(session: Session) -> CiRunner:
        runner = session.get(Runner, name)
        assert runner is not None
        job = session.get(RunnerJob, runner.job_pk)
        return _runner(runner, job.job_id if job else 0, utcnow())

    return await in_session(settings, work)


@strawberry.type
class RunnersQuery:
    ci_jobs: list[CiJob] = strawberry.field(
        resolver=resolve_ci_jobs, permission_classes=[IsAuthenticated]
    )
    ci_job: CiJob | None = strawberry.field(
        resolver=resolve_ci_job, permission_classes=[IsAuthenticated]
    )
    ci_runners: list[CiRunner] = strawberry.field(
        resolver=resolve_ci_runners, permission_classes=[IsAuthenticated]
    )
    runner_profiles: list[RunnerProfile] = strawberry.field(
        resolver=resolve_runner_profiles, permission_classes=[IsAuthenticated]
    )


@strawberry.type
class RunnersMutation:
    terminate_runner: CiRunner = strawberry.field(
        resolver=resolve_terminate_runner, permission_classes=[CanWrite]
    )
