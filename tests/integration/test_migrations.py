"""Alembic owns the schema: migrations apply on SQLite and PostgreSQL and match the models."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.command import downgrade
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import app.models  # noqa: F401
from app.db import Base, make_engine
from app.migrate import MIGRATIONS, alembic_config, current_revision, upgrade

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_downgrade_to_base_and_up_again(database_url: str) -> None:
    head = current_revision(database_url)
    assert head is not None
    downgrade(alembic_config(database_url), "base")
    engine = make_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(database_url)
    assert current_revision(database_url) == head


def test_upgrade_is_idempotent(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)
    assert current_revision(database_url) is not None


#: Migrations whose upgrade may drop something, and why nothing a user stored is lost.
DROPS_ALLOWED: dict[str, str] = {}
DESTRUCTIVE_CALLS = {"drop_table", "drop_column"}
DESTRUCTIVE_SQL = re.compile(r"\b(DELETE\s+FROM|TRUNCATE|DROP\s+TABLE|DROP\s+COLUMN)\b", re.I)


@pytest.mark.parametrize(
    "migration", sorted(MIGRATIONS.glob("versions/[0-9]*_*.py")), ids=lambda p: p.name
)
def test_upgrades_never_drop_user_data(migration: Path) -> None:
    """An upgrade adds and reshapes; it never drops a table or column or deletes rows (the
    upgrade test shows the rows survive; this keeps the next migration honest)."""
    tree = ast.parse(migration.read_text())
    upgrade_fn = next(
        node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "upgrade"
    )
    found = []
    for node in ast.walk(upgrade_fn):
        if isinstance(node, ast.Attribute) and node.attr in DESTRUCTIVE_CALLS:
            found.append(node.attr)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += DESTRUCTIVE_SQL.findall(node.value)
    if migration.name.split("_")[0] in DROPS_ALLOWED:
        return
    assert found == [], f"{migration.name} drops data in upgrade(): {found}"
