"""Tags on resources named by ARN (EventBridge buses and rules, Step Functions state machines):
one small store both domains use, so ``ListTagsForResource`` after a create answers what the
create was given (Terraform's AWS provider reads tags back after every create).

The store checks AWS's common tag rules (at most 50 per resource, keys 1 to 128 characters, values
up to 256, no ``aws:`` prefix) and raises :class:`TagError`; each domain words it as its API
does and checks first that the ARN names one of its resources.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import JSON, String, delete
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.db import Base

MAX_TAGS = 50


class ResourceTags(Base):
    __tablename__ = "resource_tags"

    arn: Mapped[str] = mapped_column(String(512), primary_key=True)
    tags: Mapped[dict[str, str]] = mapped_column(JSON)


class TagError(ValueError):
    """Tags AWS would refuse; ``too_many`` when the limit of 50 is what was broken."""

    def __init__(self, message: str, *, too_many: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_many = too_many


def _checked(tags: Mapping[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        if not 1 <= len(key) <= 128:
            raise TagError(f"Tag key '{key[:128]}' must be 1 to 128 characters long.")
        if len(value) > 256:
            raise TagError(f"The value of tag '{key}' must be at most 256 characters long.")
        if key.lower().startswith("aws:"):
            raise TagError(f"Tag key '{key}' uses the reserved prefix 'aws:'.")
    return dict(tags)


def tags_of(session: Session, arn: str) -> dict[str, str]:
    row = session.get(ResourceTags, arn)
    return dict(row.tags) if row is not None else {}


def tag(session: Session, arn: str, tags: Mapping[str, str]) -> None:
    """Add or overwrite tags; nothing changes if the result would break a rule."""
    merged = {**tags_of(session, arn), **_checked(tags)}
    if len(merged) > MAX_TAGS:
        raise TagError(f"A resource can have at most {MAX_TAGS} tags.", too_many=True)
    row = session.get(ResourceTags, arn)
    if row is None:
        session.add(ResourceTags(arn=arn, tags=merged))
    else:
        row.tags = merged


def untag(session: Session, arn: str, keys: Iterable[str]) -> None:
    gone = set(keys)
    row = session.get(ResourceTags, arn)
    if row is not None:
        row.tags = {k: v for k, v in row.tags.items() if k not in gone}


def forget(session: Session, arns: Iterable[str]) -> None:
    """Drop the tags of deleted resources."""
    names = list(arns)
    if names:
        session.execute(delete(ResourceTags).where(ResourceTags.arn.in_(names)))


def forget_prefix(session: Session, prefix: str) -> None:
    """Drop the tags of every resource whose key starts with ``prefix`` (a deleted bus: its
    own and its rules')."""
    session.execute(
        delete(ResourceTags).where(ResourceTags.arn.startswith(prefix, autoescape=True))
    )
