"""Apply Alembic migrations from code (``smokehouse migrate``, API start-up, tests), and check
at every role's start that the database's schema is one this code understands."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.config import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

log = logging.getLogger(__name__)


def alembic_config(url: str) -> Config:
    # Alembic is imported only to migrate: a worker's start checks the schema without it.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def known_revisions() -> list[str]:
    """This code's revisions, oldest first. Read from the file names (``0019_….py`` is revision
    ``0019``; a unit test holds Alembic to it) because loading Alembic's script directory costs
    ~0.8 s, and every worker start pays for this check."""
    return sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def head_revision() -> str:
    return known_revisions()[-1]


def current_revision(url: str) -> str | None:
    """The database's revision; ``None`` when it was never migrated."""
    from app.db import get_database

    try:
        with get_database(url).engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None


def refuse_newer(url: str) -> None:
    """A database migrated by a newer smokehouse is refused: this code would misread its tables,
    and a downgrade is never automatic (it could drop what the newer release stored)."""
    current = current_revision(url)
    if current is not None and current not in known_revisions():
        raise ConfigError(
            "SMOKEHOUSE_DATABASE_URL",
            f"the database's schema is at revision {current}, newer than this smokehouse knows "
            f"(up to {head_revision()}): run the release that upgraded it, or restore a backup "
            "taken before that upgrade",
        )


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    refuse_newer(url)
    command.upgrade(alembic_config(url), revision)


def wait_for_schema(url: str, timeout: float) -> None:
    """Return once the schema is at this code's head. A role started with the ``migrate``
    one-shot still running (compose implementations that ignore ``depends_on`` conditions,
    Kubernetes) waits for it up to ``timeout``; a newer schema is refused at once."""
    head = head_revision()
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        refuse_newer(url)
        current = current_revision(url)
        if current == head:
            return
        if time.monotonic() >= deadline:
            raise ConfigError(
                "SMOKEHOUSE_DATABASE_URL",
                f"the database's schema is at revision {current or '(none)'} and this smokehouse "
                f"needs {head}: run `smokehouse migrate`",
            )
        if not waiting:
            log.info("waiting for migrations", extra={"current": current, "head": head})
            waiting = True
        time.sleep(0.5)
