"""A live smokehouse (``create_app`` under uvicorn, in a thread) per database kind, and real boto3
``events`` clients signed with an admin and a viewer key.

One server per database for the whole session: starting uvicorn and migrating a fresh database
for every test would cost more than the tests. Tests therefore share the database and keep to
their own names (the ``uid`` fixture); list assertions filter by those names.

``enqueue`` and ``start_replay`` are recorders standing in for ``app.bus.outbox``'s broker calls:
they check, at the moment they are called, that what they were handed is already committed
(visible from another connection), which is the "commit, then enqueue" rule the API must keep.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from sqlalchemy import func, select

from app.bus import outbox
from app.bus.models import Delivery, Replay
from app.config import Settings, load_settings
from app.db import get_database
from app.main import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.services import free_port, migrated_sqlite, postgres_database, serve_app

ADMIN_SECRET, VIEWER_SECRET = "bus-admin-6Jd9Qs2Lw5Xe8Nc3", "bus-viewer-1Pz7Hk4Vt9Mb2Rf6"
KEYS = f"AKID:{ADMIN_SECRET}:admin,AKRO:{VIEWER_SECRET}:viewer"
REGION = "us-east-1"
ACCOUNT = "000000000000"


@dataclass
class Recorder:
    """Stands in for the Celery hand-off; remembers what was handed over and when."""

    database_url: str
    enqueued: list[list[str]] = field(default_factory=list)
    enqueued_committed: list[bool] = field(default_factory=list)
    replays: list[str] = field(default_factory=list)
    replay_committed: list[bool] = field(default_factory=list)
    fail_replay_start: bool = False

    def enqueue(self, delivery_ids: list[str]) -> None:
        with get_database(self.database_url).session() as session:
            visible = session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.id.in_(delivery_ids))
            )
        self.enqueued.append(list(delivery_ids))
        self.enqueued_committed.append(visible == len(delivery_ids))

    def start_replay(self, name: str) -> None:
        if self.fail_replay_start:
            raise ConnectionError("broker unreachable")
        with get_database(self.database_url).session() as session:
            self.replay_committed.append(session.get(Replay, name) is not None)
        self.replays.append(name)


@dataclass
class Live:
    url: str
    settings: Settings
    recorder: Recorder

    def client(self, key_id: str = "AKID", secret: str = ADMIN_SECRET, **config: Any) -> Any:
        return boto3.client(
            "events",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}, **config),
        )

    def session(self) -> Any:
        return get_database(self.settings.sqlalchemy_url).session()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def bus_database_url(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[str]:
    """Like ``database_url`` in tests/conftest.py, but one per session (see the module doc)."""
    if request.param == "sqlite":
        yield migrated_sqlite(tmp_path_factory.mktemp("bus-sqlite") / "test.db")
        return
    with postgres_database(migrated=True) as url:
        yield url


@pytest.fixture(scope="session")
def live(bus_database_url: str, tmp_path_factory: Any) -> Iterator[Live]:
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
                patch.delenv(name)
        home: Path = tmp_path_factory.mktemp("bus-live")
        patch.chdir(home)
        settings = load_settings(
            data_dir=home / "data",
            database_url=bus_database_url,
            access_keys=KEYS,
            log_format="console",
            http_port=free_port(),
            embedded_mqtt_port=free_port(),
            auto_migrate=False,
            # production needs the secret store's key given (embedded generates one)
            secret_key=TEST_SECRET_KEY if bus_database_url.startswith("postgresql") else None,
        )
        recorder = Recorder(settings.sqlalchemy_url)
        with serve_app(create_app(settings)) as url:
            yield Live(url, settings, recorder)


@pytest.fixture(autouse=True)
def _wired(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand the recorder in for the broker (``app.bus.outbox``) for this test."""
    if "live" not in request.fixturenames:
        return
    live: Live = request.getfixturevalue("live")
    live.recorder.fail_replay_start = False
    monkeypatch.setattr(
        outbox,
        "enqueue_deliveries",
        lambda settings, ids, countdown=None: live.recorder.enqueue(ids),
    )
    monkeypatch.setattr(
        outbox, "start_replay", lambda settings, name: live.recorder.start_replay(name)
    )


@pytest.fixture
def events(live: Live) -> Any:
    return live.client()


@pytest.fixture
def raw_events(live: Live) -> Any:
    """A client that skips botocore's own parameter checks, to reach the server's."""
    return live.client(parameter_validation=False)


@pytest.fixture
def viewer(live: Live) -> Any:
    return live.client("AKRO", VIEWER_SECRET)


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:8]
