"""State machines as files: registered at start-up, idempotently, and kept in step with the
files (created, updated, deleted) without touching machines made through the API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import Settings
from app.db import get_database, utcnow
from app.workflows import definitions, service
from app.workflows.models import StateMachine
from tests.services import migrate

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], tmp_path: Path) -> Settings:
    mine = tmp_path / "defs" / "state_machines"
    mine.mkdir(parents=True)
    built = settings_factory(definitions_dir=tmp_path / "defs")
    migrate(built.sqlalchemy_url)
    return built


def machines(settings: Settings) -> dict[str, tuple[str, str | None]]:
    with get_database(settings.sqlalchemy_url).session() as session:
        rows = session.scalars(select(StateMachine)).all()
        return {m.name: (m.type, m.managed_by) for m in rows}


def test_shipped_and_user_machines_are_registered_idempotently(settings: Settings) -> None:
    assert settings.definitions_dir is not None
    mine = settings.definitions_dir / "state_machines"
    (mine / "fast.express.asl.json").write_text(json.dumps(PASS))
    first = definitions.apply_all(settings)
    shipped = [m.name for m in definitions.load_files([definitions.SHIPPED])[0]]
    assert "hello-world" in shipped
    assert sorted(first.created) == sorted(["fast", *shipped])
    found = machines(settings)
    assert found["hello-world"] == (
        "STANDARD",
        "definitions:app/definitions/state_machines/hello-world.asl.json",
    )
    assert found["fast"][0] == "EXPRESS"

    again = definitions.apply_all(settings)
    assert (again.created, again.updated, sorted(again.unchanged)) == (
        [],
        [],
        sorted(["fast", *shipped]),
    )

    (mine / "fast.express.asl.json").write_text(json.dumps({**PASS, "Comment": "changed"}))
    assert definitions.apply_all(settings).updated == ["fast"]
    (mine / "fast.express.asl.json").unlink()
    assert definitions.apply_all(settings).deleted == ["fast"]
    assert "fast" not in machines(settings)


def test_a_bad_file_changes_nothing_and_names_itself(settings: Settings) -> None:
    assert settings.definitions_dir is not None
    bad = settings.definitions_dir / "state_machines" / "broken.asl.json"
    bad.write_text('{"StartAt": "Nowhere", "States": {}}')
    with pytest.raises(definitions.DefinitionError, match=r"broken\.asl\.json"):
        definitions.apply_all(settings)
    assert machines(settings) == {}


def test_a_file_may_not_take_an_api_machines_name(settings: Settings) -> None:
    assert settings.definitions_dir is not None
    with get_database(settings.sqlalchemy_url).session() as session:
        service.create_machine(
            session,
            settings,
            name="taken",
            definition=json.dumps(PASS),
            role_arn="arn:aws:iam::000000000000:role/r",
            now=utcnow(),
        )
    (settings.definitions_dir / "state_machines" / "taken.asl.json").write_text(json.dumps(PASS))
    with pytest.raises(definitions.DefinitionError, match="not created from a definition file"):
        definitions.apply_all(settings)
