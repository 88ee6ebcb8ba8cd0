"""Handlers the scaling tests' workers load (``SMOKEHOUSE_HANDLER_MODULES``)."""

from __future__ import annotations

import time
from typing import Any

from app.handlers import HandlerContext, handler


@handler("scaling-test-sleep")
def sleep(payload: Any, context: HandlerContext) -> Any:
    """Hold the worker busy for ``payload["seconds"]``."""
    time.sleep(float(payload.get("seconds", 1)))
    return payload


@handler("scaling-test-mark")
def mark(payload: Any, context: HandlerContext) -> Any:
    """Sleep ``seconds``, then append ``<worker id> <invocation id>`` to the file ``path``."""
    import os

    time.sleep(float(payload.get("seconds", 0)))
    with open(payload["path"], "a") as out:
        out.write(f"{os.environ.get('SMOKEHOUSE_WORKER_ID', '?')} {context.invocation_id}\n")
    return None


@handler("scaling-test-double")
def double(payload: Any, context: HandlerContext) -> Any:
    """``{"n": 2 * n}``; appends the invocation id to ``path`` when given (counts runs)."""
    if payload.get("path"):
        with open(payload["path"], "a") as out:
            out.write(f"{context.invocation_id}\n")
    return {"n": 2 * payload["n"]}


@handler("scaling-test-fail")
def fail(payload: Any, context: HandlerContext) -> Any:
    raise RuntimeError(f"boom {payload}")


@handler("scaling-test-async")
def start_async(payload: Any, context: HandlerContext) -> Any:
    """Write the task token to ``path``; the test completes the message with it."""
    with open(payload["path"], "w") as out:
        out.write(context.extra["task_token"])
    return None


@handler("scaling-test-kill-worker")
def kill_worker(payload: Any, context: HandlerContext) -> Any:
    """Kill the pool process running it (-9): a message that takes down whichever worker
    receives it. Appends the attempt number to ``path`` first."""
    import os
    import signal

    with open(payload["path"], "a") as out:
        out.write(f"{context.attempt}\n")
    os.kill(os.getpid(), signal.SIGKILL)
    return None


@handler("scaling-test-settings")
def settings_seen(payload: Any, context: HandlerContext) -> Any:
    """What the worker running it was configured with (a scaled worker must have it all)."""
    settings = context.app_settings()
    return {
        "region": settings.region,
        "gitlab_url": settings.gitlab.url,
        "gitlab_api_token": bool(settings.gitlab.api_token),
        "secret_key": bool(settings.secret_key),
        "egress_allow": settings.egress.allow,
        "redis_url": settings.redis_url,
        "iot_cook_idle_seconds": settings.iot.cook_idle_seconds,
        "receive_cap": settings.queues.max_receive_count,
        "access_keys": bool(settings.access_keys.get_secret_value()),
        "aws_region": __import__("os").environ.get("AWS_DEFAULT_REGION"),
    }
