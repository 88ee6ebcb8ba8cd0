"""Reconcile and a container runner whose finish hook was lost, on SQLite and PostgreSQL, with a
real HTTP fake GitLab and a stand-in container engine (the engine's own behaviour is covered by
the Podman tests): the container is stopped in the pass that learns the finish, the GitLab
runner deleted, the job recorded finished; a second pass does nothing more."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from app.config import Settings
from app.db import get_database, utcnow
from app.runners.containers import RunningContainer
from app.runners.models import Runner, RunnerJob
from app.runners.profiles import Profiles
from app.runners.reconcile import RUNNER_TAG, reconcile
from app.runners.settings import load_runners_settings
from tests.integration.runners.fake_gitlab import FakeGitLab

pytestmark = pytest.mark.integration

INSTANCE = "https://gitlab.example.com"
NAME = "smokehouse-7-abcdef"


class Engine:
    """What reconcile asks of the container engine: our containers, and stop one."""

    def __init__(self, containers: list[RunningContainer]) -> None:
        self.containers = containers
        self.stopped: list[str] = []

    def list_ours(self) -> list[RunningContainer]:
        return [c for c in self.containers if c.name not in self.stopped]

    def stop(self, name: str) -> str | None:
        self.stopped.append(name)
        return "job done\n"

    def close(self) -> None:
        pass


def test_a_container_whose_finish_was_lost_is_stopped_in_the_next_pass(
    settings_factory: Callable[..., Settings],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeGitLab() as gitlab:
        monkeypatch.setenv("SMOKEHOUSE_GITLAB_URL", gitlab.url)
        monkeypatch.setenv("SMOKEHOUSE_GITLAB_API_TOKEN", gitlab.token)
        settings = settings_factory(database_url=database_url)
        now = utcnow()
        gitlab.projects[380] = {"id": 380, "path_with_namespace": "acme/api"}
        gitlab.runners[1001] = {"id": 1001, "description": NAME, "token": "glrt-x"}
        gitlab.jobs[(380, 7)] = {
            "id": 7,
            "status": "success",
            "runner": {"id": 1001, "description": NAME},
            "pipeline": {"id": 1, "project_id": 380},
        }
        with get_database(settings.sqlalchemy_url).session() as session:
            job = RunnerJob(
                gitlab=INSTANCE,
                job_id=7,
                project_id=380,
                project_name="acme/api",
                job_name="test",
                status="running",
                phase="running",
                ran_on=NAME,
                ran_on_id=1001,
                start_attempts=1,
                created_at=now - timedelta(minutes=5),
                updated_at=now - timedelta(minutes=4),
            )
            session.add(job)
            session.flush()
            session.add(
                Runner(
                    name=NAME,
                    job_pk=job.id,
                    kind="container",
                    profile="docker",
                    state="running",
                    provider_id="c0ffee",
                    gitlab_runner_id=1001,
                    option=0,
                    attempt=1,
                    created_at=now - timedelta(minutes=5),
                    updated_at=now - timedelta(minutes=4),
                    started_at=now - timedelta(minutes=5),
                )
            )
        engine = Engine(
            [
                RunningContainer(
                    id="c0ffee",
                    name=NAME,
                    labels={RUNNER_TAG: NAME, "smokehouse:job-id": "7"},
                    status="running",
                    started_at=now - timedelta(minutes=5),
                    exit_code=None,
                )
            ]
        )
        report = reconcile(settings, load_runners_settings(), Profiles(), containers=engine)
        assert engine.stopped == [NAME]  # before: kept until its timeout (an orphan)
        assert 1001 not in gitlab.runners
        assert report.finished == [7]
        assert report.terminated == {NAME: "runner is terminating"}
        with get_database(settings.sqlalchemy_url).session() as session:
            runner = session.get(Runner, NAME)
            assert runner is not None
            assert (runner.state, runner.logs) == ("terminated", "job done\n")
            row = session.get(RunnerJob, job.id)
            assert row is not None
            assert (row.status, row.phase) == ("success", "finished")
        again = reconcile(settings, load_runners_settings(), Profiles(), containers=engine)
        assert (again.finished, again.terminated, again.errors) == ([], {}, [])
        assert engine.stopped == [NAME]
