"""A live smokehouse per mode for ``boto3.client("sqs")``: embedded (SQLite, the embedded MQTT
broker carrying long-poll wake-ups) and production (PostgreSQL, Redis pub/sub). One server per
mode for the session; each test makes its own queues (``uid``)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from app.config import Settings, load_settings
from app.main import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.integration.cli import cli_env, smokehouse_argv
from tests.services import (
    free_port,
    migrated_sqlite,
    postgres_database,
    require_redis,
    serve_app,
    tcp_open,
    wait_for,
)

ADMIN_SECRET, VIEWER_SECRET = "sqs-admin-3Kd8Pw2Lq6Xz9Vb4", "sqs-viewer-7Hn2Mc5Rt8Jw1Qe6"
KEYS = f"AKSQS:{ADMIN_SECRET}:admin,AKSQSRO:{VIEWER_SECRET}:viewer"
REGION = "us-east-1"
ACCOUNT = "000000000000"


@dataclass
class Live:
    url: str
    settings: Settings
    mode: str

    def client(
        self, key_id: str = "AKSQS", secret: str = ADMIN_SECRET, service: str = "sqs", **config: Any
    ) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(retries={"total_max_attempts": 1}, read_timeout=30, **config),
        )


@pytest.fixture(scope="session")
def _embedded_broker(tmp_path_factory: Any) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        smokehouse_argv("mqtt-broker"),
        env=cli_env(
            data_dir=tmp_path_factory.mktemp("sqs-broker"),
            embedded_mqtt_port=port,
            log_format="console",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: tcp_open(f"mqtt://127.0.0.1:{port}", port), 20, what="embedded broker")
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session", params=["embedded", "production"])
def live(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Live]:
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
                patch.delenv(name)
        home: Path = tmp_path_factory.mktemp("sqs-live")
        patch.chdir(home)
        if request.param == "embedded":
            port = request.getfixturevalue("_embedded_broker")
            settings = load_settings(
                data_dir=home / "data",
                database_url=migrated_sqlite(home / "sqs.db"),
                access_keys=KEYS,
                log_format="console",
                http_port=free_port(),
                embedded_mqtt_port=port,
                auto_migrate=False,
            )
            with serve_app(create_app(settings)) as url:
                yield Live(url, settings, "embedded")
            return
        with postgres_database(migrated=True) as database_url:
            settings = load_settings(
                data_dir=home / "data",
                database_url=database_url,
                redis_url=require_redis(),
                access_keys=KEYS,
                log_format="console",
                http_port=free_port(),
                embedded_mqtt_port=free_port(),
                auto_migrate=False,
                secret_key=TEST_SECRET_KEY,
            )
            with serve_app(create_app(settings)) as url:
                yield Live(url, settings, "production")


@pytest.fixture
def sqs(live: Live) -> Any:
    return live.client()


@pytest.fixture
def viewer(live: Live) -> Any:
    return live.client("AKSQSRO", VIEWER_SECRET)


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:8]
