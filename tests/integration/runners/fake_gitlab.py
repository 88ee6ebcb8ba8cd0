"""A small real HTTP stand-in for the few GitLab API v4 calls smokehouse makes.

GitLab itself can't run here, so this serves, on a free local port:
``GET /api/v4/projects/:id/jobs/:job_id``, ``GET /api/v4/projects/:id/jobs?scope[]=pending``,
``GET /api/v4/projects/:id``, ``GET /api/v4/groups/:path/projects``,
``POST /api/v4/projects/:id/jobs/:job_id/cancel`` and ``.../retry`` (201 with the new job),
``POST /api/v4/user/runners`` (201 with a ``glrt-`` token) and ``DELETE /api/v4/runners/:id``
(204, 404 when unknown), with ``PRIVATE-TOKEN`` checking (401
``{"message": "401 Unauthorized"}``) and GitLab's error shapes (``{"message": ...}`` for
not-found, ``{"error": ...}`` for parameter validation).

    with FakeGitLab() as gl:
        gl.jobs[(7, 42)] = {"id": 42, "name": "build", "tag_list": ["docker"]}
        client = GitLabClient(gl.url, gl.token)
        gl.fail_with = 503            # every request fails with 503 ...
        gl.fail_times = 1             # ... only the next one (None: until reset)
        gl.fail_only = "POST /api/v4/user/runners"  # ... only requests to this
        gl.delay = 2.0                # answer slowly (timeouts)
        gl.projects[7] = {"id": 7, "path_with_namespace": "acme/api"}
        gl.hook(payload)              # GitLab's own state moves as a Job Hook says
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

RUNNER_TYPES = ("instance_type", "group_type", "project_type")
JOB = re.compile(r"^/api/v4/projects/([^/]+)/jobs/(\d+)$")
RUNNER = re.compile(r"^/api/v4/runners/(\d+)$")
PROJECT = re.compile(r"^/api/v4/projects/(\d+)$")
JOBS = re.compile(r"^/api/v4/projects/([^/]+)/jobs$")
GROUP_PROJECTS = re.compile(r"^/api/v4/groups/([^/]+)/projects$")
JOB_ACTION = re.compile(r"^/api/v4/projects/(\d+)/jobs/(\d+)/(cancel|retry)$")
TERMINAL = ("success", "failed", "canceled", "skipped")


class FakeGitLab:
    def __init__(self, token: str | None = None) -> None:
        self.token = token or f"glpat-{secrets.token_urlsafe(15)}"
        self.jobs: dict[tuple[int, int], dict[str, Any]] = {}
        self.projects: dict[int, dict[str, Any]] = {}
        self.runners: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_with: int | None = None
        self.fail_times: int | None = None
        self.fail_only: str | None = None  # e.g. "POST /api/v4/user/runners": fail only those
        self.delay = 0.0
        self.lock = threading.Lock()
        self._next_runner_id = 1000
        self.next_job_id = 900_000  # ids of the jobs a retry makes
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeGitLab:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def hook(self, payload: Any) -> None:
        """What GitLab knows before it sends a Job Hook: the job's status (a finished job
        stays finished) and the runner that took it, for a job this fake knows."""
        if not isinstance(payload, dict) or payload.get("object_kind") != "build":
            return
        with self.lock:
            job = self.jobs.get((payload.get("project_id"), payload.get("build_id")))  # type: ignore[arg-type]
            if job is None:
                return
            if job.get("status") not in TERMINAL:
                job["status"] = payload.get("build_status")
            if isinstance(payload.get("runner"), dict):
                job["runner"] = payload["runner"]

    def count(self, method: str, path: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and p == path)

    # Called by the handler, under the lock.
    def _failure(self, method: str, path: str) -> int | None:
        if self.fail_with is None:
            return None
        if self.fail_only is not None and f"{method} {path}" != self.fail_only:
            return None
        if self.fail_times is not None:
            if self.fail_times <= 0:
                return None
            self.fail_times -= 1
        return self.fail_with

    def _create_runner(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        runner_type = body.get("runner_type")
        if runner_type is None:
            return 400, {"error": "runner_type is missing"}
        if runner_type not in RUNNER_TYPES:
            return 400, {"error": "runner_type does not have a valid value"}
        for needed, kind in (("project_id", "project_type"), ("group_id", "group_type")):
            if runner_type == kind and body.get(needed) in (None, ""):
                return 400, {"message": f"400 Bad request - {needed} is missing"}
        tags = body.get("tag_list", [])
        if isinstance(tags, str):  # Grape accepts a comma-separated string or an array
            tags = [t.strip() for t in tags.split(",") if t.strip()]
        self._next_runner_id += 1
        runner_id = self._next_runner_id
        token = f"glrt-{secrets.token_urlsafe(15)}"
        self.runners[runner_id] = {
            "id": runner_id,
            "runner_type": runner_type,
            "description": body.get("description", ""),
            "run_untagged": _bool(body.get("run_untagged", True)),
            "tag_list": tags,
            "project_id": body.get("project_id"),
            "group_id": body.get("group_id"),
            "token": token,
        }
        return 201, {"id": runner_id, "token": token, "token_expires_at": None}

    def _job_action(self, project: int, job_id: int, action: str) -> tuple[int, dict[str, Any]]:
        """GitLab's cancel (201 with the job, finished or not) and retry (201 with the *new*
        job; 403 "Job is not retryable" while the job is not finished)."""
        job = self.jobs.get((project, job_id))
        if job is None:
            return 404, {"message": "404 Job Not Found"}
        if action == "cancel":
            if job.get("status") not in TERMINAL:
                job["status"] = "canceled"
            return 201, job
        if job.get("status") not in TERMINAL:
            return 403, {"message": "403 Forbidden - Job is not retryable"}
        self.next_job_id += 1
        retried = {**job, "id": self.next_job_id, "status": "pending", "runner": None}
        self.jobs[(project, self.next_job_id)] = retried
        return 201, retried


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("true", "1")


def _handler(gl: FakeGitLab) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if "json" in (self.headers.get("Content-Type") or ""):
                parsed = json.loads(raw or b"{}")
                return parsed if isinstance(parsed, dict) else {}
            return {k: v[-1] for k, v in parse_qs(raw.decode()).items()}

        def _serve(self, method: str) -> None:
            path = urlsplit(self.path).path
            self.query = parse_qs(urlsplit(self.path).query)
            body: dict[str, Any] = {}
            try:
                body = self._body() if method == "POST" else {}
            except ValueError:
                self._answer(400, {"message": "400 Bad request - malformed JSON"})
                return
            with gl.lock:
                gl.requests.append((method, path))
                failure = gl._failure(method, path)
                delay = gl.delay
            if delay:
                time.sleep(delay)
            if failure is not None:
                self._answer(failure, {"message": f"{failure} Service Unavailable (fake)"})
                return
            if self.headers.get("PRIVATE-TOKEN") != gl.token:
                self._answer(401, {"message": "401 Unauthorized"})
                return
            with gl.lock:
                self._route(method, path, body)

        def _route(self, method: str, path: str, body: dict[str, Any]) -> None:
            job = JOB.match(path)
            runner = RUNNER.match(path)
            project = PROJECT.match(path)
            jobs = JOBS.match(path)
            group = GROUP_PROJECTS.match(path)
            if method == "GET" and jobs:
                wanted = set(self.query.get("scope[]", []))
                ref = unquote(jobs.group(1))
                listed = [
                    j
                    for (p, _), j in sorted(gl.jobs.items())
                    if str(p) == ref and (not wanted or j.get("status") in wanted)
                ]
                self._answer(200, listed)
            elif method == "GET" and group:
                prefix = unquote(group.group(1)).casefold() + "/"
                self._answer(
                    200,
                    [
                        p
                        for p in gl.projects.values()
                        if str(p.get("path_with_namespace", "")).casefold().startswith(prefix)
                    ],
                )
            elif method == "GET" and project:
                found_project = gl.projects.get(int(project.group(1)))
                if found_project is None:
                    self._answer(404, {"message": "404 Project Not Found"})
                else:
                    self._answer(200, found_project)
            elif method == "GET" and job:
                project = unquote(job.group(1))
                found = (
                    gl.jobs.get((int(project), int(job.group(2)))) if project.isdigit() else None
                )
                if found is None:
                    self._answer(404, {"message": "404 Not found"})
                else:
                    self._answer(200, found)
            elif method == "POST" and (action := JOB_ACTION.match(path)):
                self._answer(
                    *gl._job_action(int(action.group(1)), int(action.group(2)), action.group(3))
                )
            elif method == "POST" and path == "/api/v4/user/runners":
                self._answer(*gl._create_runner(body))
            elif method == "DELETE" and runner:
                if gl.runners.pop(int(runner.group(1)), None) is None:
                    self._answer(404, {"message": "404 Runner Not Found"})
                else:
                    self._answer(204)
            else:
                self._answer(404, {"error": "404 Not Found"})

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler
