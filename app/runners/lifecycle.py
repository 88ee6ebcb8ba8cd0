"""A job's runner, from pending to terminated: the database side of the start and stop
workflows. Services take a Session and never commit; the handlers open the transactions.

Exactly one runner per job: the job row is unique per (GitLab instance, job id) and the runner
row unique per job; the execution that inserts the runner row (``owner``) is the only one that
launches it, so duplicate pending webhooks (same or different ``Idempotency-Key``) and redelivered
tasks start one instance. The job row is locked (``FOR UPDATE`` on PostgreSQL) by every step
that reads-then-writes it, so a finish racing a launch is seen by one of them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.db import dialect_insert
from app.runners.models import LIVE_RUNNER_STATES, Runner, RunnerJob, RunnerJobEvent
from app.runners.profiles import ContainerProfile, Ec2Profile, Profiles
from app.runners.transitions import JobFacts, is_terminal, next_status, runner_name
from app.secrets import delete_owned, redact

log = logging.getLogger("smokehouse.runners")

#: EC2 errors after which the next subnet / market / instance type may still work. Through the
#: ``aws-sdk`` integration every EC2 error is ``Ec2.Ec2Exception`` and the cause carries EC2's
#: *message*, not its code (as on Step Functions), so both are recognised.
CAPACITY_ERRORS = re.compile(
    r"InsufficientInstanceCapacity|SpotMaxPriceTooLow|MaxSpotInstanceCountExceeded"
    r"|InsufficientCapacity|do not have sufficient .* capacity|no Spot capacity available"
    r"|Spot request price of .* is lower than|max spot instance count exceeded"
    r"|is not supported in your requested Availability Zone"
    r"|InsufficientFreeAddressesInSubnet|not enough free addresses in subnet",
    re.IGNORECASE | re.DOTALL,
)


def lock_job(session: Session, gitlab: str, job_id: int) -> RunnerJob | None:
    return session.scalar(
        select(RunnerJob)
        .where(RunnerJob.gitlab == gitlab, RunnerJob.job_id == job_id)
        .with_for_update()
    )


#: Marks the Job Hook reconcile made up from GitLab's API for a job whose hook was lost.
RECOVERED_MARK = "smokehouse_recovered"


def _adopt_recovered(
    gitlab: str, candidates: list[RunnerJob], *, recovered: bool
) -> RunnerJob | None:
    """The job reconcile recovered (from GitLab's API, under its best guess of the instance's
    name) that this hook, from instance ``gitlab``, is about: same job id, same project, made
    up by recovery (``candidates``: those rows, locked). It takes the hook's instance name, so
    the late hook meets that job and its one runner instead of making a second job row (a
    second runner). The hook's ``X-Gitlab-Instance`` is authoritative; the API's URL was only a
    guess.

    The other way round (``recovered``: this is recovery's made-up hook, e.g. its task
    redelivered after the real hook renamed the row), the job already recorded for that job
    id and project under another name is the one: recovery never adds a second row."""
    for job in candidates:
        if recovered:
            return job
        if isinstance(job.payload, dict) and job.payload.get(RECOVERED_MARK) is True:
            log.info("job %s: recovered under %s, its hook says %s", job.job_id, job.gitlab, gitlab)
            job.gitlab = gitlab
            return job
    return None


def _find_job(
    session: Session, gitlab: str, facts: JobFacts
) -> tuple[RunnerJob | None, list[RunnerJob]]:
    """The job's row, and the rows of the same job and project under other instance names
    (recovery's), all locked, in one query by job id."""
    rows = session.scalars(
        select(RunnerJob)
        .where(
            RunnerJob.job_id == facts.job_id,
            or_(RunnerJob.gitlab == gitlab, RunnerJob.project_id == facts.project_id),
        )
        .order_by(RunnerJob.id)
        .with_for_update()
    ).all()
    mine = next((job for job in rows if job.gitlab == gitlab), None)
    return mine, [job for job in rows if job.gitlab != gitlab]


def _insert_job(session: Session, gitlab: str, facts: JobFacts, now: datetime) -> RunnerJob | None:
    """Insert the job's row, or nothing if a concurrent event for the same job inserted it
    first (``ON CONFLICT DO NOTHING`` waits for that one to commit): one statement, no
    savepoint."""
    statement = (
        dialect_insert(session)(RunnerJob)
        .values(
            gitlab=gitlab,
            job_id=facts.job_id,
            project_id=facts.project_id,
            project_name=facts.project_path,
            pipeline_id=facts.pipeline_id,
            job_name=facts.job_name,
            stage=facts.stage,
            ref=facts.ref,
            status=facts.status,
            phase="received",
            start_attempts=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["gitlab", "job_id"])
        .returning(RunnerJob)
    )
    return session.scalars(statement).first()


def record(
    session: Session,
    gitlab: str,
    facts: JobFacts,
    now: datetime,
    *,
    event_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> RunnerJob:
    """Insert or update the job from one Job Hook and add the status to its timeline.

    The status only moves forward (:func:`next_status`); a late ``pending`` after ``success``
    changes nothing but the timeline."""
    job, others = _find_job(session, gitlab, facts)
    if job is None:
        recovered = isinstance(payload, dict) and payload.get(RECOVERED_MARK) is True
        job = _adopt_recovered(gitlab, others, recovered=recovered)
    created = False  # inserted here: no timeline mark can exist yet, nothing to look up
    if job is None:
        job = _insert_job(session, gitlab, facts, now)
        created = job is not None
        if job is None:  # a concurrent event for the same job inserted it first
            job = lock_job(session, gitlab, facts.job_id)
            assert job is not None
    job.status = next_status(job.status, facts.status)
    job.updated_at = now
    if payload is not None and facts.status == "pending":
        job.payload = payload
    if facts.runner_description is not None or facts.runner_id is not None:
        job.ran_on = facts.runner_description or job.ran_on
        job.ran_on_id = facts.runner_id if facts.runner_id is not None else job.ran_on_id
    if is_terminal(job.status) and job.finished_at is None:
        job.finished_at = now
        if job.phase != "unmatched":
            job.phase = "finished"
    first = timeline(
        session,
        job,
        facts.status,
        now,
        event_id=event_id,
        runner=facts.runner_description,
        fresh=created,
    )
    if first and not created and facts.status == "running":  # a new job was never pending
        _observe_queue_time(session, job, now)
    if facts.status == "running" and (facts.runner_description or facts.runner_id is not None):
        named = ours(session, facts.runner_description, facts.runner_id)
        if named is not None and named.pool:
            bind_running(session, job, named, now)
    session.flush()
    return job


def _observe_queue_time(session: Session, job: RunnerJob, now: datetime) -> None:
    from app.runners.metrics import QUEUE_SECONDS

    pending = session.scalar(
        select(RunnerJobEvent.at).where(
            RunnerJobEvent.job_pk == job.id, RunnerJobEvent.status == "pending"
        )
    )
    if pending is not None:
        QUEUE_SECONDS.labels(job.profile or "none").observe(
            max(0.0, (now - pending).total_seconds())
        )


def timeline(
    session: Session,
    job: RunnerJob,
    status: str,
    now: datetime,
    *,
    event_id: str | None = None,
    runner: str | None = None,
    fresh: bool = False,
) -> bool:
    """Add ``status`` to the job's timeline once (False when it is there already). Besides
    GitLab's statuses it holds our own marks: ``assigned`` (a runner is bound to the job),
    ``interrupted`` (its spot instance was taken back) and ``retried`` (GitLab retried it).
    ``fresh``: the job was inserted in this transaction, so it has no marks to look up."""
    if not fresh:
        seen = session.scalar(
            select(RunnerJobEvent.id).where(
                RunnerJobEvent.job_pk == job.id, RunnerJobEvent.status == status
            )
        )
        if seen is not None:
            return False
    session.add(
        RunnerJobEvent(job_pk=job.id, status=status, at=now, event_id=event_id, runner=runner)
    )
    return True


def bind_running(session: Session, job: RunnerJob, runner: Runner, now: datetime) -> None:
    """A pool runner reports running ``job``: it is busy whatever we predicted. GitLab hands a
    job to whichever matching runner asks first, so the idle runner we bound the job to may not
    be the one that took it: the two bindings are swapped (the job we had bound to this runner
    gets the one we had bound to ``job``, or none)."""
    runner.state, runner.idle_since, runner.updated_at = "running", None, now
    if runner.job_pk == job.id:
        return
    claimed = session.scalar(select(Runner).where(Runner.job_pk == job.id).with_for_update())
    other = runner.job_pk
    runner.job_pk = None
    session.flush()
    if claimed is not None and claimed.pool and not runs_live_job(session, claimed):
        claimed.job_pk, claimed.updated_at = other, now
        if other is None:
            claimed.state, claimed.idle_since = "idle", now
        session.flush()
        claimed = None
    if claimed is None:  # nothing (or a pool runner we just freed) is bound to the job now
        runner.job_pk = job.id
    timeline(session, job, "assigned", now, runner=runner.name)


def live_count(session: Session, profile: str, *, besides: str | None = None) -> int:
    query = select(func.count()).where(
        Runner.profile == profile, Runner.state.in_(LIVE_RUNNER_STATES)
    )
    if besides is not None:
        query = query.where(Runner.name != besides)
    return int(session.scalar(query) or 0)


@dataclass(frozen=True, slots=True)
class Reservation:
    """The outcome of :func:`reserve`: a runner to launch (``runner`` set) or why not."""

    runner: str | None
    profile: str | None
    reason: str
    resumed: bool = False  # this execution had reserved it already (a redelivered task)
    assigned: bool = False  # an idle pool runner was bound to the job: nothing to launch


def claim_idle(session: Session, job: RunnerJob, profile: str, now: datetime) -> Runner | None:
    """Bind the longest-idle runner of the profile's warm pool to ``job`` (skipping rows another
    transaction is claiming, so two jobs never take one runner)."""
    runner = session.scalar(
        select(Runner)
        .where(
            Runner.pool.is_(True),
            Runner.profile == profile,
            Runner.state == "idle",
            Runner.job_pk.is_(None),
        )
        .order_by(Runner.idle_since, Runner.name)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if runner is None:
        return None
    runner.job_pk, runner.state, runner.idle_since, runner.updated_at = job.id, "running", None, now
    job.phase, job.error = "assigned", None
    session.flush()
    timeline(session, job, "assigned", now, runner=runner.name)
    _count_assigned(profile, "warm")
    return runner


def _count_assigned(profile: str, how: str) -> None:
    from app.runners.metrics import ASSIGNED

    ASSIGNED.labels(profile, how).inc()


def reserve(
    session: Session,
    job: RunnerJob,
    profiles: Profiles,
    tags: list[str],
    tags_source: str,
    owner: str,
    now: datetime,
    *,
    max_attempts: int,
) -> Reservation:
    """Take the job's one runner slot for ``owner`` (an execution ARN), within the profile's
    concurrency; a job at capacity waits (reconcile starts it when a slot frees)."""
    if is_terminal(job.status):
        return Reservation(None, job.profile, f"job already {job.status}")
    existing = session.scalar(select(Runner).where(Runner.job_pk == job.id))
    if existing is not None:
        if existing.pool:
            return Reservation(None, existing.profile, f"runner {existing.name} is assigned")
        if existing.owner == owner and existing.state == "launching":
            return Reservation(existing.name, existing.profile, "resumed", resumed=True)
        if existing.state != "failed":
            return Reservation(None, existing.profile, f"runner {existing.name} already exists")
        if job.start_attempts >= max_attempts:
            return Reservation(None, existing.profile, "no start attempts left")
    if job.ran_on is not None:  # "running" came first: a runner has it already
        return Reservation(None, job.profile, f"job already taken by {job.ran_on}")
    job.tags, job.tags_source = list(tags), tags_source
    profile_name = profiles.select(tags)
    if profile_name is None:
        job.phase, job.profile = "unmatched", None
        job.error = f"no runner profile takes the tags {sorted(tags)}"
        return Reservation(None, None, job.error)
    profile = profiles.profiles[profile_name]
    job.profile = profile_name
    if existing is None and profile.pool is not None and not job.on_demand:
        warm = claim_idle(session, job, profile_name, now)
        if warm is not None:
            return Reservation(warm.name, profile_name, "assigned", assigned=True)
    if live_count(session, profile_name) >= profile.max_concurrent:
        job.phase = "waiting"
        return Reservation(None, profile_name, "waiting for capacity")
    name = runner_name(job.gitlab, job.job_id)
    if existing is None:
        existing = Runner(name=name, job_pk=job.id, attempt=1, created_at=now)
        session.add(existing)
    else:
        existing.attempt += 1
    existing.kind, existing.profile, existing.state = profile.kind, profile_name, "launching"
    existing.owner, existing.option, existing.error = owner, 0, None
    existing.provider_id, existing.instance_type, existing.market = None, None, None
    existing.updated_at = now
    job.phase, job.error = "launching", None
    job.start_attempts += 1
    session.flush()
    return Reservation(name, profile_name, "reserved")


def fail_start(session: Session, runner: Runner, error: str, now: datetime) -> None:
    """The runner could not be started: reported on the job; reconcile may try again."""
    error = redact(error)  # an engine's or EC2's message may quote what it was given
    runner.state, runner.error, runner.updated_at, runner.stopped_at = "failed", error, now, now
    delete_owned(session, runner.name)  # its token is useless now; a new start makes another
    if runner.job_pk is None:
        return
    job = session.get(RunnerJob, runner.job_pk, with_for_update=True)
    if job is not None and not is_terminal(job.status):
        job.phase, job.error, job.updated_at = "failed", error, now


def launched(
    session: Session,
    name: str,
    provider_id: str,
    now: datetime,
    *,
    instance_type: str | None = None,
    market: str | None = None,
    subnet_id: str | None = None,
) -> bool:
    """Record the started instance/container; True when it must be stopped at once (its job
    finished while it was launching, or it was stopped by hand)."""
    runner = session.get(Runner, name, with_for_update=True)
    if runner is None:
        return True  # not ours any more
    job = (
        session.get(RunnerJob, runner.job_pk, with_for_update=True)
        if runner.job_pk is not None
        else None
    )
    runner.provider_id = provider_id
    runner.instance_type = instance_type or runner.instance_type
    runner.market = market or runner.market
    runner.subnet_id = subnet_id or runner.subnet_id
    runner.started_at = runner.started_at or now
    runner.updated_at = now
    if runner.state == "launching":
        runner.state = "idle" if runner.pool and job is None else "running"
        runner.idle_since = now if runner.state == "idle" else None
    stop = runner.state not in LIVE_RUNNER_STATES
    if job is not None and is_terminal(job.status) and job.ran_on in (None, name):
        stop = True  # finished before we knew the instance: the finish found nothing to stop
    if stop:
        runner.state = "terminating"
    elif job is not None:
        job.phase = "running"
        if timeline(session, job, "assigned", now, runner=name):
            _count_assigned(runner.profile, "cold")
    return stop


@dataclass(frozen=True, slots=True)
class StopPlan:
    instance_ids: list[str]
    runners: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "terminate": bool(self.instance_ids),
            "InstanceIds": self.instance_ids,
            "runners": self.runners,
        }


def runs_live_job(session: Session, runner: Runner) -> bool:
    """Some unfinished job reports this runner as the one running it."""
    found = session.scalar(
        select(RunnerJob.id).where(
            RunnerJob.ran_on == runner.name,
            RunnerJob.finished_at.is_(None),
        )
    )
    return found is not None


def ours(session: Session, description: str | None, runner_id: int | None) -> Runner | None:
    """The runner of ours a Job Hook names (by GitLab runner id, else description)."""
    if runner_id is not None:
        found = session.scalar(select(Runner).where(Runner.gitlab_runner_id == runner_id))
        if found is not None:
            return found
    return session.get(Runner, description) if description else None


def plan_stop(
    session: Session, job: RunnerJob, facts: JobFacts, now: datetime, profiles: Profiles
) -> StopPlan:
    """A job finished: stop the runner that actually ran it; the job's own runner too when
    nothing picked it (the job never ran); a stolen job's own runner is left to the idle
    reclaim, since it may be running someone else's job by now. A warm-pool runner goes back
    to its pool instead while it has ``max_use`` left (and when it never ran the job)."""
    to_stop: list[Runner] = []
    actual = ours(session, facts.runner_description, facts.runner_id)
    own = session.scalar(select(Runner).where(Runner.job_pk == job.id).with_for_update())
    if actual is not None and actual.pool:
        if actual.state in LIVE_RUNNER_STATES:
            actual.uses = finished_on(session, actual.name)  # idempotent under redelivery
            free = actual.job_pk in (None, job.id) and not runs_live_job(session, actual)
            if free:
                actual.job_pk = None
                session.flush()
            if not (free and _release(session, actual, profiles, now)) and not _has_uses_left(
                actual, profiles
            ):
                to_stop.append(actual)  # used up (it exits after max_use jobs anyway)
    elif actual is not None:
        to_stop.append(actual)
    never_ran = facts.runner_description is None
    if own is not None and own is not actual and own.pool:
        if not runs_live_job(session, own) and own.state in LIVE_RUNNER_STATES:
            own.job_pk = None
            session.flush()
            _release(session, own, profiles, now)  # bound to the job, never ran it
    elif own is not None and own is not actual and never_ran and not runs_live_job(session, own):
        to_stop.append(own)
    instance_ids: list[str] = []
    names: list[str] = []
    for runner in to_stop:
        if runner.state not in LIVE_RUNNER_STATES and runner.state != "terminating":
            continue
        runner.state, runner.updated_at = "terminating", now
        names.append(runner.name)
        if runner.kind == "ec2" and runner.provider_id:
            instance_ids.append(runner.provider_id)
    return StopPlan(instance_ids, names)


def finished_on(session: Session, name: str) -> int:
    """How many finished jobs GitLab says this runner ran (its ``uses``)."""
    return int(
        session.scalar(
            select(func.count()).where(RunnerJob.ran_on == name, RunnerJob.finished_at.is_not(None))
        )
        or 0
    )


def _has_uses_left(runner: Runner, profiles: Profiles) -> bool:
    from app.runners.pool_policy import back_to_pool

    profile = profiles.profiles.get(runner.profile)
    pool = profile.pool if profile is not None else None
    return pool is not None and back_to_pool(runner.uses, pool.max_use)


def _release(session: Session, runner: Runner, profiles: Profiles, now: datetime) -> bool:
    """A pool runner is free of its job: back to idle (True) while its profile still has a
    pool and the runner has ``max_use`` left; False: stop it."""
    if not _has_uses_left(runner, profiles):
        return False
    runner.state, runner.idle_since, runner.updated_at = "idle", now, now
    return True


def mark_terminated(session: Session, names: list[str], now: datetime) -> list[Runner]:
    """Runners whose instance/container is gone; a still-launching one stays ``terminating``
    until its launch is recorded (which then stops it)."""
    done: list[Runner] = []
    for name in names:
        runner = session.get(Runner, name, with_for_update=True)
        if runner is None or runner.state == "terminated":
            continue
        if runner.provider_id is None and runner.state in ("launching", "terminating"):
            continue
        runner.state, runner.stopped_at, runner.updated_at = "terminated", now, now
        delete_owned(session, name)  # the runner's token dies with it
        unbind_ended(session, runner, now)
        done.append(runner)
    return done


def unbind_ended(session: Session, runner: Runner, now: datetime) -> None:
    """A pool runner ended while bound to a job it never ran: the job needs another runner, so
    it is marked failed (reconcile starts it again while start attempts last)."""
    if not runner.pool or runner.job_pk is None:
        return
    job = session.get(RunnerJob, runner.job_pk, with_for_update=True)
    runner.job_pk = None
    if job is None or job.finished_at is not None or job.ran_on == runner.name:
        return
    job.phase, job.updated_at = "failed", now
    job.error = f"its pool runner {runner.name} ended before taking it"


def next_launch(
    launch: dict[str, Any],
    profile: Ec2Profile,
    option: int,
    cause: str,
    runner: str,
    attempt: int,
    *,
    on_demand_only: bool = False,
) -> tuple[int, dict[str, Any]] | None:
    """After a failed RunInstances: the next option's parameters when the error is one that
    another subnet, market or instance type may avoid, else None."""
    from app.runners.profiles import client_token, launch_options, with_option

    if not CAPACITY_ERRORS.search(cause):
        return None
    options = launch_options(profile, on_demand_only=on_demand_only)
    if option + 1 >= len(options):
        return None
    chosen = options[option + 1]
    return option + 1, with_option(launch, chosen, client_token(runner, attempt, chosen))


def profile_of(profiles: Profiles, name: str) -> Ec2Profile | ContainerProfile | None:
    return profiles.profiles.get(name)
