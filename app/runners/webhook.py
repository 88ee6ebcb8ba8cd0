"""The GitLab webhook's work: check, dedupe, put on the bus — nothing slow.

GitLab gives up after 10 s and disables a webhook that keeps failing, so the request does no
GitLab API call and no EC2 call: it stores one receipt (the dedupe key), puts one event on the
default bus (``source: gitlab``, ``detail-type`` = ``X-Gitlab-Event``, ``detail`` = the payload,
``resources`` = [``X-Gitlab-Instance``]) in one transaction, commits, then enqueues the
deliveries. Rules and workflows do the rest, asynchronously.

Each token is bound to projects/groups (:class:`~app.config.runners.TokenScope`): a payload for a
project outside its token's scope is refused (403) before anything is stored. Every delivery is
deduped by the ``Idempotency-Key``/``X-Gitlab-Event-UUID`` headers *and* by a key derived from
the payload (:func:`payload_key`), so a resend without the optional headers is still taken once.

Under load, requests are committed in groups (:mod:`app.runners.batcher` hands
:func:`accept_many` everything that arrived while the previous group was committing): one
transaction and one broker round trip for many webhooks, and still no answer before its event
is committed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.bus.arns import Scope
from app.bus.envelope import MAX_REQUEST_BYTES, entry_size
from app.bus.events import put_events
from app.config import Settings
from app.config.runners import TokenScope, WebhookGrant
from app.db import AfterCommit, among, detach_after_commit, get_database, insert_rows, utcnow
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


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def token_matches(given: str | None, tokens: Sequence[str]) -> bool:
    """Constant-time comparison against every configured token (no early exit; equal-length
    digests, so not even a token's length shows)."""
    if not given:
        return False
    digest = _digest(given)
    found = False
    for token in tokens:
        found |= hmac.compare_digest(digest, _digest(token))
    return found


def match_token(given: str | None, grants: Sequence[WebhookGrant]) -> WebhookGrant | None:
    """The grant whose token is ``given``, compared in constant time against every one."""
    if not given:
        return None
    digest = _digest(given)
    found: WebhookGrant | None = None
    for grant in grants:
        if hmac.compare_digest(digest, _digest(grant.token)) and found is None:
            found = grant
    return found


def payload_project(payload: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """The project a payload reports for: ``project_id``/``project.id`` and
    ``project.path_with_namespace`` (Job Hooks carry both; ``project_name`` is a display name,
    not a path). Disagreeing ids are refused."""
    project = payload.get("project")
    block: Mapping[str, Any] = project if isinstance(project, dict) else {}
    ids = {
        value
        for value in (payload.get("project_id"), block.get("id"))
        if isinstance(value, int) and not isinstance(value, bool)
    }
    if len(ids) > 1:
        raise WebhookRejected(400, "project_id and project.id disagree")
    path = block.get("path_with_namespace")
    return (next(iter(ids)) if ids else None), (path if isinstance(path, str) and path else None)


def check_scope(payload: Mapping[str, Any], scope: TokenScope) -> None:
    """Refuse (403) a payload for a project outside the token's scope."""
    project_id, path = payload_project(payload)
    if scope.everything:
        return
    if project_id is None and path is None:
        raise WebhookRejected(
            403, "the payload names no project; a project-scoped X-Gitlab-Token cannot send it"
        )
    if not scope.allows(project_id, path):
        raise WebhookRejected(
            403,
            f"this X-Gitlab-Token may not report for project {project_id} ({path or 'no path'}):"
            f" it is scoped to {scope.describe()}",
        )


#: What tells two real Job Hook transitions apart and stays the same when one is resent: the
#: job, its status, its timestamps and retry count, and the project it claims (so a hook forged
#: for another project can never take a real hook's key).
BUILD_KEY_FIELDS = (
    "build_id",
    "build_status",
    "build_created_at",
    "build_started_at",
    "build_finished_at",
    "retries_count",
)


def payload_key(payload: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """The dedupe key derived from the payload: for a Job Hook the fields of
    :data:`BUILD_KEY_FIELDS` plus the project, for any other hook the whole payload
    (canonical JSON); with the instance and the event type."""
    instance = headers.get("x-gitlab-instance") or DEFAULT_INSTANCE
    kind = payload.get("object_kind")
    project_id, path = payload_project(payload)
    if kind == "build":
        basis: Any = {
            "kind": kind,
            "project": [project_id, path.casefold() if path else None],
            **{name: payload.get(name) for name in BUILD_KEY_FIELDS},
        }
    else:
        basis = payload
    canonical = json.dumps(
        [headers.get("x-gitlab-event"), basis], sort_keys=True, separators=(",", ":")
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{instance}|payload:{digest}"[-MAX_KEY:]


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
    """A checked webhook: its bus entry and dedupe keys.

    ``keys`` decide whether it is a duplicate and are recorded: the header key when GitLab sent
    one, else the key derived from the payload. ``also`` are recorded too (when free) but never
    checked: a delivery with headers records its payload key, so a replay stripped of the headers
    is a duplicate, while a hook forged *without* headers can never make a real one (which has
    them) look like a duplicate."""

    entry: dict[str, Any]
    keys: tuple[str, ...]
    also: tuple[str, ...] = ()

    @property
    def key(self) -> str | None:
        return self.keys[0] if self.keys else None


def prepare(body: bytes, headers: Mapping[str, str], scope: TokenScope | None = None) -> Prepared:
    """Check one webhook without touching the database; WebhookRejected says why not.

    ``scope`` is the matched token's (None: the caller checked no token, e.g. a test)."""
    event_type = headers.get("x-gitlab-event")
    if not event_type:
        raise WebhookRejected(400, "missing X-Gitlab-Event header")
    payload = parse_payload(body)
    if scope is not None:
        check_scope(payload, scope)
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
    derived = payload_key(payload, headers)
    sent = dedupe_key(headers)
    if sent is None:
        return Prepared(entry, (derived,))
    return Prepared(entry, (sent,), (derived,) if derived != sent else ())


Outcome = Accepted | WebhookRejected


def _store(settings: Settings, items: Sequence[Prepared]) -> tuple[list[Outcome], AfterCommit]:
    """One transaction for ``items``: skip keys already received (in the database or earlier in
    this batch), put the rest on the bus, record their receipts. Raises IntegrityError when
    another process recorded one of the keys meanwhile."""
    outcomes: list[Outcome | None] = [None] * len(items)
    scope = Scope(settings.region, settings.account_id)
    with get_database(settings.sqlalchemy_url).session() as session:
        keys = {key for item in items for key in (*item.keys, *item.also)}
        seen = set(
            session.scalars(
                select(WebhookReceipt.key).where(among(session, WebhookReceipt.key, keys))
            )
            if keys
            else ()
        )
        fresh: list[int] = []
        recording: dict[int, list[str]] = {}  # the receipts of each fresh delivery
        for index, item in enumerate(items):
            if any(key in seen for key in item.keys):
                outcomes[index] = Accepted(None, True)
                continue
            recording[index] = [*item.keys, *(key for key in item.also if key not in seen)]
            seen.update(item.keys)
            seen.update(item.also)
            fresh.append(index)
        now = utcnow()
        receipts: list[dict[str, Any]] = []
        for start in range(0, len(fresh), PUT_CHUNK):
            chunk = fresh[start : start + PUT_CHUNK]
            entries = [items[i].entry for i in chunk]
            result = put_events(session, entries, scope, now=now, settings=settings)
            for index, answer in zip(chunk, result.entries, strict=True):
                if "ErrorCode" in answer:
                    outcomes[index] = WebhookRejected(400, str(answer.get("ErrorMessage")))
                    continue
                outcomes[index] = Accepted(str(answer["EventId"]), False)
                receipts += (
                    {"key": key, "event_id": answer["EventId"], "received_at": now}
                    for key in recording[index]
                )
        insert_rows(session, WebhookReceipt, receipts)
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
        if len(items) == 1 and items[0].also:  # a recorded-only key was taken meanwhile
            return store_many(settings, [replace(items[0], also=())])
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


def accept(
    settings: Settings, body: bytes, headers: Mapping[str, str], scope: TokenScope | None = None
) -> Accepted:
    """Check, dedupe and put one webhook on the bus; commit, then enqueue its deliveries."""
    [outcome] = accept_many(settings, [prepare(body, headers, scope)])
    if isinstance(outcome, WebhookRejected):
        raise outcome
    return outcome
