"""Leases: at most one holder of a name at a time, with a fencing token, on the database's clock.

Every periodic singleton (the scheduler's ticks, sweepers, reconcile, the autoscaler's pass for a
queue) acts only while it holds its lease, so any number of processes may run it and exactly one
acts; when the holder dies its lease lapses after ``ttl`` and the next ``acquire`` takes it.

A lease is a row (``leases``) taken with one conditional UPDATE: free or expired rows, or rows
already ours, are taken; anything else is left alone. The UPDATE is atomic on both backends
(PostgreSQL re-checks the WHERE on the row it locked; SQLite has one writer), so two contenders
never both win. Expiry is judged on the database's clock (PostgreSQL's ``now()``), not each
host's, so hosts with skewed clocks agree on who holds what; SQLite is one host by definition.

The **token** grows every time the lease changes holder. A holder that stalled past its expiry
(GC pause, partition) and wakes up still believing it leads is caught by :func:`fenced`: called
inside the transaction that writes the singleton's effect, it checks the token is still the
current one and, on PostgreSQL, locks the row ``FOR SHARE`` so a takeover waits for that write
to commit — the effect lands before the new holder starts, or not at all.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session

from app.db import Database, dialect_insert, utcnow
from app.leases.models import LeaseRow

__all__ = [
    "Lease",
    "LeaseRow",
    "acquire",
    "fenced",
    "held",
    "holder_id",
    "release",
    "renew",
]

log = logging.getLogger("smokehouse.leases")

_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease this process holds (or held): valid until ``expires_at`` by the database's clock."""

    name: str
    holder: str
    token: int
    expires_at: datetime


def holder_id(role: str = "") -> str:
    """A holder name unique to this process and call: ``<role>@<host>:<pid>:<nonce>``."""
    prefix = f"{role}@" if role else ""
    return f"{prefix}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _clock(session: Session) -> datetime:
    """Now, by the database's clock (PostgreSQL) or this host's (SQLite: one host)."""
    if session.get_bind().dialect.name == "postgresql":
        now: datetime = session.execute(select(func.now())).scalar_one()
        return now.astimezone(UTC)
    return utcnow()


def acquire(db: Database, name: str, holder: str, ttl_seconds: float) -> Lease | None:
    """Take ``name`` for ``holder`` (or extend it if ``holder`` has it); ``None`` if another
    live holder has it. The token grows only when the holder changes."""
    with db.session() as session:
        now = _clock(session)
        insert = dialect_insert(session)
        session.execute(
            insert(LeaseRow)
            .values(name=name, holder="", token=0, expires_at=_NEVER)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        expires = now + timedelta(seconds=ttl_seconds)
        row = session.execute(
            update(LeaseRow)
            .where(
                LeaseRow.name == name,
                or_(LeaseRow.holder == holder, LeaseRow.expires_at <= now),
            )
            .values(
                # SET expressions see the row as it was: same holder keeps its token.
                token=case((LeaseRow.holder == holder, LeaseRow.token), else_=LeaseRow.token + 1),
                holder=holder,
                expires_at=expires,
            )
            .returning(LeaseRow.token)
        ).first()
    return Lease(name, holder, int(row[0]), expires) if row is not None else None


def renew(db: Database, lease: Lease, ttl_seconds: float) -> Lease | None:
    """Extend ``lease``; ``None`` if it was lost (another holder took it after it lapsed)."""
    with db.session() as session:
        now = _clock(session)
        expires = now + timedelta(seconds=ttl_seconds)
        done = session.execute(
            update(LeaseRow)
            .where(
                LeaseRow.name == lease.name,
                LeaseRow.holder == lease.holder,
                LeaseRow.token == lease.token,
            )
            .values(expires_at=expires)
            .returning(LeaseRow.token)
        ).first()
    return replace(lease, expires_at=expires) if done is not None else None


def release(db: Database, lease: Lease) -> None:
    """Give ``lease`` up now (the next contender need not wait for it to lapse)."""
    with db.session() as session:
        session.execute(
            update(LeaseRow)
            .where(
                LeaseRow.name == lease.name,
                LeaseRow.holder == lease.holder,
                LeaseRow.token == lease.token,
            )
            .values(expires_at=_NEVER)
        )


def fenced(session: Session, lease: Lease) -> bool:
    """Inside a write transaction: is ``lease`` still the live, current one? On PostgreSQL the
    row is locked ``FOR SHARE`` until this transaction ends, so no takeover slips in between
    this check and the commit."""
    query = select(LeaseRow.token).where(
        LeaseRow.name == lease.name,
        LeaseRow.holder == lease.holder,
        LeaseRow.token == lease.token,
        LeaseRow.expires_at > _clock(session),
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    return session.execute(query).first() is not None


@dataclass
class Holding:
    """A lease kept alive by a background thread; ``lost`` is set if a renewal found it gone."""

    lease: Lease
    lost: threading.Event = field(default_factory=threading.Event)


@contextmanager
def held(db: Database, name: str, holder: str, ttl_seconds: float) -> Iterator[Holding | None]:
    """Hold ``name`` while the body runs, renewing it every third of ``ttl_seconds``; yields
    ``None`` (and runs nothing for you) when another holder has it. Released on exit."""
    lease = acquire(db, name, holder, ttl_seconds)
    if lease is None:
        yield None
        return
    holding = Holding(lease)
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(ttl_seconds / 3):
            try:
                renewed = renew(db, holding.lease, ttl_seconds)
            except Exception as exc:  # database away: try again; it may lapse meanwhile
                log.warning("could not renew lease %s: %s", name, exc)
                continue
            if renewed is None:
                log.warning("lease %s was taken over while held by %s", name, holder)
                holding.lost.set()
                return
            holding.lease = renewed

    keeper = threading.Thread(target=keep, name=f"lease:{name}", daemon=True)
    keeper.start()
    try:
        yield holding
    finally:
        stop.set()
        keeper.join()
        if not holding.lost.is_set():
            try:
                release(db, holding.lease)
            except Exception as exc:  # it lapses by itself
                log.warning("could not release lease %s: %s", name, exc)
