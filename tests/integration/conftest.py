"""What the integration modules share: the access keys their callers sign with, settings on a
migrated database of each kind (``database_url``: SQLite and PostgreSQL), and a client of the
real app. A module that needs something else overrides ``settings`` or ``client`` locally."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.graphql.subscriptions import active_subscriptions
from app.main import create_app
from tests.keys import KEYS  # an admin and a viewer key; see tests/keys.py


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], database_url: str) -> Settings:
    return settings_factory(database_url=database_url, access_keys=KEYS)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app, started and stopped like a server; once it stops no subscription may remain."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client
    assert active_subscriptions() == 0
