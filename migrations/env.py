"""Alembic environment: the URL comes from Settings (or the caller), models from app.models."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

import app.models  # noqa: F401  (registers every table on Base.metadata)
from app.config import load_settings
from app.db import Base, make_engine

config = context.config
url = config.attributes.get("url") or load_settings().sqlalchemy_url


def run_migrations_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if connection.dialect.name == "postgresql":
            # Several API replicas may start at once: one migrates, the others wait.
            connection.execute(text("SELECT pg_advisory_lock(727274)"))
            connection.commit()
        if sqlite:
            # A batch migration rebuilds a table (copy, drop the old one, rename): with foreign
            # keys on, dropping the old one deletes every row that references it ON DELETE
            # CASCADE (widening state_machines.name emptied executions so). Off while migrating
            # (the pragma only takes effect outside a transaction), and checked after.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
            if broken:
                raise RuntimeError(f"the migration left rows with dangling references: {broken}")
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(727274)"))
            connection.commit()
    engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
