"""Deliver events to targets in batches: claim, attempt, record, then retry, finish or
dead-letter.

A batch (the deliveries of one task message) is claimed in one conditional UPDATE (atomic on
SQLite and PostgreSQL alike; on PostgreSQL rows another worker holds are skipped), so two
workers that got the same deliveries -- a redelivered message, a sweeper duplicate -- never
attempt one at the same time, and a finished delivery is never attempted again. The target calls
happen between two short transactions: no database lock is held while an HTTP endpoint thinks;
every outcome is recorded in the second. While the calls run the batch's claims are renewed
(every third of ``SMOKEHOUSE_BUS_CLAIM_SECONDS``), so a slow target (an Express workflow of up
to 5 minutes) is never attempted twice at once; a worker killed during the calls stops
renewing, the claims expire, and the sweeper sends the deliveries again (at-least-once: a
delivery whose call had succeeded runs again, and its consumer dedupes on the delivery id).

**Receive cap.** Every claim counts as an attempt, including one whose worker died before it
could record anything. A delivery claimed more than ``MaximumRetryAttempts + 1`` times — a
message that kills whichever worker takes it — is dead-lettered at its next claim instead of
being attempted again: never a crash loop.

Retry policy is EventBridge's: ``RetryPolicy.MaximumRetryAttempts`` (default 185) and
``MaximumEventAgeInSeconds`` (default 86,400), exponential backoff with jitter, ``Retry-After``
honoured; a non-retryable failure or an exhausted policy dead-letters the delivery.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, partial
from typing import Any

from sqlalchemy import String, any_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from app.bus.arns import Scope
from app.bus.models import DeadLetter, Delivery, DeliveryAttempt, Event
from app.bus.outbox import BATCH_SIZE, deliver_after_commit, enqueue_deliveries
from app.bus.targets import DeliveryContext, TargetFailure, adapter_for
from app.bus.transform import render_input
from app.config import Settings
from app.db import (
    UtcDateTime,
    among,
    get_database,
    insert_rows,
    recordset_insert,
    rows_json,
    table_of,
    utcnow,
)

log = logging.getLogger("smokehouse.bus")

DEFAULT_MAX_RETRIES = 185
DEFAULT_MAX_AGE_SECONDS = 86_400
MAX_BACKOFF_SECONDS = 300.0
COUNTDOWN_LIMIT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = DEFAULT_MAX_RETRIES
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS

    @classmethod
    def of(cls, spec: dict[str, Any]) -> RetryPolicy:
        given = spec.get("RetryPolicy") or {}
        return cls(
            int(given.get("MaximumRetryAttempts", DEFAULT_MAX_RETRIES)),
            int(given.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE_SECONDS)),
        )


def backoff_seconds(attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
    """Exponential backoff with equal jitter (never zero, never above the cap), at least
    ``Retry-After``. ``attempt`` is the number of the attempt that just failed (1-based)."""
    ceiling = min(MAX_BACKOFF_SECONDS, 2.0 ** min(attempt - 1, 30))
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    return max(delay, retry_after or 0.0)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after a failed attempt: retry at ``retry_at``, or dead-letter with ``reason``."""

    retry_at: datetime | None
    reason: str | None = None


def judge_failure(
    failure: TargetFailure,
    *,
    attempt: int,
    created_at: datetime,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> Verdict:
    if not failure.retryable:
        return Verdict(None, "non-retryable error")
    if attempt > policy.max_retries:
        return Verdict(None, f"retry attempts exhausted ({policy.max_retries})")
    retry_at = now + timedelta(seconds=backoff_seconds(attempt, rng, failure.retry_after))
    if retry_at - created_at > timedelta(seconds=policy.max_age_seconds):
        return Verdict(None, f"maximum event age exceeded ({policy.max_age_seconds} s)")
    return Verdict(retry_at)


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: str
    attempt: int
    event: dict[str, Any]
    spec: dict[str, Any]
    rule_arn: str
    rule_name: str
    created_at: datetime
    received_at: datetime  # <aws.events.event.ingestion-time>


@dataclass(slots=True)
class Attempt:
    """One claimed delivery's attempt: what the target said, when."""

    claimed: Claimed
    started: datetime
    finished: datetime | None = None
    status_code: int | None = None
    failure: TargetFailure | None = None


_RETURNED = (
    Delivery.id,
    Delivery.attempts,
    Delivery.event_id,
    Delivery.target_arn,
    Delivery.target_spec,
    Delivery.bus_name,
    Delivery.rule_name,
    Delivery.created_at,
)


def _claim(settings: Settings, delivery_ids: Sequence[str], now: datetime) -> list[Claimed]:
    """Claim every listed delivery that is due and unclaimed, in one ``UPDATE … RETURNING``,
    and read their events.

    On PostgreSQL it is one statement in one round trip (:func:`_postgres_claim`): the rows
    another worker holds locked at this moment are skipped, not waited for (``SKIP LOCKED``:
    that worker is claiming them), and a batch that is not full takes other due deliveries to
    the same targets with it, up to ``BATCH_SIZE``. Under a backlog, batches grow from the ten
    of one PutEvents to fifty, and the messages that carried those deliveries find them taken
    and cost one empty claim."""
    database = get_database(settings.sqlalchemy_url)
    params = {
        "ids": list(delivery_ids),
        "now": now,
        "soon": now + timedelta(seconds=1),
        "until": now + timedelta(seconds=settings.bus_claim_seconds),
    }
    rows: list[Sequence[Any]]
    if database.engine.dialect.name == "postgresql":
        with database.autocommit() as connection:
            rows = list(connection.execute(_postgres_claim(), params))
    else:
        with database.session() as session:
            claimed = list(session.execute(_sqlite_claim(), params))
            events = {
                e.id: e
                for e in session.execute(
                    select(Event.id, Event.envelope, Event.received_at).where(
                        Event.id.in_({row.event_id for row in claimed})
                    )
                )
            }
        rows = [
            (*row, events[row.event_id].envelope, events[row.event_id].received_at)
            for row in claimed
        ]
    scope = Scope(settings.region, settings.account_id)
    order = {delivery_id: n for n, delivery_id in enumerate(delivery_ids)}
    return sorted(
        (
            Claimed(
                delivery_id,
                attempts,
                dict(envelope),
                dict(spec),
                scope.rule_arn(bus_name, rule_name),
                rule_name,
                created_at,
                received_at,
            )
            for (
                delivery_id,
                attempts,
                _event_id,
                _target_arn,
                spec,
                bus_name,
                rule_name,
                created_at,
                envelope,
                received_at,
            ) in rows
        ),
        key=lambda c: order.get(c.delivery_id, len(order)),
    )


def _claim_values() -> dict[str, Any]:
    return {
        "claimed_until": bindparam("until", type_=UtcDateTime()),
        "attempts": Delivery.attempts + 1,
    }


def _free() -> Any:
    now = bindparam("now", type_=UtcDateTime())
    return or_(Delivery.claimed_until.is_(None), Delivery.claimed_until <= now)


@cache
def _postgres_claim() -> Any:
    """The claim as one statement: lock the listed deliveries that are due and free (skipping
    rows another worker has locked), lock up to ``BATCH_SIZE`` in all with other due deliveries
    to the same targets, claim them all, and return them with their events.

    The listed rows are found by their ids, never through the due index: a queue table's
    statistics lag behind a backlog, and a plan that looked for due rows first (the due index,
    "3 rows") read every pending row to find these fifty, 20 ms a claim with a few thousand
    queued. ``status || ''`` and ``coalesce`` keep the due index out of that part of the plan
    (with statistics of an empty table PostgreSQL may scan the table instead of the primary key:
    a cheap read, not the due-index walk)."""
    now = bindparam("now", type_=UtcDateTime())
    listed = (
        select(Delivery.id, Delivery.target_arn)
        .where(
            Delivery.id == any_(bindparam("ids", type_=postgresql.ARRAY(String))),
            Delivery.status.concat("") == "pending",
            func.coalesce(Delivery.next_attempt_at, now) <= bindparam("soon", type_=UtcDateTime()),
            _free(),
        )
        .with_for_update(skip_locked=True)
        .cte("listed")
    )
    room = func.greatest(BATCH_SIZE - select(func.count()).select_from(listed).scalar_subquery(), 0)
    same_targets = (
        select(Delivery.id)
        .where(
            Delivery.status == "pending",
            Delivery.next_attempt_at <= now,
            Delivery.target_arn.in_(select(listed.c.target_arn)),
            Delivery.id.not_in(select(listed.c.id)),
            _free(),
        )
        .order_by(Delivery.next_attempt_at)
        .limit(room)
        .with_for_update(skip_locked=True)
        .cte("same_targets")
    )
    claimed = (
        update(Delivery)
        .where(Delivery.id.in_(select(listed.c.id).union_all(select(same_targets.c.id))))
        .values(**_claim_values())
        .returning(*_RETURNED)
        .cte("claimed")
    )
    return select(claimed, Event.envelope, Event.received_at).join(
        Event, Event.id == claimed.c.event_id
    )


@cache
def _sqlite_claim() -> Any:
    """SQLite has one writer at a time: the conditional UPDATE alone is the claim."""
    return (
        update(Delivery)
        .where(
            Delivery.id.in_(bindparam("ids", expanding=True)),
            Delivery.status == "pending",
            Delivery.next_attempt_at <= bindparam("soon", type_=UtcDateTime()),
            _free(),
        )
        .values(**_claim_values())
        .returning(*_RETURNED)
        .execution_options(synchronize_session=False)
    )


@contextmanager
def _claims_kept(settings: Settings, claimed: Sequence[Claimed]) -> Iterator[None]:
    """Renew these attempts' claims while their target calls run (one statement per attempt
    number, so a claim another worker took after ours lapsed is never extended)."""
    stop = threading.Event()
    claim = timedelta(seconds=settings.bus_claim_seconds)
    by_attempt: dict[int, list[str]] = {}
    for c in claimed:
        by_attempt.setdefault(c.attempt, []).append(c.delivery_id)

    def keep() -> None:
        while not stop.wait(settings.bus_claim_seconds / 3):
            try:
                with get_database(settings.sqlalchemy_url).session() as session:
                    for attempt, ids in by_attempt.items():
                        session.execute(
                            update(Delivery)
                            .where(
                                Delivery.id.in_(ids),
                                Delivery.status == "pending",
                                Delivery.attempts == attempt,
                            )
                            .values(claimed_until=utcnow() + claim)
                            .execution_options(synchronize_session=False)
                        )
            except Exception as exc:  # the claims may lapse: at worst, an attempt again
                log.warning("could not renew %d delivery claims: %s", len(claimed), exc)

    keeper = threading.Thread(target=keep, name=f"claims:{claimed[0].delivery_id}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()


def deliver(settings: Settings, delivery_id: str, rng: random.Random | None = None) -> str:
    """Run one attempt of a delivery if it is due and unclaimed; return what happened."""
    return deliver_batch(settings, [delivery_id], rng).get(delivery_id, "skipped")


def deliver_batch(
    settings: Settings, delivery_ids: Sequence[str], rng: random.Random | None = None
) -> dict[str, str]:
    """Run one attempt of each listed delivery that is due and unclaimed: claim them in one
    statement, call their targets (HTTP targets concurrently, the rest in order), record every
    outcome in one transaction. Returns ``{delivery_id: outcome}`` for the ones attempted;
    the others were finished, not yet due or another worker's."""
    rng = rng or random.Random()
    claimed = _claim(settings, list(dict.fromkeys(delivery_ids)), utcnow())
    if not claimed:
        return {}
    attempts = [Attempt(c, utcnow()) for c in claimed]
    concurrent = [a for a in attempts if _is_http(a.claimed)]
    memo: dict[Any, Any] = {}  # the batch's: see DeliveryContext.memo
    with _claims_kept(settings, claimed):
        if len(concurrent) > 1:
            list(_http_pool().map(partial(_attempt, settings, memo=memo), concurrent))
        for attempt in attempts:
            if attempt.finished is None:
                _attempt(settings, attempt, memo)
    return _record(settings, attempts, rng)


#: Deliveries to HTTP endpoints one batch calls at once (over the egress client's pool).
HTTP_CONCURRENCY = 16
_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _http_pool() -> ThreadPoolExecutor:
    """The process's threads for HTTP calls, started once and kept: a pool per batch started
    sixteen threads for every fifty deliveries, 1.4 ms each. Made in the process that uses it
    (a fork's copy holds no threads, so it is never inherited)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (
                os.getpid(),
                ThreadPoolExecutor(HTTP_CONCURRENCY, thread_name_prefix="bus-http"),
            )
        return _pool[1]


def _is_http(claimed: Claimed) -> bool:
    adapter = adapter_for(claimed.spec["Arn"])
    return adapter is not None and adapter.kind == "api-destination"


def _attempt(settings: Settings, attempt: Attempt, memo: dict[Any, Any]) -> None:
    """Call one target; a failure (or an adapter's bug) is recorded on ``attempt``, never
    raised: one bad delivery must not lose its batch."""
    claimed = attempt.claimed
    attempt.started = utcnow()
    adapter = adapter_for(claimed.spec["Arn"])
    policy = RetryPolicy.of(claimed.spec)
    try:
        if claimed.attempt > policy.max_retries + 1:
            raise TargetFailure(
                f"claimed {claimed.attempt} times without an outcome: earlier attempts' workers "
                "died (a message that kills its worker)",
                retryable=False,
                code="ReceiveCapExceeded",
            )
        if adapter is None:
            raise TargetFailure(
                f"no adapter for target ARN {claimed.spec['Arn']}",
                retryable=False,
                code="UnsupportedTarget",
            )
        payload = render_input(
            claimed.spec,
            claimed.event,
            rule_arn=claimed.rule_arn,
            rule_name=claimed.rule_name,
            ingestion_time=claimed.received_at,
        )
        context = DeliveryContext(
            delivery_id=claimed.delivery_id,
            attempt=claimed.attempt,
            event=claimed.event,
            spec=claimed.spec,
            rule_arn=claimed.rule_arn,
            settings=settings,
            database=get_database(settings.sqlalchemy_url),
            enqueue_deliveries=lambda ids: enqueue_deliveries(settings, ids),
            memo=memo,
        )
        attempt.status_code = adapter.deliver(context, payload)
    except TargetFailure as exc:
        attempt.failure = exc
        attempt.status_code = exc.status_code
    except Exception as exc:  # a bug in an adapter must not lose the delivery
        log.exception("target adapter crashed", extra={"delivery_id": claimed.delivery_id})
        attempt.failure = TargetFailure(
            f"{type(exc).__name__}: {exc}", retryable=True, code="Internal"
        )
    attempt.finished = utcnow()


def _to_dead_letter_queue(
    session: Session, settings: Settings, delivery: Delivery, now: datetime
) -> None:
    """A target with ``DeadLetterConfig`` (an SQS queue ARN, as on AWS) also gets its failed
    payload sent there: one more delivery in this transaction, to the queue's target kind from
    the registry, enqueued after the commit. It has no DeadLetterConfig of its own, so a queue
    that refuses it ends in the dead letters, never in a loop."""
    queue_arn = (delivery.target_spec.get("DeadLetterConfig") or {}).get("Arn")
    if not isinstance(queue_arn, str) or adapter_for(queue_arn) is None:
        return
    spec: dict[str, Any] = {"Id": f"{delivery.target_id}:dlq"[:64], "Arn": queue_arn}
    if delivery.target_spec.get("Input") is not None:
        spec["Input"] = delivery.target_spec["Input"]
    dead = Delivery(
        id=str(uuid.uuid4()),
        event_id=delivery.event_id,
        bus_name=delivery.bus_name,
        rule_id=delivery.rule_id,
        rule_name=delivery.rule_name,
        target_id=spec["Id"],
        target_arn=queue_arn,
        target_spec=spec,
        status="pending",
        attempts=0,
        created_at=now,
        next_attempt_at=now,
        enqueued_at=now,
    )
    session.add(dead)
    deliver_after_commit(session, settings, [dead.id])


def _record(settings: Settings, attempts: Sequence[Attempt], rng: random.Random) -> dict[str, str]:
    """Every attempt's outcome at once: when all succeeded (the usual batch) on PostgreSQL, one
    statement in one round trip; otherwise one transaction with the successes in one UPDATE,
    every attempt row in one multi-row INSERT, and a retry or a dead letter row by row."""
    database = get_database(settings.sqlalchemy_url)
    finished_at = max(a.finished or a.started for a in attempts)
    succeeded = [a.claimed.delivery_id for a in attempts if a.failure is None]
    if len(succeeded) == len(attempts) and database.engine.dialect.name == "postgresql":
        rows = [_attempt_row(attempt, "succeeded") for attempt in attempts]
        with database.autocommit() as connection:
            connection.execute(
                _record_successes(tuple(rows[0])),
                {"ids": succeeded, "finished": finished_at, "rows": rows_json(rows)},
            )
        outcomes = dict.fromkeys(succeeded, "succeeded")
    else:
        with database.session() as session:
            outcomes = {
                a.claimed.delivery_id: "succeeded"
                if a.failure is None
                else _record_failure(session, settings, a, rng)
                for a in attempts
            }
            if succeeded:
                session.execute(
                    update(Delivery)
                    .where(among(session, Delivery.id, succeeded))
                    .values(**_SUCCEEDED, completed_at=finished_at)
                    .execution_options(synchronize_session=False)
                )
            insert_rows(
                session,
                DeliveryAttempt,
                [_attempt_row(a, outcomes[a.claimed.delivery_id]) for a in attempts],
            )
    log.info(
        "%d deliveries attempted: %d succeeded",
        len(attempts),
        len(succeeded),
        extra={"delivery_ids": [a.claimed.delivery_id for a in attempts][:10]},
    )
    return outcomes


_SUCCEEDED = {"status": "succeeded", "last_error": None, "claimed_until": None}


def _attempt_row(attempt: Attempt, outcome: str) -> dict[str, Any]:
    failure = attempt.failure
    return {
        "delivery_id": attempt.claimed.delivery_id,
        "number": attempt.claimed.attempt,
        "started_at": attempt.started,
        "finished_at": attempt.finished or attempt.started,
        "outcome": outcome,
        "status_code": attempt.status_code,
        "error": None if failure is None else _error_text(failure),
    }


def _error_text(failure: TargetFailure) -> str:
    return f"{failure.code}: {failure.message}"


@cache
def _record_successes(keys: tuple[str, ...]) -> Any:
    """Mark the batch's deliveries succeeded and insert its attempt rows (``keys``: their
    columns), in one statement."""
    done = (
        update(Delivery)
        .where(Delivery.id == any_(bindparam("ids", type_=postgresql.ARRAY(String))))
        .values(**_SUCCEEDED, completed_at=bindparam("finished", type_=UtcDateTime()))
        .cte("succeeded")
    )
    return recordset_insert(table_of(DeliveryAttempt), keys).add_cte(done)


def _record_failure(
    session: Session, settings: Settings, attempt: Attempt, rng: random.Random
) -> str:
    """A failed attempt: a retry (by countdown when it is soon, else by the sweeper) or, when
    the policy says so, a dead letter (and the target's DeadLetterConfig queue)."""
    claimed, failure = attempt.claimed, attempt.failure
    assert failure is not None
    finished = attempt.finished or attempt.started
    error = _error_text(failure)
    verdict = judge_failure(
        failure,
        attempt=claimed.attempt,
        created_at=claimed.created_at,
        now=finished,
        policy=RetryPolicy.of(claimed.spec),
        rng=rng,
    )
    delivery_id = claimed.delivery_id
    if verdict.retry_at is not None:
        long_wait = verdict.retry_at - finished > timedelta(seconds=COUNTDOWN_LIMIT_SECONDS)
        # A long wait is the sweeper's job: no task is holding it in the broker.
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(
                claimed_until=None,
                last_error=error,
                next_attempt_at=verdict.retry_at,
                enqueued_at=None if long_wait else finished,
            )
            .execution_options(synchronize_session=False)
        )
        if not long_wait:
            countdown = max((verdict.retry_at - finished).total_seconds(), 0.0)
            deliver_after_commit(session, settings, [delivery_id], countdown=countdown)
        outcome = "retry"
    else:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(claimed_until=None, status="dead", completed_at=finished, last_error=error)
            .execution_options(synchronize_session=False)
        )
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        session.add(
            DeadLetter(
                delivery_id=delivery_id,
                event_id=delivery.event_id,
                bus_name=delivery.bus_name,
                rule_name=delivery.rule_name,
                target_id=delivery.target_id,
                error_code=failure.code,
                error_message=f"{failure.message} ({verdict.reason})",
                attempts=claimed.attempt,
                created_at=finished,
            )
        )
        _to_dead_letter_queue(session, settings, delivery, finished)
        outcome = "failed"
    log.info(
        "delivery %s attempt %d: %s",
        delivery_id,
        claimed.attempt,
        outcome,
        extra={"target": claimed.spec.get("Arn"), "status_code": attempt.status_code},
    )
    return outcome
