"""Put, resolve and delete secrets inside the caller's unit of work (``app.db``): a secret is
stored with the rows that refer to it and goes away with them on rollback."""

from __future__ import annotations

import uuid

from cryptography.fernet import InvalidToken
from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.secrets.keys import VARIABLE, key_ring
from app.secrets.models import Secret
from app.secrets.redact import remember

PREFIX = "secret-"


class SecretNotFound(LookupError):
    """The id names no secret (deleted with its owner, or never stored). Says only the id."""


def is_secret_id(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX) and len(value) == len(PREFIX) + 32


def put(session: Session, settings: Settings, *, kind: str, owner: str, value: str) -> str:
    """Encrypt and store ``value``; returns its id (``secret-<uuid hex>``)."""
    ciphertext = key_ring(settings).encrypt(value.encode())
    secret_id = PREFIX + uuid.uuid4().hex
    session.add(
        Secret(id=secret_id, kind=kind, owner=owner, ciphertext=ciphertext, created_at=utcnow())
    )
    session.flush()
    remember(value)
    return secret_id


def resolve(session: Session, settings: Settings, secret_id: str) -> str:
    """The plaintext of ``secret_id``; remembered for redaction in this process."""
    row = session.get(Secret, secret_id)
    if row is None:
        raise SecretNotFound(f"secret {secret_id} does not exist")
    try:
        value = key_ring(settings).decrypt(bytes(row.ciphertext)).decode()
    except InvalidToken:
        raise SecretNotFound(
            f"secret {secret_id} cannot be decrypted with {VARIABLE} (was the key changed?)"
        ) from None
    remember(value)
    return value


def delete(session: Session, secret_id: str) -> None:
    session.execute(sql_delete(Secret).where(Secret.id == secret_id))


def delete_owned(session: Session, owner: str) -> int:
    """Delete every secret ``owner`` holds (its runner ended, its connection went away)."""
    result = session.execute(sql_delete(Secret).where(Secret.owner == owner))
    return int(getattr(result, "rowcount", 0) or 0)
