"""What starting and stopping a runner needs besides EC2's API, shared by the workflows' steps
(:mod:`app.runners.handlers`) and the warm pool (:mod:`app.runners.pool`): the runner's GitLab
registration, its container's spec, and stopping a container with its logs kept.

Network calls (GitLab, the container engine) are made outside transactions; each step is safe
to repeat (a registration replaced on a retried start deletes the old one; GitLab's 404 on
delete counts as done).
"""

from __future__ import annotations

import logging
from typing import Any

from app.config import Settings
from app.db import get_database, utcnow
from app.runners.models import Runner
from app.runners.profiles import ContainerProfile, Ec2Profile
from app.secrets import delete_owned

log = logging.getLogger("smokehouse.runners")

#: The kind of secret a runner's GitLab token is stored as (owner: the runner's name).
TOKEN_KIND = "gitlab-runner-token"
#: The ``smokehouse:job-id`` tag/label of a warm-pool runner (it has no job of its own).
POOL_JOB = "pool"


def register_runner(
    settings: Settings, profile: Ec2Profile | ContainerProfile, name: str, project_id: int
) -> str:
    """Create the ephemeral GitLab runner; returns its token ("" without a GitLab API)."""
    from app.runners.gitlab import gitlab_client

    client = gitlab_client(settings.gitlab)
    if client is None:
        log.warning("SMOKEHOUSE_GITLAB_URL is unset: runner %s gets no runner token", name)
        return ""
    try:
        created = client.create_runner(
            description=name,
            tags=list(profile.tags),
            run_untagged=profile.run_untagged or not profile.tags,
            runner_type=profile.runner_type,
            project_id=project_id if profile.runner_type == "project_type" else None,
            group_id=profile.group_id,
        )
    finally:
        client.close()
    with get_database(settings.sqlalchemy_url).session() as session:
        runner = session.get(Runner, name, with_for_update=True)
        previous = runner.gitlab_runner_id if runner is not None else None
        if runner is not None:
            runner.gitlab_runner_id = created.id
    if previous is not None and previous != created.id:
        forget_gitlab_runner(settings, previous)  # a retried start: its token went with it
    return created.token


def gitlab_url(settings: Settings) -> str:
    """The GitLab a runner registers with (``SMOKEHOUSE_GITLAB_URL``; "" when unset)."""
    return settings.gitlab.url or ""


def forget_gitlab_runner(settings: Settings, runner_id: int | None) -> None:
    """Delete a runner's GitLab registration (best effort: GitLab drops stale ones itself)."""
    if runner_id is None:
        return
    from app.runners.gitlab import gitlab_client

    client = gitlab_client(settings.gitlab)
    if client is None:
        return
    try:
        client.delete_runner(runner_id)
    except Exception as exc:  # best effort: GitLab drops stale ephemeral runners itself
        log.warning("could not delete GitLab runner %s: %s", runner_id, exc)
    finally:
        client.close()


def container_spec(
    settings: Settings,
    profile: ContainerProfile,
    name: str,
    profile_name: str,
    job_id: int | None,
    project_id: int | None,
    token: str,
) -> Any:
    from app.runners.containers import ContainerSpec

    environment = {
        "CI_SERVER_URL": gitlab_url(settings),
        "CI_SERVER_TOKEN": token,
        "RUNNER_NAME": name,
        "RUNNER_EXECUTOR": "shell",
        "SMOKEHOUSE_JOB_ID": "" if job_id is None else str(job_id),
        **profile.environment,
    }
    return ContainerSpec(
        name=name,
        image=profile.image,
        command=profile.command,
        environment=environment,
        labels={
            "smokehouse:runner": name,
            "smokehouse:job-id": POOL_JOB if job_id is None else str(job_id),
            "smokehouse:project-id": "" if project_id is None else str(project_id),
            "smokehouse:profile": profile_name,
        },
        cpus=profile.cpus,
        memory=profile.memory,
        timeout_seconds=profile.timeout_minutes * 60,
        network=profile.network,
        volumes=profile.mounts(),
        working_dir=profile.working_dir,
    )


def stop_container(settings: Settings, engine: Any, name: str) -> None:
    logs = engine.stop(name)
    with get_database(settings.sqlalchemy_url).session() as session:
        row = session.get(Runner, name, with_for_update=True)
        if row is not None:
            if logs is not None:
                row.logs = logs
            row.state, row.stopped_at, row.updated_at = "terminated", utcnow(), utcnow()
            delete_owned(session, name)  # the runner's token dies with it
