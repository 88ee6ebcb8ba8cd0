"""The GitLab webhook's work: check, dedupe, put on the bus — nothing slow.

GitLab gives up after 10 s and disables a webhook that keeps failing, so the request does no
GitLab API call and no EC2 call: it stores one receipt (the dedupe key), puts one event on the
default bus (``source: gitlab``, ``detail-type`` = ``X-Gitlab-Event``, ``detail`` = the payload,
``resources`` = [``X-Gitlab-Instance``]) in one transaction, commits, then enqueues the
deliveries. Rules and workflows do the rest, asynchronously.

Under load, requests are committed in groups (:mod:`app.runners.batcher` hands
:func:`accept_many` everything that arrived while the previous group was committing): one
transaction and one broker round trip for many webhooks, and still no answer before its event
is committed.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.bus.arns import Scope
from app.bus.envelope import MAX_REQUEST_BYTES, entry_size
from app.bus.events import put_events
from app.config import Settings
from app.db import AfterCommit, detach_after_commit, get_database, utcnow
from app.runners.models import WebhookReceipt

SOURCE = "gitlab"
#: put_events takes at most 10 entries per call; a batch makes several calls in one transaction.
PUT_CHUNK = 10
DEFAULT_INSTANCE = "gitlab"
MAX_KEY = 255


class WebhookRejected(Exception):
    """The request is refused with ``status`` and a reason; nothing was stored."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Accepted:
    event_id: str | None
    duplicate: bool


def token_matches(given: str | None, tokens: Sequence[str]) -> bool:
    """Constant-time comparison against every configured token (no early exit)."""
    if not given:
        return False
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given.encode(), token.encode())
    return found


def dedupe_key(headers: Mapping[str, str]) -> str | None:
    """``Idempotency-Key`` (GitLab ≥ 17.4, stable across retries and resends), else the event
    UUID; the instance is part of the key so two GitLabs cannot collide."""
    key = headers.get("idempotency-key") or headers.get("x-gitlab-event-uuid")
    if not key:
        return None
    instance = headers.get("x-gitlab-instance") or DEFAULT_INSTANCE
    return f"{instance}|{key}"[-MAX_KEY:]


def parse_payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # too deep: 400, not 500
        raise WebhookRejected(400, f"the body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "the body must be a JSON object")
    kind = payload.get("object_kind")
    if not isinstance(kind, str) or not kind:
        raise WebhookRejected(400, "the payload has no object_kind")
    return payload


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked webhook: its bus entry and dedupe key."""

    entry: dict[str, Any]
    key: str | None


def prepare(body: bytes, headers: Mapping[str, str]) -> Prepared:
    """Check one webhook without touching the database; WebhookRejected says why not."""
    event_type = headers.get("x-gitlab-event")
    if not event_type:
        raise WebhookRejected(400, "missing X-Gitlab-Event header")
    parse_payload(body)
    instance = headers.get("x-gitlab-instance") or DEFAULT_INSTANCE
    entry = {
        "Source": SOURCE,
        "DetailType": event_type[:128],
        "Detail": body.decode(),
        "Resources": [instance],
        "EventBusName": "default",
    }
    if entry_size(entry) > MAX_REQUEST_BYTES:
        raise WebhookRejected(413, f"the event is over the bus's {MAX_REQUEST_BYTES} byte limit")
    return Prepared(entry, dedupe_key(headers))


Outcome = Accepted | WebhookRejected


def _store(settings: Settings, items: Sequence[Prepared]) -> tuple[list[Outcome], AfterCommit]:
    """One transaction for ``items``: skip keys already received (in the database or earlier in
    this batch), put the rest on the bus, record their receipts. Raises IntegrityError when
    another process recorded one of the keys meanwhile."""
    outcomes: list[Outcome | None] = [None] * len(items)
    scope = Scope(settings.region, settings.account_id)
    with get_database(settings.sqlalchemy_url).session() as session:
        keys = {item.key for item in items if item.key is not None}
        seen = set(
            session.scalars(select(WebhookReceipt.key).where(WebhookReceipt.key.in_(keys)))
            if keys
            else ()
        )
        fresh: list[int] = []
        for index, item in enumerate(items):
            if item.key is not None and item.key in seen:
                outcomes[index] = Accepted(None, True)
                continue
            if item.key is not None:
                seen.add(item.key)
            fresh.append(index)
        now = utcnow()
        for start in range(0, len(fresh), PUT_CHUNK):
            chunk = fresh[start : start + PUT_CHUNK]
            entries = [items[i].entry for i in chunk]
            result = put_events(session, entries, scope, now=now, settings=settings)
            for index, answer in zip(chunk, result.entries, strict=True):
                if "ErrorCode" in answer:
                    outcomes[index] = WebhookRejected(400, str(answer.get("ErrorMessage")))
                    continue
                outcomes[index] = Accepted(str(answer["EventId"]), False)
                key = items[index].key
                if key is not None:
                    session.add(
                        WebhookReceipt(key=key, event_id=answer["EventId"], received_at=now)
                    )
        session.flush()
        later = detach_after_commit(session)  # the caller runs it once this block committed
    return [o if o is not None else Accepted(None, True) for o in outcomes], later


def store_many(settings: Settings, items: Sequence[Prepared]) -> tuple[list[Outcome], AfterCommit]:
    """Store a group of checked webhooks in one transaction and commit; returns the outcomes
    and the committed group's after-commit work (enqueue its deliveries), for the caller to
    run when it suits it. A key taken concurrently by another process makes the group go one
    by one."""
    if not items:
        return [], AfterCommit()
    try:
        return _store(settings, items)
    except IntegrityError:
        if len(items) == 1:  # the same delivery, concurrently: the other took it
            return [Accepted(None, True)], AfterCommit()
        outcomes: list[Outcome] = []
        later = AfterCommit()
        for item in items:
            one, work = store_many(settings, [item])
            outcomes.extend(one)
            later.extend(work)
        return outcomes, later


def accept_many(settings: Settings, items: Sequence[Prepared]) -> list[Outcome]:
    """:func:`store_many`, then enqueue the deliveries (commit, then enqueue)."""
    outcomes, later = store_many(settings, items)
    later.run()
    return outcomes


def accept(settings: Settings, body: bytes, headers: Mapping[str, str]) -> Accepted:
    """Check, dedupe and put one webhook on the bus; commit, then enqueue its deliveries."""
    [outcome] = accept_many(settings, [prepare(body, headers)])
    if isinstance(outcome, WebhookRejected):
        raise outcome
    return outcome
