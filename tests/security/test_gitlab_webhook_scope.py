"""GitLab webhook tokens are scoped, jobs are checked with GitLab, dedupe holds without headers.

Against the real app (``POST /webhooks/gitlab``), the real database (SQLite and PostgreSQL),
the real runner handlers (``runners.plan-start``/``launched``/``plan-stop``, called as the
workflows call them) and a real HTTP stand-in for GitLab's API (FakeGitLab):

- a token bound to one project cannot report for another: 403 with a reason, nothing stored;
- a forged ``success`` does not stop another project's runner, nor (GitLab asked) a job's runner
  while GitLab says the job still runs;
- a ``pending`` hook GitLab does not confirm (no such job, not pending, another project, another
  path) launches nothing and shows ``not verified: …`` on the job;
- a hook resent without ``Idempotency-Key``/``X-Gitlab-Event-UUID`` is processed once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.bus.models import Event
from app.config import ConfigError, Settings
from app.db import get_database
from app.handlers import HandlerContext
from app.main import create_app
from app.runners import handlers
from app.runners.models import Runner, RunnerJob, WebhookReceipt
from app.runners.settings import webhook_grants
from app.runners.transitions import runner_name
from app.runners.webhook import match_token
from tests.integration.conftest import KEYS
from tests.integration.runners.fake_gitlab import FakeGitLab
from tests.integration.runners.payloads import INSTANCE, job_hook, runner_block
from tests.integration.runners.payloads import headers as hook_headers

pytestmark = pytest.mark.integration

ACME = "acme-token-5f1c9a2e7b4d8c0e6a"  # project 380 (acme/api) only
GROUP = "acme-group-token-93d0c17f2e5b"  # every project under acme/
OTHER = "other-token-2b8e4d6a10c3f9e1"  # project 381 (other/web) only
TOKENS = f"{ACME}@project:380;{GROUP}@group:acme;\n{OTHER}@project:381"
PROFILES = """
default: small
profiles:
  small:
    kind: ec2
    tags: [aws]
    image_id: ami-12345678
    instance_types: [t3.small]
    max_concurrent: 50
"""
PATHS = {380: "acme/api", 381: "other/web", 382: "acme/tools"}


def hook(job_id: int, status: str, project_id: int, **kwargs: Any) -> dict[str, Any]:
    payload = job_hook(job_id, status, project_id=project_id, **kwargs)
    payload["project"]["path_with_namespace"] = PATHS.get(project_id, "nobody/nothing")
    return payload


def send_headers(token: str, *, dedupe_headers: bool = True) -> dict[str, str]:
    sent = hook_headers(token=token)
    if not dedupe_headers:
        del sent["Idempotency-Key"], sent["X-Gitlab-Event-UUID"]
    return sent


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as fake:
        for project_id, path in PATHS.items():
            fake.projects[project_id] = {"id": project_id, "path_with_namespace": path}
        yield fake


@pytest.fixture
def settings(
    settings_factory: Callable[..., Settings],
    database_url: str,
    gitlab: FakeGitLab,
    tmp_path: Path,
) -> Settings:
    profiles = tmp_path / "runners.yaml"
    profiles.write_text(PROFILES)
    return settings_factory(
        database_url=database_url,
        access_keys=KEYS,
        gitlab={"url": gitlab.url, "api_token": gitlab.token, "webhook_tokens": TOKENS},
        runners={"profiles_file": profiles},
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def post(client: TestClient, payload: Any, sent: dict[str, str], gitlab: FakeGitLab | None = None):  # type: ignore[no-untyped-def]
    if gitlab is not None:
        gitlab.hook(payload)  # GitLab's own state changes before it sends the hook
    return client.post("/webhooks/gitlab", content=json.dumps(payload), headers=sent)


def stored(settings: Settings) -> tuple[int, int]:
    with get_database(settings.sqlalchemy_url).session() as session:
        events = session.scalar(select(func.count()).select_from(Event))
        receipts = session.scalar(select(func.count()).select_from(WebhookReceipt))
    return int(events or 0), int(receipts or 0)


def event(settings: Settings, event_id: str) -> dict[str, Any]:
    """The bus event as the workflows receive it."""
    with get_database(settings.sqlalchemy_url).session() as session:
        row = session.get(Event, event_id)
        assert row is not None
        envelope = dict(row.envelope)
    if isinstance(envelope.get("detail"), str):
        envelope["detail"] = json.loads(envelope["detail"])
    return envelope


def context(settings: Settings, name: str) -> HandlerContext:
    return HandlerContext(
        name=name, invocation_id=f"{name}-1", settings=settings, extra={"execution_arn": name}
    )


def job_row(settings: Settings, job_id: int) -> RunnerJob | None:
    with get_database(settings.sqlalchemy_url).session() as session:
        return session.scalar(select(RunnerJob).where(RunnerJob.job_id == job_id))


def runner_row(settings: Settings, job_id: int) -> Runner | None:
    with get_database(settings.sqlalchemy_url).session() as session:
        return session.get(Runner, runner_name(INSTANCE, job_id))


def start_running(
    client: TestClient, settings: Settings, gitlab: FakeGitLab, job_id: int, project_id: int
) -> tuple[str, dict[str, Any]]:
    """A genuine pending job of ``project_id`` with its instance running; returns the runner's
    name and the GitLab runner that took the job."""
    gitlab.jobs[(project_id, job_id)] = {
        "id": job_id,
        "status": "created",
        "tag_list": ["aws"],
        "pipeline": {"id": 2366, "project_id": project_id},
    }
    token = OTHER if project_id == 381 else ACME
    answer = post(client, hook(job_id, "pending", project_id), send_headers(token), gitlab)
    assert answer.status_code == 200, answer.text
    plan = handlers.plan_start(
        event(settings, answer.json()["eventId"]), context(settings, "plan-start")
    )
    assert plan["action"] == "ec2", plan
    name = plan["runner"]
    launched = handlers.launched(
        {"runner": name, "instance": {"InstanceId": "i-0abc", "InstanceType": "t3.small"}},
        context(settings, "launched"),
    )
    assert launched["terminate"] is False
    [created] = [r for r in gitlab.runners.values() if r["description"] == name]
    ran = runner_block(created["id"], name, ["aws"])
    answer = post(
        client, hook(job_id, "running", project_id, runner=ran), send_headers(token), gitlab
    )
    assert answer.status_code == 200, answer.text
    handlers.record_job(event(settings, answer.json()["eventId"]), context(settings, "record"))
    found = runner_row(settings, job_id)
    assert found is not None
    assert found.state == "running"
    return name, ran


# --- scope --------------------------------------------------------------------------------------


def test_a_project_token_cannot_report_for_another_project(
    client: TestClient, settings: Settings
) -> None:
    for status in ("pending", "success", "running"):
        answer = post(client, hook(9101, status, 381), send_headers(ACME))
        assert answer.status_code == 403, answer.text
        assert "may not report for project 381" in answer.json()["detail"]
        assert "project:380" in answer.json()["detail"]
    # a path-scoped token: only projects under its group
    assert post(client, hook(9102, "pending", 381), send_headers(GROUP)).status_code == 403
    # a payload naming no project at all
    bare = hook(9103, "pending", 380)
    del bare["project_id"], bare["project"]
    assert post(client, bare, send_headers(ACME)).status_code == 403
    # a payload whose two project ids disagree
    mixed = hook(9104, "pending", 380)
    mixed["project"]["id"] = 381
    assert post(client, mixed, send_headers(ACME)).status_code == 400
    assert stored(settings) == (0, 0)  # nothing stored for any of them
    # its own projects are accepted
    assert post(client, hook(9105, "pending", 380), send_headers(ACME)).status_code == 200
    assert post(client, hook(9106, "pending", 382), send_headers(GROUP)).status_code == 200
    assert stored(settings)[0] == 2
    assert post(client, hook(9107, "pending", 380), send_headers("nope")).status_code == 401


def test_forged_success_from_another_projects_token_stops_nothing(
    client: TestClient, settings: Settings, gitlab: FakeGitLab
) -> None:
    _name, ran = start_running(client, settings, gitlab, 9201, 381)
    before = stored(settings)
    # project 380's token, claiming project 381's job: refused at the door
    forged = hook(9201, "success", 381, runner=ran)
    answer = post(client, forged, send_headers(ACME))
    assert answer.status_code == 403
    assert stored(settings) == before
    # claiming its own project but naming project 381's job and runner: GitLab has no such job
    # in project 380, so nothing is stopped or recorded
    forged = hook(9201, "success", 380, runner=ran)
    answer = post(client, forged, send_headers(ACME))
    assert answer.status_code == 200
    plan = handlers.plan_stop(event(settings, answer.json()["eventId"]), context(settings, "stop"))
    assert plan["terminate"] is False
    assert plan["runners"] == []
    assert plan["reason"].startswith("not verified: GitLab has no job 9201 in project 380")
    runner = runner_row(settings, 9201)
    assert runner is not None
    assert runner.state == "running"
    job = job_row(settings, 9201)
    assert job is not None
    assert job.status == "running"


def test_forged_success_with_the_right_token_stops_nothing_while_the_job_runs(
    client: TestClient, settings: Settings, gitlab: FakeGitLab
) -> None:
    name, ran = start_running(client, settings, gitlab, 9301, 381)
    forged = hook(9301, "success", 381, runner=ran)  # GitLab still says: running
    answer = post(client, forged, send_headers(OTHER))
    assert answer.status_code == 200
    plan = handlers.plan_stop(event(settings, answer.json()["eventId"]), context(settings, "stop"))
    assert plan["terminate"] is False
    assert "GitLab says job 9301 is running, not finished" in plan["reason"]
    runner = runner_row(settings, 9301)
    assert runner is not None
    assert runner.state == "running"
    # the real finish (GitLab agrees, same runner) stops it
    answer = post(client, hook(9301, "success", 381, runner=ran), send_headers(OTHER), gitlab)
    plan = handlers.plan_stop(event(settings, answer.json()["eventId"]), context(settings, "stop"))
    assert plan == {"terminate": True, "InstanceIds": ["i-0abc"], "runners": [name]}


def test_a_finish_naming_another_runner_than_gitlabs_stops_nothing(
    client: TestClient, settings: Settings, gitlab: FakeGitLab
) -> None:
    _victim, victim_runner = start_running(client, settings, gitlab, 9401, 381)
    # job 9402 of project 381 really finished, never having run on the victim's runner
    gitlab.jobs[(381, 9402)] = {"id": 9402, "status": "success", "tag_list": ["aws"]}
    forged = hook(9402, "success", 381, runner=victim_runner)
    answer = post(client, forged, send_headers(OTHER))
    plan = handlers.plan_stop(event(settings, answer.json()["eventId"]), context(settings, "stop"))
    assert plan["runners"] == []
    assert "ran on runner None" in plan["reason"]
    runner = runner_row(settings, 9401)
    assert runner is not None
    assert runner.state == "running"


# --- pending jobs verified ----------------------------------------------------------------------


def _gitlab_knows(gitlab: FakeGitLab, case: str, job_id: int) -> None:
    job = {"id": job_id, "status": "pending", "tag_list": ["aws"]}
    if case == "not pending":
        gitlab.jobs[(380, job_id)] = {**job, "status": "running"}
    elif case == "finished":
        gitlab.jobs[(380, job_id)] = {**job, "status": "success"}
    elif case == "another project's job":
        gitlab.jobs[(381, job_id)] = job  # GitLab answers 404 under project 380
    elif case == "pipeline of another project":
        gitlab.jobs[(380, job_id)] = {**job, "pipeline": {"id": 1, "project_id": 381}}
    elif case == "path of another project":
        gitlab.jobs[(380, job_id)] = job
        gitlab.projects[380] = {"id": 380, "path_with_namespace": "acme/secret"}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no such job", "GitLab has no job 95"),
        ("not pending", "is running, not pending"),
        ("finished", "is success, not pending"),
        ("another project's job", "GitLab has no job 95"),
        ("pipeline of another project", "belongs to project 381, not 380"),
        ("path of another project", "project 380 is acme/secret, not acme/api"),
    ],
)
def test_a_pending_job_gitlab_does_not_confirm_launches_nothing(
    client: TestClient, settings: Settings, gitlab: FakeGitLab, case: str, reason: str
) -> None:
    job_id = 9500 + len(case)
    _gitlab_knows(gitlab, case, job_id)
    answer = post(client, hook(job_id, "pending", 380), send_headers(ACME))
    assert answer.status_code == 200, answer.text  # the webhook itself asks GitLab nothing
    assert gitlab.requests == []
    plan = handlers.plan_start(
        event(settings, answer.json()["eventId"]), context(settings, "plan-start")
    )
    assert plan["action"] == "skip"
    assert plan["reason"].startswith("not verified: ")
    assert reason in plan["reason"]
    assert gitlab.count("POST", "/api/v4/user/runners") == 0  # no GitLab runner created
    assert gitlab.runners == {}
    assert runner_row(settings, job_id) is None  # nothing reserved, nothing to launch
    job = job_row(settings, job_id)
    assert job is not None
    assert job.phase == "unverified"
    assert job.error is not None
    assert job.error.startswith("not verified: ")


def test_a_pending_job_is_not_launched_while_gitlab_cannot_be_asked(
    client: TestClient, settings: Settings, gitlab: FakeGitLab
) -> None:
    gitlab.jobs[(380, 9601)] = {"id": 9601, "status": "pending", "tag_list": ["aws"]}
    answer = post(client, hook(9601, "pending", 380), send_headers(ACME))
    gitlab.fail_with = 503
    plan = handlers.plan_start(
        event(settings, answer.json()["eventId"]), context(settings, "plan-start")
    )
    assert plan["action"] == "skip"
    assert "could not be asked" in plan["reason"]
    job = job_row(settings, 9601)
    assert job is not None
    assert job.phase == "failed"  # the reconcile loop starts it again later
    assert job.payload is not None
    gitlab.fail_with = None
    plan = handlers.plan_start(
        event(settings, answer.json()["eventId"]), context(settings, "plan-start")
    )
    assert plan["action"] == "ec2"


def test_a_confirmed_pending_job_launches(
    client: TestClient, settings: Settings, gitlab: FakeGitLab
) -> None:
    gitlab.jobs[(382, 9701)] = {"id": 9701, "status": "pending", "tag_list": ["aws"]}
    answer = post(client, hook(9701, "pending", 382), send_headers(GROUP))
    plan = handlers.plan_start(
        event(settings, answer.json()["eventId"]), context(settings, "plan-start")
    )
    assert plan["action"] == "ec2"
    assert gitlab.count("POST", "/api/v4/user/runners") == 1


# --- dedupe without the optional headers --------------------------------------------------------


def test_a_resent_hook_without_dedupe_headers_is_processed_once(
    client: TestClient, settings: Settings
) -> None:
    pending = hook(9801, "pending", 380)
    first = post(client, pending, send_headers(ACME, dedupe_headers=False))
    again = post(client, pending, send_headers(ACME, dedupe_headers=False))
    assert first.status_code == again.status_code == 200
    assert "eventId" in first.json()
    assert again.json() == {"duplicate": True}
    # the same delivery first with its headers, then replayed without them
    running = hook(9801, "running", 380, runner=runner_block(5, "shared-runner"))
    assert "eventId" in post(client, running, send_headers(ACME)).json()
    replay = post(client, running, send_headers(ACME, dedupe_headers=False))
    assert replay.json() == {"duplicate": True}
    # a real next transition is a new event
    success = hook(9801, "success", 380, runner=runner_block(5, "shared-runner"))
    assert "eventId" in post(client, success, send_headers(ACME, dedupe_headers=False)).json()
    assert stored(settings)[0] == 3


def test_a_hook_forged_for_another_project_cannot_take_a_real_hooks_dedupe_key(
    client: TestClient, settings: Settings
) -> None:
    """Same job id, status and times, but another project (the forger's own): the real hook
    that follows is still processed."""
    forged = hook(9901, "pending", 382)  # the group token's own project
    assert "eventId" in post(client, forged, send_headers(GROUP, dedupe_headers=False)).json()
    real = hook(9901, "pending", 380)
    assert "eventId" in post(client, real, send_headers(ACME, dedupe_headers=False)).json()


# --- settings -----------------------------------------------------------------------------------


def test_token_syntax_errors_name_the_variable_and_never_the_token(
    settings_factory: Callable[..., Settings],
) -> None:
    for bad, problem in [
        ("s3cr3t-value", "entry 1 is not <token>@<scope>"),
        ("s3cr3t-value@group:12", "carry no group id"),
        ("s3cr3t-value@team:acme", "is not project:<id>"),
        ("s3cr3t-value@project:1;s3cr3t-value@project:2", "listed twice"),
    ]:
        with pytest.raises(ConfigError) as raised:
            settings_factory(gitlab={"webhook_tokens": bad})
        assert str(raised.value).startswith("SMOKEHOUSE_GITLAB_WEBHOOK_TOKENS: ")
        assert problem in str(raised.value)
        assert "s3cr3t" not in str(raised.value)


def test_tokens_match_in_constant_time_and_keep_their_scope(
    settings_factory: Callable[..., Settings],
) -> None:
    grants = webhook_grants(
        settings_factory(
            gitlab={"webhook_tokens": TOKENS, "webhook_token": "legacy-global-1-0b5d3e8a6f2c1d"}
        )
    )
    assert [g.is_global for g in grants] == [False, False, False, True]
    acme = match_token(ACME, grants)
    assert acme is not None
    assert acme.scope.allows(380, None)
    assert not acme.scope.allows(381, "acme/api-but-not-380")
    group = match_token(GROUP, grants)
    assert group is not None
    assert group.scope.allows(None, "ACME/Sub/Project")
    assert not group.scope.allows(None, "acme-other/x")
    assert match_token("legacy-global-1-0b5d3e8a6f2c1d", grants) is not None
    assert match_token(ACME[:-1], grants) is None
    assert ACME not in repr(grants)


def test_a_global_token_still_works_and_is_warned_about(
    settings_factory: Callable[..., Settings],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_factory(
        database_url=database_url,
        access_keys=KEYS,
        gitlab={"webhook_token": "legacy-global-token-1-7c2e9a4f"},
    )
    with (
        caplog.at_level(logging.WARNING, logger="smokehouse.runners"),
        TestClient(create_app(settings)) as client,
    ):
        answer = post(
            client, hook(9991, "pending", 381), send_headers("legacy-global-token-1-7c2e9a4f")
        )
        assert answer.status_code == 200
    warned = [r.getMessage() for r in caplog.records if "every project" in r.getMessage()]
    assert len(warned) == 1
    assert "legacy-global-token-1-7c2e9a4f" not in warned[0]
