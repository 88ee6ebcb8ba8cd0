"""GitLab Job Hook payloads and headers, shaped as GitLab's documentation shows them
("Webhook events → Job events"): ``object_kind: build``, ``build_*`` fields, ``runner`` null
until a runner picks the job (then the *runner's* tags, not the job's), ``project`` and
``repository`` blocks. The job's own tags are not in the payload (as on GitLab)."""

from __future__ import annotations

import uuid
from typing import Any

TOKEN = "hook-5Gk2Rw8Yt3Mq7Hs1Bx9c"
INSTANCE = "https://gitlab.example.com"


def job_hook(
    job_id: int,
    status: str,
    *,
    project_id: int = 380,
    name: str = "test",
    stage: str = "test",
    runner: dict[str, Any] | None = None,
    pipeline_id: int = 2366,
) -> dict[str, Any]:
    started = "2026-11-26 16:00:05 UTC" if status not in ("created", "pending") else None
    finished = "2026-11-26 16:02:00 UTC" if status in ("success", "failed", "canceled") else None
    return {
        "object_kind": "build",
        "type": "build",
        "ref": "main",
        "tag": False,
        "before_sha": "2293ada6b400935a1378653304eaf6221e0fdb8f",
        "sha": "2293ada6b400935a1378653304eaf6221e0fdb8f",
        "retries_count": 0,
        "build_id": job_id,
        "build_name": name,
        "build_stage": stage,
        "build_status": status,
        "build_created_at": "2026-11-26 16:00:00 UTC",
        "build_started_at": started,
        "build_finished_at": finished,
        "build_duration": 115.0 if finished else None,
        "build_queued_duration": 5.0 if started else None,
        "build_allow_failure": False,
        "build_failure_reason": "script_failure" if status == "failed" else "unknown_failure",
        "pipeline_id": pipeline_id,
        "runner": runner,
        "project_id": project_id,
        "project_name": "gitlab-org/gitlab-test",
        "user": {
            "id": 3,
            "name": "User",
            "username": "user",
            "avatar_url": "https://gitlab.example.com/uploads/user/avatar/3/avatar.png",
            "email": "user@example.com",
        },
        "commit": {
            "id": pipeline_id,
            "name": None,
            "sha": "2293ada6b400935a1378653304eaf6221e0fdb8f",
            "message": "test\n",
            "author_name": "User",
            "author_email": "user@example.com",
            "author_url": "https://gitlab.example.com/user",
            "status": status,
            "duration": None,
            "started_at": started,
            "finished_at": finished,
        },
        "repository": {
            "name": "gitlab_test",
            "url": "git@gitlab.example.com:gitlab-org/gitlab-test.git",
            "description": "Atque in sunt eos similique dolores voluptatem.",
            "homepage": "https://gitlab.example.com/gitlab-org/gitlab-test",
            "git_ssh_url": "git@gitlab.example.com:gitlab-org/gitlab-test.git",
            "git_http_url": "https://gitlab.example.com/gitlab-org/gitlab-test.git",
            "visibility_level": 20,
        },
        "project": {
            "id": project_id,
            "name": "Gitlab Test",
            "description": "Atque in sunt eos similique dolores voluptatem.",
            "web_url": "https://gitlab.example.com/gitlab-org/gitlab-test",
            "avatar_url": None,
            "git_ssh_url": "git@gitlab.example.com:gitlab-org/gitlab-test.git",
            "git_http_url": "https://gitlab.example.com/gitlab-org/gitlab-test.git",
            "namespace": "Gitlab Org",
            "visibility_level": 20,
            "path_with_namespace": "gitlab-org/gitlab-test",
            "default_branch": "main",
            "ci_config_path": None,
        },
        "environment": None,
    }


def runner_block(runner_id: int, description: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": runner_id,
        "description": description,
        "runner_type": "instance_type",
        "active": True,
        "is_shared": True,
        "tags": tags or [],
    }


def headers(
    key: str | None = None, *, token: str = TOKEN, event: str = "Job Hook"
) -> dict[str, str]:
    """What GitLab sends: a fresh event UUID per delivery; ``Idempotency-Key`` stable across
    retries of one delivery (pass the same ``key`` to simulate a retry)."""
    return {
        "Content-Type": "application/json",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Instance": INSTANCE,
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        "Idempotency-Key": key or str(uuid.uuid4()),
        "User-Agent": "GitLab/17.6.0",
    }
