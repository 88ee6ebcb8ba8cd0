"""Stop a runner by hand (GraphQL ``terminateRunner``): the operator's override.

The row is marked ``terminating`` first (so a launch still in flight stops its instance when it
lands), then the instance is terminated or the container stopped with its logs kept, and the row
marked ``terminated``. Calling it again is harmless.
"""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.db import get_database, utcnow
from app.runners import lifecycle
from app.runners.models import Runner
from app.secrets import delete_owned


class UnknownRunner(LookupError):
    pass


def terminate_runner(
    settings: Settings, name: str, *, ec2: Any | None = None, containers: Any | None = None
) -> str:
    """Terminate runner ``name``; returns its state afterwards."""
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        runner = session.get(Runner, name, with_for_update=True)
        if runner is None:
            raise UnknownRunner(f"no runner named {name!r}")
        if runner.state == "terminated":
            return runner.state
        if runner.state != "failed":
            runner.state, runner.updated_at = "terminating", utcnow()
        runner.error = runner.error or "terminated by hand"
        kind, provider_id = runner.kind, runner.provider_id
    if provider_id is None:
        return "terminating"  # still launching: its launch sees the mark and stops it
    logs: str | None = None
    if kind == "ec2":
        if ec2 is None:
            import boto3

            ec2 = boto3.client("ec2")
        ec2.terminate_instances(InstanceIds=[provider_id])
    else:
        from app.runners.containers import ContainerRunners

        engine = containers if containers is not None else ContainerRunners()
        try:
            logs = engine.stop(name)
        finally:
            if containers is None:
                engine.close()
    with database.session() as session:
        runner = session.get(Runner, name, with_for_update=True)
        assert runner is not None
        runner.state, runner.stopped_at, runner.updated_at = "terminated", utcnow(), utcnow()
        delete_owned(session, name)  # the runner's token dies with it
        lifecycle.unbind_ended(session, runner, utcnow())  # a pool runner's job needs another
        if logs is not None:
            runner.logs = logs
        return runner.state
