"""Migrations 0004 (scaling) and 0005 (queue messages) create exactly the scaling models' tables,
on SQLite and PostgreSQL, and downgrade cleanly to 0004 and 0003."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.command import downgrade
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

import app.queues.models  # registers queue_messages (moved out of scaling)
import app.scaling.models  # noqa: F401  (registers the scaling tables on Base.metadata)
from app.db import Base, make_engine
from app.migrate import alembic_config, current_revision, upgrade

pytestmark = pytest.mark.integration

TABLES = {"scaling_workers", "scaling_queues", "scaling_decisions"}
MESSAGES = {"queue_messages"}


def _table(diff: Any) -> str | None:
    """The table an Alembic autogenerate diff is about (tuples, or lists of modify_* tuples)."""
    item = diff[0] if isinstance(diff, list) else diff
    kind, target = item[0], item[1]
    if kind in ("add_table", "remove_table"):
        return str(target.name)
    if kind in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        return str(target.table.name)
    return str(item[2])  # add_column/remove_column/modify_*: (kind, schema, table, ...)


def test_scaling_tables_match_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            assert set(inspect(connection).get_table_names()) >= TABLES | MESSAGES
    finally:
        engine.dispose()
    ours = [d for d in diff if _table(d) in TABLES | MESSAGES]
    assert ours == [], f"scaling models and migrations 0004/0005 disagree: {ours}"


def _tables(database_url: str) -> set[str]:
    engine = make_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_downgrade_to_0003_and_back(database_url: str) -> None:
    """Through every later migration's downgrade too: each must undo itself cleanly."""
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert current_revision(database_url) == head
    downgrade(alembic_config(database_url), "0004")
    assert not MESSAGES & _tables(database_url)
    assert _tables(database_url) >= TABLES
    downgrade(alembic_config(database_url), "0003")
    assert not (TABLES | MESSAGES) & _tables(database_url)
    upgrade(database_url)
    assert current_revision(database_url) == head
