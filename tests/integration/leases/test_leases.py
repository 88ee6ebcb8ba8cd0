"""Leases on SQLite and PostgreSQL: one holder at a time, tokens that fence a stale holder."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import update

from app.db import get_database
from app.leases import Lease, LeaseRow, acquire, fenced, held, release, renew
from tests.services import migrated_sqlite

pytestmark = pytest.mark.integration

LONG = 60.0
PAST = datetime(2000, 1, 1, tzinfo=UTC)


def lapse(url: str, name: str) -> None:
    """Make ``name``'s lease look expired (time passing, without waiting for it)."""
    with get_database(url).session() as session:
        session.execute(update(LeaseRow).where(LeaseRow.name == name).values(expires_at=PAST))


def test_only_one_holder_until_it_lapses(database_url: str) -> None:
    db = get_database(database_url)
    first = acquire(db, "scheduler", "a", LONG)
    assert first is not None
    assert acquire(db, "scheduler", "b", LONG) is None
    again = acquire(db, "scheduler", "a", LONG)
    assert again is not None
    assert again.token == first.token
    lapse(database_url, "scheduler")
    second = acquire(db, "scheduler", "b", LONG)
    assert second is not None
    assert second.token == first.token + 1
    assert acquire(db, "scheduler", "a", LONG) is None


def test_a_stale_holder_is_fenced_and_cannot_renew(database_url: str) -> None:
    db = get_database(database_url)
    stale = acquire(db, "task:bus.sweep", "a", LONG)
    assert stale is not None
    with db.session() as session:
        assert fenced(session, stale)
    lapse(database_url, "task:bus.sweep")
    with db.session() as session:
        assert not fenced(session, stale)  # lapsed: even before anyone takes it
    assert acquire(db, "task:bus.sweep", "b", LONG) is not None
    assert renew(db, stale, LONG) is None
    with db.session() as session:
        assert not fenced(session, stale)


def test_release_frees_at_once_and_only_for_its_holder(database_url: str) -> None:
    db = get_database(database_url)
    lease = acquire(db, "autoscaler:work", "a", LONG)
    assert lease is not None
    release(db, Lease(lease.name, "b", lease.token, lease.expires_at))  # not b's to release
    assert acquire(db, "autoscaler:work", "b", LONG) is None
    release(db, lease)
    taken = acquire(db, "autoscaler:work", "b", LONG)
    assert taken is not None
    assert taken.token == lease.token + 1


def test_held_renews_while_the_body_runs(database_url: str) -> None:
    db = get_database(database_url)
    with held(db, "reconcile", "a", 1.0) as holding:
        assert holding is not None
        time.sleep(1.6)  # longer than the lease: the keeper renewed it
        assert acquire(db, "reconcile", "b", 1.0) is None
        assert not holding.lost.is_set()
    assert acquire(db, "reconcile", "b", 1.0) is not None  # released on exit


def test_held_yields_none_to_a_second_holder(database_url: str) -> None:
    db = get_database(database_url)
    with held(db, "sweep", "a", LONG) as first, held(db, "sweep", "b", LONG) as second:
        assert first is not None
        assert second is None


def test_contenders_racing_never_both_win(database_url: str) -> None:
    db = get_database(database_url)
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def contend(holder: str) -> None:
        barrier.wait()
        if acquire(db, "race", holder, LONG) is not None:
            winners.append(holder)

    threads = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


class LeaseModel(RuleBasedStateMachine):
    """Any interleaving of acquire / renew / release / lapse by three holders: at most one live
    holder, the token grows exactly when the holder changes, and a lease is fenced exactly when
    it is the live one."""

    HOLDERS = ("a", "b", "c")
    url_factory: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.url = self.url_factory()
        self.db = get_database(self.url)
        self.leases: dict[str, Lease] = {}
        self.live: str | None = None  # who holds it now, unexpired
        self.row_holder: str | None = None  # who took it last (the row keeps it after expiry)
        self.token = 0

    @rule(holder=st.sampled_from(HOLDERS))
    def take(self, holder: str) -> None:
        got = acquire(self.db, "x", holder, LONG)
        if self.live not in (None, holder):
            assert got is None
            return
        assert got is not None
        expected = self.token if self.row_holder == holder else self.token + 1
        assert got.token == expected
        self.live, self.row_holder, self.token = holder, holder, got.token
        self.leases[holder] = got

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data())
    def keep(self, data: st.DataObject) -> None:
        holder = data.draw(st.sampled_from(sorted(self.leases)))
        got = renew(self.db, self.leases[holder], LONG)
        mine = holder == self.row_holder and self.leases[holder].token == self.token
        assert (got is not None) == mine  # only if nobody took it since
        if got is not None:
            self.live = holder

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data())
    def give_up(self, data: st.DataObject) -> None:
        holder = data.draw(st.sampled_from(sorted(self.leases)))
        release(self.db, self.leases[holder])
        if holder == self.live and self.leases[holder].token == self.token:
            self.live = None

    @rule()
    def time_passes(self) -> None:
        lapse(self.url, "x")
        self.live = None

    @invariant()
    def fencing_agrees(self) -> None:
        with self.db.session() as session:
            for holder, lease in self.leases.items():
                live = holder == self.live and lease.token == self.token
                assert fenced(session, lease) == live


@pytest.mark.parametrize("run", [0])
def test_lease_model(tmp_path: Any, run: int) -> None:
    counter = iter(range(10_000))
    LeaseModel.url_factory = staticmethod(
        lambda: migrated_sqlite(tmp_path / f"model-{next(counter)}.db")
    )
    case = LeaseModel.TestCase
    case.settings = settings(
        max_examples=25,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    case().runTest()
