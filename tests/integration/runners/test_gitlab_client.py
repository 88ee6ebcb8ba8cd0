"""The GitLab API client against a real HTTP stand-in: job tag lookups degrade to None (so the
caller uses its configured map), runner creation surfaces GitLab's own reasons, and deleting is
idempotent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import ConfigError
from app.runners.gitlab import (
    CreatedRunner,
    GitLabClient,
    GitLabError,
    GitLabSettings,
    GitLabUnavailable,
    gitlab_client,
    load_gitlab_settings,
)
from tests.integration.runners.fake_gitlab import FakeGitLab
from tests.services import free_port

pytestmark = pytest.mark.integration

JOB_PATH = "/api/v4/projects/7/jobs/42"


@pytest.fixture
def gl() -> Iterator[FakeGitLab]:
    with FakeGitLab() as fake:
        fake.jobs[(7, 42)] = {"id": 42, "name": "build", "status": "pending", "tag_list": ["gpu"]}
        yield fake


@pytest.fixture
def client(gl: FakeGitLab) -> Iterator[GitLabClient]:
    with GitLabClient(gl.url, gl.token, timeout=2.0, retry_delay=0.05) as api:
        yield api


# -- job tags ---------------------------------------------------------------------------------


def test_job_tags_come_from_the_jobs_api(client: GitLabClient, gl: FakeGitLab) -> None:
    gl.jobs[(7, 43)] = {"id": 43, "tag_list": ["docker", "linux"]}
    assert client.job_tags(7, 42) == ["gpu"]
    assert client.job_tags(7, 43) == ["docker", "linux"]
    assert gl.requests == [("GET", JOB_PATH), ("GET", "/api/v4/projects/7/jobs/43")]


def test_an_untagged_job_has_an_empty_list_not_none(client: GitLabClient, gl: FakeGitLab) -> None:
    gl.jobs[(7, 44)] = {"id": 44, "tag_list": []}
    assert client.job_tags(7, 44) == []


def test_an_unknown_job_is_none_and_not_retried(client: GitLabClient, gl: FakeGitLab) -> None:
    assert client.job_tags(7, 999) is None
    assert gl.count("GET", "/api/v4/projects/7/jobs/999") == 1


def test_a_wrong_token_is_none_for_lookups(gl: FakeGitLab) -> None:
    with GitLabClient(gl.url, "glpat-wrong") as api:
        assert api.job_tags(7, 42) is None
    assert gl.count("GET", JOB_PATH) == 1


def test_one_5xx_is_retried(client: GitLabClient, gl: FakeGitLab) -> None:
    gl.fail_with, gl.fail_times = 503, 1
    assert client.job_tags(7, 42) == ["gpu"]
    assert gl.count("GET", JOB_PATH) == 2


def test_rate_limiting_is_retried_like_a_5xx(client: GitLabClient, gl: FakeGitLab) -> None:
    gl.fail_with, gl.fail_times = 429, 1
    assert client.job_tags(7, 42) == ["gpu"]
    gl.fail_with, gl.fail_times = 429, None
    with pytest.raises(GitLabUnavailable) as limited:
        client.delete_runner(1)
    assert limited.value.status == 429


def test_persistent_5xx_gives_none_after_one_retry(client: GitLabClient, gl: FakeGitLab) -> None:
    gl.fail_with = 502
    assert client.job_tags(7, 42) is None
    assert gl.count("GET", JOB_PATH) == 2


def test_a_slow_gitlab_times_out_to_none_quickly(gl: FakeGitLab) -> None:
    gl.delay = 1.5
    with GitLabClient(gl.url, gl.token, timeout=0.2, retry_delay=0.01) as api:
        began = time.monotonic()
        assert api.job_tags(7, 42) is None
        assert time.monotonic() - began < 1.4  # two short timeouts, not GitLab's pace
    assert gl.count("GET", JOB_PATH) == 2


def test_an_unreachable_gitlab_is_none_not_an_exception() -> None:
    with GitLabClient(f"http://127.0.0.1:{free_port()}", "t", timeout=1, retry_delay=0.01) as api:
        assert api.job_tags(7, 42) is None


def test_malformed_answers_are_none(client: GitLabClient, gl: FakeGitLab) -> None:
    gl.jobs[(7, 45)] = {"id": 45}  # no tag_list at all
    gl.jobs[(7, 46)] = {"id": 46, "tag_list": "gpu"}
    assert client.job_tags(7, 45) is None
    assert client.job_tags(7, 46) is None


def test_base_url_may_include_the_api_prefix(gl: FakeGitLab) -> None:
    with GitLabClient(gl.url + "/api/v4/", gl.token) as api:
        assert api.job_tags(7, 42) == ["gpu"]


# -- runners ----------------------------------------------------------------------------------


def test_create_runner_returns_the_authentication_token(
    client: GitLabClient, gl: FakeGitLab
) -> None:
    created = client.create_runner(
        description="smokehouse job 42",
        tags=["gpu", "linux"],
        run_untagged=False,
        runner_type="project_type",
        project_id=7,
    )
    assert isinstance(created, CreatedRunner)
    assert created.token.startswith("glrt-")
    posted = gl.runners[created.id]
    assert posted["token"] == created.token
    assert posted["runner_type"] == "project_type"
    assert posted["project_id"] == 7
    assert posted["tag_list"] == ["gpu", "linux"]
    assert posted["run_untagged"] is False
    assert posted["description"] == "smokehouse job 42"
    assert gl.requests == [("POST", "/api/v4/user/runners")]


def test_instance_and_group_runners(client: GitLabClient, gl: FakeGitLab) -> None:
    one = client.create_runner(
        description="a", tags=[], run_untagged=True, runner_type="instance_type"
    )
    two = client.create_runner(
        description="b", tags=["x"], run_untagged=True, runner_type="group_type", group_id=3
    )
    assert one.id != two.id
    assert one.token != two.token
    assert gl.runners[one.id]["tag_list"] == []
    assert gl.runners[one.id]["run_untagged"] is True
    assert gl.runners[two.id]["group_id"] == 3


def test_gitlab_refusals_carry_gitlabs_message(gl: FakeGitLab) -> None:
    with GitLabClient(gl.url, "glpat-wrong") as api, pytest.raises(GitLabError) as refused:
        api.create_runner(description="a", tags=[], run_untagged=True, runner_type="instance_type")
    assert refused.value.status == 401
    assert refused.value.message == "401 Unauthorized"
    assert not gl.runners


def test_a_forbidden_create_is_a_gitlab_error(client: GitLabClient, gl: FakeGitLab) -> None:
    gl.fail_with = 403
    with pytest.raises(GitLabError) as refused:
        client.create_runner(
            description="a", tags=[], run_untagged=True, runner_type="instance_type"
        )
    assert refused.value.status == 403
    assert "403" in str(refused.value)
    assert not isinstance(refused.value, GitLabUnavailable)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"runner_type": "shared"}, "runner_type"),
        ({"runner_type": "project_type"}, "project_id"),
        ({"runner_type": "group_type"}, "group_id"),
        ({"runner_type": "instance_type", "tags": ["a,b"]}, "commas"),
        ({"runner_type": "instance_type", "tags": [" "]}, "non-empty"),
    ],
)
def test_bad_runner_requests_fail_before_calling_gitlab(
    client: GitLabClient, gl: FakeGitLab, kwargs: dict[str, object], reason: str
) -> None:
    arguments: dict[str, object] = {"description": "d", "tags": [], "run_untagged": True}
    with pytest.raises(GitLabError, match=reason):
        client.create_runner(**{**arguments, **kwargs})  # type: ignore[arg-type]
    assert gl.requests == []


def test_create_is_not_retried(client: GitLabClient, gl: FakeGitLab) -> None:
    """A POST whose answer was lost may have created a runner: never create a second."""
    gl.fail_with, gl.fail_times = 503, 1
    with pytest.raises(GitLabUnavailable) as unavailable:
        client.create_runner(
            description="a", tags=[], run_untagged=True, runner_type="instance_type"
        )
    assert unavailable.value.status == 503
    assert gl.count("POST", "/api/v4/user/runners") == 1


def test_create_against_an_unreachable_gitlab_is_unavailable() -> None:
    with (
        GitLabClient(f"http://127.0.0.1:{free_port()}", "t", timeout=1) as api,
        pytest.raises(GitLabUnavailable, match="unreachable") as unavailable,
    ):
        api.create_runner(description="a", tags=[], run_untagged=True, runner_type="instance_type")
    assert unavailable.value.status == 0


def test_delete_runner_is_idempotent(client: GitLabClient, gl: FakeGitLab) -> None:
    created = client.create_runner(
        description="a", tags=[], run_untagged=True, runner_type="instance_type"
    )
    client.delete_runner(created.id)
    assert created.id not in gl.runners
    client.delete_runner(created.id)  # already gone: fine
    assert gl.count("DELETE", f"/api/v4/runners/{created.id}") == 2


def test_delete_retries_once_then_reports(client: GitLabClient, gl: FakeGitLab) -> None:
    created = client.create_runner(
        description="a", tags=[], run_untagged=True, runner_type="instance_type"
    )
    gl.fail_with, gl.fail_times = 500, 1
    client.delete_runner(created.id)
    assert created.id not in gl.runners
    gl.fail_with, gl.fail_times = 500, None
    with pytest.raises(GitLabUnavailable):
        client.delete_runner(created.id)


def test_delete_with_a_wrong_token_is_an_error(gl: FakeGitLab) -> None:
    gl.runners[5] = {"id": 5}
    with GitLabClient(gl.url, "glpat-wrong") as api, pytest.raises(GitLabError) as refused:
        api.delete_runner(5)
    assert refused.value.status == 401
    assert 5 in gl.runners


# -- configuration ----------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("URL", "API_TOKEN", "TIMEOUT_SECONDS"):
        monkeypatch.delenv(f"SMOKEHOUSE_GITLAB_{name}", raising=False)
    return monkeypatch


def test_no_url_means_no_client(clean_env: pytest.MonkeyPatch) -> None:
    assert gitlab_client(load_gitlab_settings()) is None
    assert gitlab_client(GitLabSettings()) is None


def test_client_from_the_environment(clean_env: pytest.MonkeyPatch, gl: FakeGitLab) -> None:
    clean_env.setenv("SMOKEHOUSE_GITLAB_URL", gl.url)
    clean_env.setenv("SMOKEHOUSE_GITLAB_API_TOKEN", gl.token)
    api = gitlab_client(load_gitlab_settings())
    assert api is not None
    with api:
        assert api.job_tags(7, 42) == ["gpu"]


def test_client_from_a_settings_object(gl: FakeGitLab) -> None:
    api = gitlab_client(GitLabSettings(url=gl.url, api_token=gl.token))
    assert api is not None
    with api:
        assert api.job_tags(7, 42) == ["gpu"]


def test_a_bad_url_names_the_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SMOKEHOUSE_GITLAB_URL", "gitlab.example.com")
    with pytest.raises(ConfigError, match="SMOKEHOUSE_GITLAB_URL"):
        gitlab_client(load_gitlab_settings())
