"""A whole workflow stack for tests: the app under uvicorn (in this process, so boto3 talks to
the real ``create_app``), real ``smokehouse worker`` subprocesses, and the database and broker
of one mode — embedded (SQLite + the SQLite broker) or production (PostgreSQL + Redis)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from app.config import Settings, load_settings
from app.main import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.integration.cli import cli_env, smokehouse_argv
from tests.services import (
    free_port,
    migrate,
    postgres_database,
    serve_app,
    tcp_open,
    unavailable,
    wait_for,
)

KEY_ID, KEY_SECRET = "AKADMIN", "admin-7Qw3vN9xK2pL5tR8yB4m"
HANDLERS = "tests.integration.workflows.handlers"
ROLE = "arn:aws:iam::000000000000:role/test"
FINISHED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
ECHO = {
    "StartAt": "Echo",
    "States": {
        "Echo": {"Type": "Task", "Resource": "arn:aws:states:::smokehouse:task:echo", "End": True}
    },
}


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.killed = False
        self.process = subprocess.Popen(
            # runners: the warm pool pass a pending job asks for (the autoscaler starts such a
            # worker in production)
            smokehouse_argv("worker", "--queues=workflows,bus,runners", "--concurrency=2"),
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill9(self) -> None:
        self.killed = True
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """Tests need no graceful shutdown: everything the worker used goes away with it."""
        if self.process.poll() is None:
            self.kill9()


@dataclass
class Stack:
    mode: str
    settings: Settings
    worker_env: dict[str, str]
    url: str
    tmp: Path
    workers: list[Worker] = field(default_factory=list)

    def client(self) -> Any:
        return boto3.client(
            "stepfunctions",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=KEY_SECRET,
            config=Config(retries={"max_attempts": 0}, read_timeout=120, inject_host_prefix=False),
        )

    def start_worker(self) -> Worker:
        worker = Worker(self.worker_env, self.tmp / f"worker{len(self.workers)}.log")
        self.workers.append(worker)
        return worker

    def check_alive(self) -> None:
        """Fail at once, with its log, if a worker exited that no test killed: waiting out
        every later test's timeout on a stack without a worker hides why."""
        for worker in self.workers:
            code = worker.process.poll()
            if code is not None and not worker.killed:
                log = worker.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{worker.log.name}: worker exited ({code}); its log:\n{log}")

    def check_workers(self, timeout: float = 30) -> None:
        """Fail fast (with the worker's log) unless a worker runs a Task state."""
        machine = self.create(f"ready-{len(self.workers)}", ECHO)
        try:
            status = self.wait(self.start(machine, {"ready": True}), timeout)["status"]
        except AssertionError:
            status = "TIMEOUT"
        if status != "SUCCEEDED":
            logs = "\n".join(p.read_text()[-3000:] for p in sorted(self.tmp.glob("worker*.log")))
            raise AssertionError(f"no worker ran a task ({status}); worker logs:\n{logs}")

    def create(self, name: str, definition: dict[str, Any], kind: str = "STANDARD") -> str:
        arn: str = self.client().create_state_machine(
            name=name, definition=json.dumps(definition), roleArn=ROLE, type=kind
        )["stateMachineArn"]
        return arn

    def start(self, machine_arn: str, data: Any = None, name: str | None = None) -> str:
        extra = {"name": name} if name else {}
        arn: str = self.client().start_execution(
            stateMachineArn=machine_arn, input=json.dumps({} if data is None else data), **extra
        )["executionArn"]
        return arn

    def wait(self, execution_arn: str, timeout: float = 30) -> dict[str, Any]:
        client = self.client()
        found: dict[str, Any] = {}

        def finished() -> bool:
            self.check_alive()
            found.update(client.describe_execution(executionArn=execution_arn))
            return found["status"] in FINISHED

        wait_for(finished, timeout, interval=0.1, what=f"{execution_arn} to finish")
        return found

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        client = self.client()
        pages = client.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
        return [event for page in pages for event in page["events"]]


def _serve(settings: Settings) -> Iterator[str]:
    with serve_app(create_app(settings)) as url:
        yield url


@contextmanager
def own_redis(tmp: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server")
    port = free_port()
    process = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        cwd=tmp,
    )
    try:
        wait_for(lambda: tcp_open(f"redis://127.0.0.1:{port}", port), 10, what="redis")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


@contextmanager
def stack(mode: str, tmp: Path, aws_env: dict[str, str], **overrides: Any) -> Iterator[Stack]:
    """A stack with one worker running; ``overrides`` are extra settings."""
    with ExitStack() as exit_stack:
        values: dict[str, Any] = {
            "data_dir": tmp / "data",
            "access_keys": f"{KEY_ID}:{KEY_SECRET}:admin",
            "handler_modules": HANDLERS,
            "log_format": "console",
            "log_level": "WARNING",
            "workflow_sweep_grace_seconds": 2,
            # the tests' own HTTP servers, and the S3 calls of the aws-sdk test (moto)
            "egress": {
                "allow": "127.0.0.1",
                "aws_sdk_allow": "s3:createBucket,s3:putObject,s3:getObject",
            },
            **overrides,
        }
        if mode == "production":
            values["database_url"] = exit_stack.enter_context(postgres_database(migrated=True))
            values["broker_url"] = exit_stack.enter_context(own_redis(tmp))
            values.setdefault("secret_key", TEST_SECRET_KEY)
        settings = load_settings(**values)
        migrate(settings.sqlalchemy_url)
        record = tmp / "records"
        record.mkdir(exist_ok=True)
        env = cli_env(
            data_dir=settings.data_dir,
            handler_modules=HANDLERS,
            log_format="console",
            log_level="WARNING",
            workflow_task_lease_seconds=settings.workflow_task_lease_seconds,
            workflow_sweep_grace_seconds=settings.workflow_sweep_grace_seconds,
            **{
                k: v for k, v in values.items() if k in ("database_url", "broker_url", "secret_key")
            },
        )
        env.update(aws_env)
        env.update(
            {
                f"SMOKEHOUSE_EGRESS_{name.upper()}": str(value)
                for name, value in settings.egress.model_dump().items()
            }
        )
        env["SMOKEHOUSE_TEST_RECORD_DIR"] = str(record)
        url = exit_stack.enter_context(contextmanager(_serve)(settings))
        built = Stack(mode, settings, env, url, tmp)
        built.start_worker()
        built.check_workers()
        try:
            yield built
        finally:
            for worker in built.workers:
                worker.stop()
