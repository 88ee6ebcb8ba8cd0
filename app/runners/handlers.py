"""The Task handlers of the shipped GitLab workflows (``gitlab-start-runner``,
``gitlab-stop-runner``) and of the job-timeline rule. Thin: each opens one transaction per step
and calls :mod:`app.runners.lifecycle`; network calls (GitLab API, container engine) happen
outside transactions. All of them are safe to run again (tasks run at least once).

EC2 itself is called by the workflows' ``aws-sdk:ec2:runInstances``/``terminateInstances``
Task states, not here: these handlers build the parameters and record the results.
"""

from __future__ import annotations

import logging
from typing import Any

from app.config import Settings
from app.db import get_database, utcnow
from app.handlers import HandlerContext, handler
from app.runners import lifecycle, verify
from app.runners.models import Runner, RunnerJob
from app.runners.profiles import (
    ContainerProfile,
    Ec2Profile,
    Profiles,
    client_token,
    launch_options,
    load_profiles,
    render_user_data,
    run_instances_params,
)
from app.runners.provision import (
    TOKEN_KIND,
    container_spec,
    forget_gitlab_runner,
    gitlab_url,
    register_runner,
    stop_container,
)
from app.runners.settings import profiles_path
from app.runners.transitions import JobFacts, is_terminal, job_facts
from app.runners.webhook import DEFAULT_INSTANCE
from app.secrets import delete_owned, put, reference, resolve_references

log = logging.getLogger("smokehouse.runners")


def _database(settings: Settings) -> Any:
    return get_database(settings.sqlalchemy_url)


def current_profiles(settings: Settings) -> Profiles:
    """Read on every use, so an edited profiles file applies without a restart."""
    return load_profiles(profiles_path(settings))


def _event(payload: Any) -> tuple[str, JobFacts, dict[str, Any], str | None]:
    if not isinstance(payload, dict):
        raise ValueError("expected the bus event (with detail and resources)")
    resources = payload.get("resources") or []
    gitlab = resources[0] if resources and isinstance(resources[0], str) else DEFAULT_INSTANCE
    detail = payload.get("detail")
    facts = job_facts(detail)
    assert isinstance(detail, dict)
    event_id = payload.get("id") if isinstance(payload.get("id"), str) else None
    return gitlab, facts, detail, event_id


def _job_tags(settings: Settings, facts: JobFacts, profiles: Profiles) -> tuple[list[str], str]:
    """The job's own tags from GitLab, else the configured project/job-name map."""
    from app.runners.gitlab import gitlab_client

    client = gitlab_client(settings.gitlab)
    if client is not None:
        try:
            tags = client.job_tags(facts.project_id, facts.job_id)
        finally:
            client.close()
        if tags is not None:
            return tags, "gitlab"
    return profiles.fallback_tags(facts.project_id, facts.project_path, facts.job_name), "map"


def refill_pool(settings: Settings) -> None:
    """Ask for a pool pass now (its periodic tick would come within seconds anyway)."""
    from app.celery_client import celery_for

    try:
        celery_for(settings).send_task("runners.pool")
    except Exception as exc:  # the next tick refills
        log.warning("could not ask for a pool refill: %s", exc)


@handler("runners.record-job")
def record_job(payload: Any, context: HandlerContext) -> Any:
    """Bus target for every Job Hook: the job's status timeline and who is running it."""
    settings = context.app_settings()
    gitlab, facts, detail, event_id = _event(payload)
    with _database(settings).session() as session:
        job = lifecycle.record(session, gitlab, facts, utcnow(), event_id=event_id, payload=detail)
        return {"job": job.job_id, "status": job.status}


@handler("runners.plan-start")
def plan_start(payload: Any, context: HandlerContext) -> Any:
    """A job is pending: pick its profile, reserve its one runner, build the launch.

    Returns ``{"action": "ec2", "runner", "launch", "option"}``, ``{"action": "container",
    "runner", "token"}``, or ``{"action": "skip", "reason"}``. The runner token is never in
    the result: it goes into the secret store and ``token`` (or the user data) holds only its
    ``{{resolve:smokehouse:<id>}}`` reference, resolved by the launching step alone."""
    settings = context.app_settings()
    gitlab, facts, detail, event_id = _event(payload)
    refused = verify.check_pending(settings, gitlab, facts, detail, event_id)
    if refused is not None:  # GitLab does not confirm the job: launch nothing
        return refused
    runners = settings.runners
    owner = str(context.extra.get("execution_arn") or context.invocation_id)
    profiles = current_profiles(settings)
    database = _database(settings)
    with database.session() as session:
        job = lifecycle.record(session, gitlab, facts, utcnow(), event_id=event_id, payload=detail)
        gitlab = job.gitlab  # a recovered job and its late hook may name the instance apart
        known = (list(job.tags), job.tags_source or "map") if job.tags is not None else None
        if is_terminal(job.status):
            return {"action": "skip", "reason": f"job already {job.status}"}
    tags, source = known if known is not None else _job_tags(settings, facts, profiles)
    with database.session() as session:
        locked = lifecycle.lock_job(session, gitlab, facts.job_id)
        assert locked is not None
        reservation = lifecycle.reserve(
            session,
            locked,
            profiles,
            tags,
            source,
            owner,
            utcnow(),
            max_attempts=runners.max_start_attempts,
        )
        attempt, on_demand = 1, locked.on_demand
        if reservation.runner is not None:
            runner = session.get(Runner, reservation.runner)
            assert runner is not None
            attempt = runner.attempt
    if reservation.runner is None or reservation.profile is None:
        return {"action": "skip", "reason": reservation.reason}
    if reservation.assigned:  # a warm runner took it: nothing to launch; refill the pool
        refill_pool(settings)
        return {"action": "assigned", "runner": reservation.runner}
    name, profile = reservation.runner, profiles.profiles[reservation.profile]
    try:
        token = register_runner(settings, profile, name, facts.project_id)
    except Exception as exc:  # GitLab refused or is down: reported; reconcile retries
        with database.session() as session:
            runner = session.get(Runner, name, with_for_update=True)
            if runner is not None:
                lifecycle.fail_start(session, runner, f"GitLab runner: {exc}", utcnow())
        return {"action": "failed", "runner": name, "reason": f"GitLab runner: {exc}"}
    if token:
        with database.session() as session:
            delete_owned(session, name)  # a retried start's earlier token is dead
            token = reference(put(session, settings, kind=TOKEN_KIND, owner=name, value=token))
    if isinstance(profile, ContainerProfile):
        return {"action": "container", "runner": name, "token": token}
    option = launch_options(profile, on_demand_only=on_demand)[0]
    values = {
        "gitlab_url": gitlab_url(settings),
        "runner_token": token,
        "runner_name": name,
        "job_id": facts.job_id,
        "project_id": facts.project_id,
        "profile": reservation.profile,
        "tags": ",".join(profile.tags),
        "max_lifetime_minutes": profile.max_lifetime_minutes,
        "idle_timeout_seconds": profile.idle_timeout_minutes * 60,
        "max_builds": 1,
    }
    launch = run_instances_params(
        profile,
        option,
        token=client_token(name, attempt, option),
        user_data=render_user_data(profile, values),
        tags={
            "Name": name,
            "smokehouse:runner": name,
            "smokehouse:job-id": str(facts.job_id),
            "smokehouse:project-id": str(facts.project_id),
            "smokehouse:profile": reservation.profile,
        },
    )
    return {"action": "ec2", "runner": name, "option": 0, "attempt": attempt, "launch": launch}


@handler("runners.launched")
def launched(payload: Any, context: HandlerContext) -> Any:
    """RunInstances answered: record the instance; ``terminate`` when its job already ended."""
    settings = context.app_settings()
    name = str(payload["runner"])
    instance = payload["instance"]
    launch = payload.get("launch") or {}
    with _database(settings).session() as session:
        stop = lifecycle.launched(
            session,
            name,
            str(instance["InstanceId"]),
            utcnow(),
            instance_type=instance.get("InstanceType"),
            market="spot" if launch.get("InstanceMarketOptions") else "on-demand",
            subnet_id=launch.get("SubnetId"),
        )
    return {"terminate": stop, "InstanceIds": [instance["InstanceId"]], "runners": [name]}


@handler("runners.launch-failed")
def launch_failed(payload: Any, context: HandlerContext) -> Any:
    """RunInstances failed: the next instance type / on-demand for capacity errors, else the
    runner is marked failed (reported on the job; reconcile retries while attempts last)."""
    settings = context.app_settings()
    name = str(payload["runner"])
    error = payload.get("error") or {}
    cause = f"{error.get('Error', '')}: {error.get('Cause', '')}"
    profiles = current_profiles(settings)
    with _database(settings).session() as session:
        runner = session.get(Runner, name, with_for_update=True)
        if runner is None:
            return {"retry": False, "reason": "runner gone"}
        profile = profiles.profiles.get(runner.profile)
        job = session.get(RunnerJob, runner.job_pk) if runner.job_pk is not None else None
        found = (
            lifecycle.next_launch(
                payload["launch"],
                profile,
                int(payload.get("option", 0)),
                cause,
                name,
                runner.attempt,
                on_demand_only=job is not None and job.on_demand,
            )
            if isinstance(profile, Ec2Profile)
            else None
        )
        if found is not None:
            runner.option, runner.updated_at = found[0], utcnow()
            return {
                "action": "ec2",
                "runner": name,
                "option": found[0],
                "attempt": runner.attempt,
                "launch": found[1],
                "retry": True,
            }
        lifecycle.fail_start(session, runner, cause[:2000], utcnow())
        gitlab_runner = runner.gitlab_runner_id
    forget_gitlab_runner(settings, gitlab_runner)
    return {"retry": False, "reason": cause[:2000]}


@handler("runners.start-container")
def start_container(payload: Any, context: HandlerContext) -> Any:
    """Start the job's runner container (idempotent by name) and record it."""
    settings = context.app_settings()
    from app.runners.containers import ContainerRunners

    name, token = str(payload["runner"]), str(payload.get("token") or "")
    profiles = current_profiles(settings)
    with _database(settings).session() as session:
        runner = session.get(Runner, name)
        if runner is None:
            return {"started": False, "reason": "runner gone"}
        token = resolve_references(token, settings, session)  # only here, never returned
        job = session.get(RunnerJob, runner.job_pk)
        assert job is not None
        profile = profiles.profiles.get(runner.profile)
        job_id, project_id = job.job_id, job.project_id
    if not isinstance(profile, ContainerProfile):
        raise ValueError(f"profile {runner.profile!r} is not a container profile any more")
    spec = container_spec(settings, profile, name, runner.profile, job_id, project_id, token)
    engine = ContainerRunners()
    try:
        try:
            started = engine.start(spec)
        except Exception as exc:
            with _database(settings).session() as session:
                row = session.get(Runner, name, with_for_update=True)
                if row is not None:
                    lifecycle.fail_start(session, row, f"container: {exc}", utcnow())
            raise
        with _database(settings).session() as session:
            stop = lifecycle.launched(session, name, started.id, utcnow())
        if stop:
            stop_container(settings, engine, name)
    finally:
        engine.close()
    return {"started": True, "container": started.id, "stopped": stop}


@handler("runners.plan-stop")
def plan_stop(payload: Any, context: HandlerContext) -> Any:
    """A job finished: record it and say which runners to stop (EC2 instance ids apart)."""
    settings = context.app_settings()
    gitlab, facts, detail, event_id = _event(payload)
    refused = verify.check_finished(settings, facts, detail)
    if refused is not None:  # GitLab does not confirm the finish: stop and record nothing
        return refused
    profiles = current_profiles(settings)  # a file read: not inside the transaction
    with _database(settings).session() as session:
        now = utcnow()
        job = lifecycle.record(session, gitlab, facts, now, event_id=event_id)
        return lifecycle.plan_stop(session, job, facts, now, profiles).as_dict()


@handler("runners.stopped")
def stopped(payload: Any, context: HandlerContext) -> Any:
    """After TerminateInstances (or for containers, here): stop containers with their logs,
    delete the GitLab runners, mark the runners terminated, then wake jobs waiting for a slot."""
    settings = context.app_settings()
    names = [str(n) for n in payload.get("runners") or []]
    containers: list[str] = []
    gitlab_runners: list[int] = []
    pooled = False
    with _database(settings).session() as session:
        for name in names:
            runner = session.get(Runner, name)
            if runner is None:
                continue
            pooled = pooled or runner.pool
            if runner.kind == "container" and runner.provider_id:
                containers.append(name)
            if runner.gitlab_runner_id is not None:
                gitlab_runners.append(runner.gitlab_runner_id)
        ec2 = [n for n in names if n not in containers]
        done = [r.name for r in lifecycle.mark_terminated(session, ec2, utcnow())]
    if containers:
        from app.runners.containers import ContainerRunners

        engine = ContainerRunners()
        try:
            for name in containers:
                stop_container(settings, engine, name)
                done.append(name)
        finally:
            engine.close()
    for runner_id in gitlab_runners:
        forget_gitlab_runner(settings, runner_id)
    if pooled:  # a used-up pool runner: its replacement now, not at the next reconcile
        refill_pool(settings)
    from app.runners.reconcile import wake_waiting

    woken = wake_waiting(settings, current_profiles(settings))
    return {"terminated": done, "woken": woken}


@handler("runners.spot-interrupted")
def spot_interrupted(payload: Any, context: HandlerContext) -> Any:
    """Bus target for EC2's spot interruption warning: retry the instance's job on demand."""
    from app.runners.interruptions import interrupted

    detail = payload.get("detail") if isinstance(payload, dict) else None
    instance = detail.get("instance-id") if isinstance(detail, dict) else None
    if not isinstance(instance, str) or not instance:
        raise ValueError("expected EC2's interruption warning (detail.instance-id)")
    return interrupted(context.app_settings(), instance)
