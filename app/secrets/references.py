"""Dynamic references, like CloudFormation's ``{{resolve:secretsmanager:…}}``: a string may hold
``{{resolve:smokehouse:<secret id>}}`` anywhere; :func:`resolve_references` returns a copy with
each replaced by the secret, right before the trusted call that needs it. The copy is never
written back: workflow history and results keep the reference."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import get_database
from app.secrets.store import resolve

REFERENCE = re.compile(r"\{\{resolve:smokehouse:(secret-[0-9a-f]{32})\}\}")


def reference(secret_id: str) -> str:
    return "{{resolve:smokehouse:" + secret_id + "}}"


def has_references(value: Any) -> bool:
    if isinstance(value, str):
        return REFERENCE.search(value) is not None
    if isinstance(value, dict):
        return any(has_references(v) for v in value.values())
    if isinstance(value, list):
        return any(has_references(v) for v in value)
    return False


def _substitute(value: Any, session: Session, settings: Settings) -> Any:
    if isinstance(value, str):
        return REFERENCE.sub(lambda m: resolve(session, settings, m.group(1)), value)
    if isinstance(value, dict):
        return {k: _substitute(v, session, settings) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, session, settings) for v in value]
    return value


def resolve_references(value: Any, settings: Settings, session: Session | None = None) -> Any:
    """``value`` with every reference resolved (the same object when it holds none)."""
    if not has_references(value):
        return value
    if session is not None:
        return _substitute(value, session, settings)
    with get_database(settings.sqlalchemy_url).session() as own:
        return _substitute(value, own, settings)
