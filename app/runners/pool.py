"""The warm pool: keep each profile's idle runners launched and registered, stop the surplus.

A pass (:func:`maintain`; Celery task ``runners.pool``, sent after each reconcile pass -- every
60 s --, by ``runners.plan-start`` right after a pending job took an idle runner, and when a pool
runner stopped) looks at every profile
with a ``pool`` (and every profile that still has pool runners), asks
:mod:`app.runners.pool_policy` how many idle runners it should have now, launches the missing
ones and stops the surplus that stayed idle ``idle_time``. The task runs under its lease, so
two passes never launch for the same gap.

A pool runner is registered with GitLab ahead of any job (its profile's tags, ``--max-builds``
= ``max_use``); GitLab hands it whichever matching job comes first. Its token stays in this
process's memory on its way to EC2's user data or the container's environment; it is never
stored, logged or put in a workflow.

Guarantees: the runner row is written (``launching``) before RunInstances, whose
``ClientToken`` is made from its name; a pass that dies half-way leaves a launching row that
reconcile fails after the launch timeout, and the instance (tagged with the name) is then
terminated as a failed runner's. A stop re-checks under the row lock that the runner is still
idle and unbound, so a job that took it a moment earlier keeps it.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from app.config import Settings
from app.db import get_database, utcnow
from app.runners import lifecycle
from app.runners.models import LIVE_RUNNER_STATES, Runner
from app.runners.pool_policy import IdleRunner, Target, plan, target
from app.runners.profiles import (
    ContainerProfile,
    Ec2Profile,
    Profiles,
    client_token,
    launch_options,
    render_user_data,
    run_instances_params,
)
from app.runners.provision import (
    POOL_JOB,
    container_spec,
    forget_gitlab_runner,
    gitlab_url,
    register_runner,
    stop_container,
)

log = logging.getLogger("smokehouse.runners.pool")

POOL_TAG = "smokehouse:pool"


@dataclass
class PoolReport:
    launched: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def pool_runner_name() -> str:
    return f"smokehouse-pool-{secrets.token_hex(4)}"


def needed(settings: Settings, profiles: Profiles) -> bool:
    """Whether a pool pass has anything to do: a profile has a pool, or runners of a pool are
    still up (a profile that lost its pool has them stopped by the next pass)."""
    if any(profile.pool is not None for profile in profiles.profiles.values()):
        return True
    with get_database(settings.sqlalchemy_url).session() as session:
        return (
            session.scalar(
                select(Runner.name)
                .where(Runner.pool.is_(True), Runner.state.in_(LIVE_RUNNER_STATES))
                .limit(1)
            )
            is not None
        )


def maintain(
    settings: Settings,
    profiles: Profiles,
    now: datetime | None = None,
    *,
    ec2: Any | None = None,
    containers: Any | None = None,
) -> PoolReport:
    """One pass over every pool. ``ec2`` (a boto3 client) and ``containers`` (a
    :class:`~app.runners.containers.ContainerRunners`) default to AWS's and Docker's standard
    configuration, made only when a pool needs them."""
    now = now or utcnow()
    report = PoolReport()
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        rows = session.scalars(
            select(Runner).where(Runner.pool.is_(True), Runner.state.in_(("launching", "idle")))
        ).all()
        pooled = [
            (r.name, r.profile, r.state, r.job_pk, r.idle_since or r.updated_at) for r in rows
        ]
        live = Counter(
            {
                str(name): int(count)
                for name, count in session.execute(
                    select(Runner.profile, func.count())
                    .where(Runner.state.in_(LIVE_RUNNER_STATES))
                    .group_by(Runner.profile)
                ).all()
            }
        )
    names = {n for n, p in profiles.profiles.items() if p.pool is not None}
    names |= {profile for _, profile, _, _, _ in pooled}
    providers = _Providers(ec2, containers)
    try:
        for name in sorted(names):
            profile = profiles.profiles.get(name)
            pool = profile.pool if profile is not None else None
            wanted = (
                target(pool.idle_count, pool.idle_time, pool.policies(), now)
                if pool is not None
                else Target(0, 0)  # pool removed from the file: its idle runners go now
            )
            idle = [
                IdleRunner(runner, since)
                for runner, p, state, job, since in pooled
                if p == name and state == "idle" and job is None
            ]
            launching = sum(1 for _, p, state, _, _ in pooled if p == name and state == "launching")
            limit = profile.max_concurrent if profile is not None else 0
            decided = plan(wanted, idle, launching, live[name], limit, now)
            for _ in range(decided.launch):
                assert profile is not None
                _launch(settings, name, profile, providers, report)
            if decided.stop:
                _stop(settings, list(decided.stop), providers, report)
    finally:
        providers.close()
    for problem in report.errors:
        log.warning("pool: %s", problem)
    return report


class _Providers:
    """EC2 and the container engine, made on first use."""

    def __init__(self, ec2: Any | None, containers: Any | None) -> None:
        self._ec2, self._containers, self._own_engine = ec2, containers, False

    @property
    def ec2(self) -> Any:
        if self._ec2 is None:
            import boto3

            self._ec2 = boto3.client("ec2")
        return self._ec2

    @property
    def containers(self) -> Any:
        if self._containers is None:
            from app.runners.containers import ContainerRunners

            self._containers, self._own_engine = ContainerRunners(), True
        return self._containers

    def close(self) -> None:
        if self._own_engine and self._containers is not None:
            self._containers.close()


def _launch(
    settings: Settings,
    profile_name: str,
    profile: Ec2Profile | ContainerProfile,
    providers: _Providers,
    report: PoolReport,
) -> None:
    name, now = pool_runner_name(), utcnow()
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        session.add(
            Runner(
                name=name,
                job_pk=None,
                pool=True,
                kind=profile.kind,
                profile=profile_name,
                state="launching",
                owner="pool",
                attempt=1,
                option=0,
                uses=0,
                created_at=now,
                updated_at=now,
            )
        )
    try:
        token = register_runner(settings, profile, name, 0)
        if isinstance(profile, Ec2Profile):
            found = _run_instance(settings, profile_name, profile, name, token, providers.ec2)
        else:
            spec = container_spec(settings, profile, name, profile_name, None, None, token)
            spec.labels[POOL_TAG] = profile_name
            started = providers.containers.start(spec)
            found = (started.id, None, None, None)
    except Exception as exc:  # reported on the runner; the next pass launches another
        gitlab_runner = None
        with database.session() as session:
            row = session.get(Runner, name, with_for_update=True)
            if row is not None:
                lifecycle.fail_start(session, row, f"pool launch: {exc}", utcnow())
                gitlab_runner = row.gitlab_runner_id
        forget_gitlab_runner(settings, gitlab_runner)
        report.errors.append(f"{profile_name}: launch {name}: {exc}")
        return
    provider_id, instance_type, market, subnet = found
    with database.session() as session:
        lifecycle.launched(
            session,
            name,
            provider_id,
            utcnow(),
            instance_type=instance_type,
            market=market,
            subnet_id=subnet,
        )
    report.launched.append(name)


def _run_instance(
    settings: Settings,
    profile_name: str,
    profile: Ec2Profile,
    name: str,
    token: str,
    ec2: Any,
) -> tuple[str, str | None, str | None, str | None]:
    """RunInstances through the profile's launch options, moving on after a capacity or
    address error as the start workflow does; returns (instance, type, market, subnet)."""
    from botocore.exceptions import ClientError

    pool = profile.pool
    values = {
        "gitlab_url": gitlab_url(settings),
        "runner_token": token,
        "runner_name": name,
        "job_id": "",
        "project_id": "",
        "profile": profile_name,
        "tags": ",".join(profile.tags),
        "max_lifetime_minutes": profile.max_lifetime_minutes,
        "idle_timeout_seconds": profile.max_lifetime_minutes * 60,  # waits to be picked
        "max_builds": pool.max_use if pool is not None else 1,
    }
    tags = {
        "Name": name,
        "smokehouse:runner": name,
        "smokehouse:job-id": POOL_JOB,
        "smokehouse:profile": profile_name,
        POOL_TAG: profile_name,
    }
    user_data = render_user_data(profile, values)
    options = launch_options(profile)
    for index, option in enumerate(options):
        params = run_instances_params(
            profile,
            option,
            token=client_token(name, 1, option),
            user_data=user_data,
            tags=tags,
        )
        try:
            answer = ec2.run_instances(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            cause = f"{error.get('Code', '')}: {error.get('Message', '')}"
            if lifecycle.CAPACITY_ERRORS.search(cause) and index + 1 < len(options):
                log.info("pool %s: %s in %s, trying the next option", name, cause, option)
                continue
            raise RuntimeError(f"EC2 {cause}") from None
        instance = answer["Instances"][0]
        return str(instance["InstanceId"]), option.instance_type, option.market, option.subnet_id
    raise RuntimeError("no launch option left")  # pragma: no cover - the loop returns or raises


def _stop(settings: Settings, names: list[str], providers: _Providers, report: PoolReport) -> None:
    """Stop surplus idle runners: each only if still idle and unbound under its row lock."""
    database = get_database(settings.sqlalchemy_url)
    chosen: list[tuple[str, str, str | None, int | None]] = []
    with database.session() as session:
        for name in names:
            runner = session.get(Runner, name, with_for_update=True)
            if runner is None or runner.state != "idle" or runner.job_pk is not None:
                continue  # a job took it since the pass looked
            runner.state, runner.updated_at = "terminating", utcnow()
            chosen.append((name, runner.kind, runner.provider_id, runner.gitlab_runner_id))
    instances = [provider for _, kind, provider, _ in chosen if kind == "ec2" and provider]
    if instances:
        try:
            providers.ec2.terminate_instances(InstanceIds=instances)
        except Exception as exc:  # reconcile terminates "terminating" runners' instances
            report.errors.append(f"TerminateInstances: {exc}")
            chosen = [c for c in chosen if c[1] != "ec2"]
    for name, kind, _, gitlab_runner in chosen:
        try:
            if kind == "container":
                stop_container(settings, providers.containers, name)
            else:
                with database.session() as session:
                    lifecycle.mark_terminated(session, [name], utcnow())
        except Exception as exc:
            report.errors.append(f"stop {name}: {exc}")
            continue
        forget_gitlab_runner(settings, gitlab_runner)
        report.stopped.append(name)
