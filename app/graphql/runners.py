"""``runners``: GitLab CI jobs with their status timeline, the runners (EC2 instances,
containers) started for them with state and cost hints, the runner profiles, and a mutation to
terminate a runner by hand."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import strawberry
from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from strawberry.types import Info

from app.config import ConfigError
from app.db import utcnow
from app.graphql.context import CanWrite, Context, IsAuthenticated, in_session
from app.runners import manual
from app.runners.models import LIVE_RUNNER_STATES, Runner, RunnerJob, RunnerJobEvent
from app.runners.pool_policy import QUEUE_BUCKETS, histogram, running_cost, target
from app.runners.profiles import ContainerProfile, Ec2Profile, Profiles, load_profiles, subnets
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
        description="launching, idle (a warm-pool runner without a job), running, terminating, "
        "terminated or failed"
    )
    pool: bool = strawberry.field(description="Launched ahead of any job, in the warm pool.")
    uses: int = strawberry.field(description="Finished jobs it ran (a pool runner's max_use).")
    idle_since: datetime | None
    subnet_id: str | None
    provider_id: str | None = strawberry.field(description="EC2 instance id or container id")
    instance_type: str | None
    market: str | None = strawberry.field(description="spot or on-demand (EC2)")
    attempt: int
    gitlab_runner_id: int | None
    job_id: int | None = strawberry.field(
        description="The GitLab job bound to it (none: an idle pool runner)."
    )
    error: str | None
    created_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    running_minutes: float = strawberry.field(description="Started → stopped (or now).")
    cost_hint: str = strawberry.field(
        description="What is billed: instance type and market, running minutes."
    )
    estimated_cost: float | None = strawberry.field(
        description="Running hours times the profile's price for its type and market."
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
    runner: CiRunner | None = strawberry.field(
        description="The runner bound to it, else the one that ran it."
    )
    on_demand: bool = strawberry.field(description="A spot interruption's retry: on demand.")
    retry_of: int | None = strawberry.field(description="The interrupted job it retries.")
    seconds_to_assigned: float | None = strawberry.field(
        description="pending → a runner assigned (warm pool: at once; cold: launched)."
    )
    queue_seconds: float | None = strawberry.field(
        description="pending → running (GitLab's queue time); still queued: until now."
    )


@strawberry.type
class QueueBucket:
    le: float | None = strawberry.field(description="Upper bound in seconds; null is +Inf.")
    count: int = strawberry.field(description="Jobs queued at most this long (cumulative).")


@strawberry.type
class PoolStatus:
    idle_count: int = strawberry.field(description="Idle runners wanted now (schedule applied).")
    idle_time_seconds: int
    max_use: int
    idle: int = strawberry.field(description="Idle runners now.")
    launching: int


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
    pool: PoolStatus | None
    subnets: list[str] | None
    queue_time: list[QueueBucket] = strawberry.field(
        description="Histogram of the queue time of its jobs created in the window."
    )
    queue_seconds_p50: float | None
    jobs: int = strawberry.field(description="Jobs it took in the window.")
    estimated_cost: float | None = strawberry.field(
        description="Instance-hours in the window times its price table (null: no prices)."
    )


def _price(profiles: Profiles | None, row: Runner) -> float | None:
    profile = profiles.profiles.get(row.profile) if profiles is not None else None
    return profile.hourly_price(row.instance_type, row.market) if profile is not None else None


def _runner(
    row: Runner, job_id: int | None, now: datetime, profiles: Profiles | None = None
) -> CiRunner:
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
        pool=row.pool,
        uses=row.uses,
        idle_since=row.idle_since,
        subnet_id=row.subnet_id,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        stopped_at=row.stopped_at,
        running_minutes=minutes,
        cost_hint=f"{what}, {minutes:g} min",
        estimated_cost=running_cost(row.started_at, row.stopped_at, now, _price(profiles, row)),
        logs=redact(row.logs[-LOG_TAIL:]) if row.logs else None,
    )


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds()), 3)


def _jobs(session: Session, rows: list[RunnerJob], profiles: Profiles | None = None) -> list[CiJob]:
    """Jobs with their timelines and runners, in three extra queries (not one per job)."""
    ids = [r.id for r in rows]
    timelines: dict[int, list[JobStatusEvent]] = defaultdict(list)
    bound: dict[int, Runner] = {}
    by_name: dict[str, Runner] = {}
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
        for runner in session.scalars(select(Runner).where(Runner.job_pk.in_(ids))):
            if runner.job_pk is not None:
                bound[runner.job_pk] = runner
        ran_on = {r.ran_on for r in rows if r.ran_on and r.id not in bound}
        if ran_on:
            by_name = {
                r.name: r for r in session.scalars(select(Runner).where(Runner.name.in_(ran_on)))
            }
    now = utcnow()
    found: list[CiJob] = []
    for r in rows:
        marks = {event.status: event.at for event in reversed(timelines.get(r.id, []))}
        pending = marks.get("pending")
        shown = bound.get(r.id) or by_name.get(r.ran_on or "")
        queued_until = marks.get("running") or (None if r.finished_at else now)
        found.append(
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
                runner=_runner(shown, r.job_id, now, profiles) if shown is not None else None,
                on_demand=r.on_demand,
                retry_of=r.retry_of,
                seconds_to_assigned=_seconds(pending, marks.get("assigned")),
                queue_seconds=_seconds(pending, queued_until),
            )
        )
    return found


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
        rows = list(session.scalars(query.limit(max(1, min(limit, MAX_LIMIT)))))
        return _jobs(session, rows, profiles)

    profiles = await run_in_threadpool(_profiles_or_none, info)
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
        found = _jobs(session, rows, profiles)
        return found[0] if found else None

    profiles = await run_in_threadpool(_profiles_or_none, info)
    return await in_session(info.context.settings, work)


async def resolve_ci_runners(
    info: Info[Context, Any], include_stopped: bool = False, limit: int = 100
) -> list[CiRunner]:
    """Runners newest first; only live ones (launching, idle, running, terminating) by
    default."""

    def work(session: Session) -> list[CiRunner]:
        query = (
            select(Runner, RunnerJob.job_id)
            .outerjoin(RunnerJob, RunnerJob.id == Runner.job_pk)
            .order_by(Runner.created_at.desc())
        )
        if not include_stopped:
            query = query.where(Runner.state.in_((*LIVE_RUNNER_STATES, "terminating")))
        now = utcnow()
        rows = session.execute(query.limit(max(1, min(limit, MAX_LIMIT)))).all()
        return [_runner(runner, job_id, now, profiles) for runner, job_id in rows]

    profiles = await run_in_threadpool(_profiles_or_none, info)
    return await in_session(info.context.settings, work)


def _profiles(info: Info[Context, Any]) -> Profiles:
    try:
        return load_profiles(profiles_path(info.context.settings))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _profiles_or_none(info: Info[Context, Any]) -> Profiles | None:
    """For cost estimates only: a broken profiles file leaves them out, not the answer."""
    try:
        return _profiles(info)
    except ValueError:
        return None


@dataclass
class _ProfileFigures:
    live: int = 0
    idle: int = 0
    launching_pool: int = 0
    queue: list[float] = field(default_factory=list)
    jobs: int = 0
    cost: float = 0.0
    priced: bool = False


def _figures(
    session: Session, profiles: Profiles, since: datetime, now: datetime
) -> dict[str, _ProfileFigures]:
    """Per profile: live and idle runners now; queue times and instance-hour cost in the window
    (each runner's hours inside the window, at its type's and market's price)."""
    figures: dict[str, _ProfileFigures] = defaultdict(_ProfileFigures)
    for runner in session.scalars(
        select(Runner).where(or_(Runner.state.in_(LIVE_RUNNER_STATES), Runner.stopped_at >= since))
    ):
        figure = figures[runner.profile]
        if runner.state in LIVE_RUNNER_STATES:
            figure.live += 1
            figure.idle += runner.state == "idle"
            figure.launching_pool += runner.pool and runner.state == "launching"
        started = max(runner.started_at, since) if runner.started_at else None
        cost = running_cost(started, runner.stopped_at, now, _price(profiles, runner))
        if cost is not None:
            figure.cost += cost
            figure.priced = True
    marks: dict[int, dict[str, datetime]] = defaultdict(dict)
    jobs = dict(
        session.execute(
            select(RunnerJob.id, RunnerJob.profile).where(
                RunnerJob.created_at >= since, RunnerJob.profile.is_not(None)
            )
        ).all()
    )
    if jobs:
        for job_pk, status, at in session.execute(
            select(RunnerJobEvent.job_pk, RunnerJobEvent.status, RunnerJobEvent.at).where(
                RunnerJobEvent.job_pk.in_(list(jobs)),
                RunnerJobEvent.status.in_(("pending", "running")),
            )
        ):
            marks[job_pk][status] = at
    for job_pk, profile in jobs.items():
        figures[str(profile)].jobs += 1
        pending, running = marks[job_pk].get("pending"), marks[job_pk].get("running")
        if pending is not None and running is not None:
            figures[str(profile)].queue.append(max(0.0, (running - pending).total_seconds()))
    return figures


async def resolve_runner_profiles(
    info: Info[Context, Any], window_hours: int = 24
) -> list[RunnerProfile]:
    """The configured profiles (re-read from the file) with their live runners, warm pool, and
    queue time and estimated cost over the last ``window_hours``."""
    profiles = await run_in_threadpool(_profiles, info)
    now = utcnow()
    since = now - timedelta(hours=max(1, min(window_hours, 24 * 90)))

    def work(session: Session) -> dict[str, _ProfileFigures]:
        return _figures(session, profiles, since, now)

    figures = await in_session(info.context.settings, work)
    found: list[RunnerProfile] = []
    for name, p in profiles.profiles.items():
        ec2 = p if isinstance(p, Ec2Profile) else None
        box = p if isinstance(p, ContainerProfile) else None
        figure = figures.get(name, _ProfileFigures())
        pool = None
        if p.pool is not None:
            wanted = target(p.pool.idle_count, p.pool.idle_time, p.pool.policies(), now)
            pool = PoolStatus(
                idle_count=wanted.idle_count,
                idle_time_seconds=wanted.idle_time,
                max_use=p.pool.max_use,
                idle=figure.idle,
                launching=figure.launching_pool,
            )
        counts = histogram(figure.queue)
        found.append(
            RunnerProfile(
                name=name,
                kind=p.kind,
                tags=list(p.tags),
                default=name == profiles.default,
                run_untagged=p.run_untagged,
                max_concurrent=p.max_concurrent,
                live=figure.live,
                instance_types=list(ec2.instance_types) if ec2 else None,
                spot=ec2.spot if ec2 else None,
                max_lifetime_minutes=ec2.max_lifetime_minutes if ec2 else None,
                image=box.image if box else None,
                timeout_minutes=box.timeout_minutes if box else None,
                pool=pool,
                subnets=[str(x) for x in subnets(ec2) if x] if ec2 else None,
                queue_time=[
                    QueueBucket(le=bound, count=count)
                    for bound, count in zip([*QUEUE_BUCKETS, None], counts, strict=True)
                ],
                queue_seconds_p50=round(statistics.median(figure.queue), 3)
                if figure.queue
                else None,
                jobs=figure.jobs,
                estimated_cost=round(figure.cost, 4) if figure.priced else None,
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
        job = session.get(RunnerJob, runner.job_pk) if runner.job_pk is not None else None
        return _runner(runner, job.job_id if job else None, utcnow())

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
