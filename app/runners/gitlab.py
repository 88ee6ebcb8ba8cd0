"""GitLab REST API v4 client: the few calls the runner autoscaler needs.

The Job Hook does not carry the job's own tags, so ``job_tags`` looks them up
(``GET /projects/:id/jobs/:job_id`` → ``tag_list``); a lookup that fails returns None so the
caller falls back to its configured map instead of failing the webhook's workflow. Ephemeral
runners are created with ``create_runner`` (``POST /user/runners`` → 201 with a ``glrt-``
runner authentication token, the flow that replaced registration tokens) and removed with
``delete_runner`` (``DELETE /runners/:id``; already gone counts as done, so it is idempotent).

Settings: ``SMOKEHOUSE_GITLAB_URL`` (unset → no GitLab API, ``gitlab_client`` returns None),
``SMOKEHOUSE_GITLAB_API_TOKEN`` (sent as ``PRIVATE-TOKEN``; needs the ``create_runner`` scope to
create runners), ``SMOKEHOUSE_GITLAB_TIMEOUT_SECONDS`` (default 5).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from app.config import load_section
from app.config.runners import GitLabSettings

log = logging.getLogger("smokehouse.runners.gitlab")

RUNNER_TYPES = ("instance_type", "group_type", "project_type")


def load_gitlab_settings(**overrides: object) -> GitLabSettings:
    """The ``SMOKEHOUSE_GITLAB_*`` section alone (tests, tools); code with Settings in hand
    reads ``settings.gitlab``."""
    return load_section(GitLabSettings, **overrides)


class GitLabError(Exception):
    """GitLab refused a call (``status``) and said why (``message``, GitLab's own words)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"GitLab API error {status}: {message}" if status else message)
        self.status = status
        self.message = message


class GitLabUnavailable(GitLabError):
    """GitLab could not be reached, timed out, answered 5xx or rate-limited us (429), even
    after one retry where retrying is safe: try later.

    ``status`` is GitLab's status, or 0 when no answer came back.
    """


@dataclass(frozen=True)
class CreatedRunner:
    id: int
    token: str  # the runner authentication token (glrt-…); GitLab shows it only once


def error_message(response: httpx.Response) -> str:
    """GitLab's reason: ``{"message": ...}`` (str, list or field → errors) or ``{"error": ...}``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        reason = body.get("message", body.get("error"))
        if isinstance(reason, dict):
            return "; ".join(
                f"{key} {', '.join(map(str, v)) if isinstance(v, list) else v}"
                for key, v in reason.items()
            )
        if isinstance(reason, list):
            return "; ".join(map(str, reason))
        if reason is not None:
            return str(reason)
    return str(body)[:500]


class GitLabClient:
    """A small synchronous client (httpx). Thread-safe; reuse one per process and ``close()`` it."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 5.0,
        retry_delay: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        if root.endswith("/api/v4"):
            root = root[: -len("/api/v4")]
        self.base_url = root
        self.retry_delay = retry_delay
        headers = {"Accept": "application/json", "User-Agent": "smokehouse-runners"}
        if token:
            headers["PRIVATE-TOKEN"] = token
        self._http = httpx.Client(
            base_url=f"{root}/api/v4", headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> GitLabClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, *, retry: bool, **kwargs: Any) -> httpx.Response:
        """One request; with ``retry``, one more try after a 5xx, 429, timeout or connection error.

        Raises GitLabUnavailable when no usable answer came back; other statuses are returned.
        """
        attempts = 2 if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:  # timeouts, refused connections, protocol errors
                failure: GitLabUnavailable = GitLabUnavailable(
                    0, f"GitLab unreachable ({method} {path}): {type(exc).__name__}: {exc}"
                )
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                failure = GitLabUnavailable(response.status_code, error_message(response))
            if attempt < attempts:
                log.info("GitLab %s %s failed (%s), retrying once", method, path, failure)
                time.sleep(self.retry_delay)
        raise failure

    def job_tags(self, project_id: int, job_id: int) -> list[str] | None:
        """The job's own ``tag_list``, or None when GitLab cannot say (unreachable, 401/403/404,
        5xx after one retry, a malformed answer). Never raises on network errors: the caller then
        uses its configured map, as the original did."""
        path = f"/projects/{int(project_id)}/jobs/{int(job_id)}"
        try:
            response = self._send("GET", path, retry=True)
        except GitLabUnavailable as exc:
            log.warning("job tags of %s/%s unavailable: %s", project_id, job_id, exc)
            return None
        if response.status_code != 200:
            log.warning(
                "job tags of %s/%s unavailable: %s %s",
                project_id,
                job_id,
                response.status_code,
                error_message(response),
            )
            return None
        try:
            tags = response.json().get("tag_list")
        except (ValueError, AttributeError):
            log.warning(
                "job %s/%s: GitLab answered something that is not a job", project_id, job_id
            )
            return None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            log.warning("job %s/%s: tag_list missing or malformed: %r", project_id, job_id, tags)
            return None
        return list(tags)

    def _object(self, path: str) -> dict[str, Any] | None:
        """GET one object: None on 404; GitLabError on other refusals, GitLabUnavailable when
        GitLab cannot be reached (after one retry)."""
        response = self._send("GET", path, retry=True)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise GitLabError(response.status_code, error_message(response))
        try:
            found = response.json()
        except ValueError:
            found = None
        if not isinstance(found, dict):
            raise GitLabError(response.status_code, f"GitLab's answer to GET {path} is no object")
        return found

    def job(self, project_id: int, job_id: int) -> dict[str, Any] | None:
        """The job as GitLab shows it *under* ``project_id`` (``GET /projects/:id/jobs/:job_id``):
        None when that project has no such job (GitLab answers 404 for another project's job)."""
        return self._object(f"/projects/{int(project_id)}/jobs/{int(job_id)}")

    def project(self, project: int | str) -> dict[str, Any] | None:
        """``GET /projects/:id`` (an id or a full path; ``path_with_namespace``...), None when
        there is none."""
        return self._object(f"/projects/{quote(str(project), safe='')}")

    def _list(self, path: str, params: dict[str, Any], pages: int = 5) -> list[dict[str, Any]]:
        """GET a paginated list (100 a page, at most ``pages``); GitLabError on a refusal."""
        found: list[dict[str, Any]] = []
        for page in range(1, pages + 1):
            response = self._send(
                "GET", path, retry=True, params={**params, "per_page": 100, "page": page}
            )
            if response.status_code != 200:
                raise GitLabError(response.status_code, error_message(response))
            items = response.json()
            if not isinstance(items, list):
                raise GitLabError(response.status_code, f"GitLab's answer to GET {path} is no list")
            found.extend(i for i in items if isinstance(i, dict))
            if len(items) < 100:
                break
        return found

    def pending_jobs(self, project: int | str) -> list[dict[str, Any]]:
        """``GET /projects/:id/jobs?scope[]=pending`` (``project``: an id or a full path)."""
        ref = quote(str(project), safe="")
        return self._list(f"/projects/{ref}/jobs", {"scope[]": "pending"})

    def group_projects(self, group: str) -> list[dict[str, Any]]:
        """``GET /groups/:path/projects`` with subgroups: the group's projects."""
        ref = quote(group, safe="")
        return self._list(
            f"/groups/{ref}/projects", {"include_subgroups": "true", "simple": "true"}
        )

    def create_runner(
        self,
        *,
        description: str,
        tags: list[str],
        run_untagged: bool,
        runner_type: str,
        project_id: int | None = None,
        group_id: int | None = None,
    ) -> CreatedRunner:
        """Create a runner (``POST /user/runners``) and return its id and authentication token.

        Not retried: a lost answer to a POST may still have created a runner, and a second
        try would create another. Raises GitLabError with GitLab's message on 4xx (bad input,
        missing ``create_runner`` scope) and GitLabUnavailable when GitLab cannot be reached.
        """
        if runner_type not in RUNNER_TYPES:
            raise GitLabError(400, f"runner_type must be one of {', '.join(RUNNER_TYPES)}")
        if runner_type == "project_type" and project_id is None:
            raise GitLabError(400, "project_id is required for a project_type runner")
        if runner_type == "group_type" and group_id is None:
            raise GitLabError(400, "group_id is required for a group_type runner")
        if any("," in tag or not tag.strip() for tag in tags):
            raise GitLabError(400, f"tags must be non-empty and contain no commas: {tags!r}")
        body: dict[str, Any] = {
            "runner_type": runner_type,
            "description": description,
            "run_untagged": run_untagged,
            "tag_list": ",".join(tag.strip() for tag in tags),
        }
        if runner_type == "project_type":
            body["project_id"] = project_id
        if runner_type == "group_type":
            body["group_id"] = group_id
        response = self._send("POST", "/user/runners", retry=False, json=body)
        if response.status_code not in (200, 201):
            raise GitLabError(response.status_code, error_message(response))
        try:
            created = response.json()
            return CreatedRunner(id=int(created["id"]), token=str(created["token"]))
        except (ValueError, KeyError, TypeError):
            raise GitLabError(
                response.status_code, "GitLab's answer has no runner id and token"
            ) from None

    def cancel_job(self, project_id: int, job_id: int) -> dict[str, Any] | None:
        """``POST /projects/:id/jobs/:job_id/cancel``: the job, or None when it cannot be
        canceled any more (already finished: GitLab answers 403/400) or is unknown (404)."""
        path = f"/projects/{int(project_id)}/jobs/{int(job_id)}/cancel"
        response = self._send("POST", path, retry=True)  # canceling twice is harmless
        if response.status_code in (400, 403, 404):
            return None
        if response.status_code not in (200, 201):
            raise GitLabError(response.status_code, error_message(response))
        found = response.json()
        return found if isinstance(found, dict) else None

    def retry_job(self, project_id: int, job_id: int) -> dict[str, Any]:
        """``POST /projects/:id/jobs/:job_id/retry``: the *new* job GitLab made (its ``id``).

        Not retried on a lost answer: a second retry would run the job twice."""
        path = f"/projects/{int(project_id)}/jobs/{int(job_id)}/retry"
        response = self._send("POST", path, retry=False)
        if response.status_code not in (200, 201):
            raise GitLabError(response.status_code, error_message(response))
        try:
            found = response.json()
            int(found["id"])
        except (ValueError, KeyError, TypeError):
            raise GitLabError(response.status_code, "GitLab's answer has no job id") from None
        return dict(found)

    def delete_runner(self, runner_id: int) -> None:
        """Delete a runner by id (``DELETE /runners/:id``); one already gone (404) is success.

        Retried once on 5xx/timeouts (deleting twice is harmless). Raises GitLabError on
        401/403 and GitLabUnavailable when GitLab cannot be reached.
        """
        response = self._send("DELETE", f"/runners/{int(runner_id)}", retry=True)
        if response.status_code in (200, 202, 204, 404):
            return
        raise GitLabError(response.status_code, error_message(response))


def gitlab_client(gitlab: GitLabSettings) -> GitLabClient | None:
    """A client for the configured GitLab (``settings.gitlab``), or None when
    ``SMOKEHOUSE_GITLAB_URL`` is unset."""
    if not gitlab.url:
        return None
    token = gitlab.api_token.get_secret_value() if gitlab.api_token else ""
    return GitLabClient(gitlab.url, token, timeout=gitlab.timeout_seconds)
