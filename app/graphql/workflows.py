"""``workflows``: state machines (with a graph to draw), executions and their history; start
and stop an execution; follow executions live.

Reads go through short sessions on a worker thread and return plain strawberry objects. An
execution's history goes through a per-request dataloader (one windowed statement for any
number of executions); it does not cache, so a long-lived WebSocket context never serves an
old history. ``startExecution``/``stopExecution`` call exactly what ``AWSStepFunctions``'s
StartExecution/StopExecution call (commit, then enqueue). ``executionUpdates`` polls the
database (see :mod:`app.graphql.subscriptions` for why).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime
from typing import Any, cast

import strawberry
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON
from strawberry.types import Info

from app.config import Settings
from app.graphql.context import CanWrite, Context, IsAuthenticated, in_session
from app.graphql.subscriptions import watch
from app.secrets.redact import redact_value
from app.workflows import callbacks, errors, service
from app.workflows import graph as workflow_graph
from app.workflows import models as m
from app.workflows.asl.model import TERMINAL_STATUSES
from app.workflows.map_runs import service as map_runs
from app.workflows.map_runs.models import MapRun as MapRunRow

MAX_LIMIT = 1000
#: An execution id committed this long after a larger one is still reported (see
#: :class:`ExecutionPoller`): ids come from a sequence, in allocation order, not commit order.
ID_HORIZON_SECONDS = 5.0


def _limit(value: int) -> int:
    return max(1, min(value, MAX_LIMIT))


def _json(text: str | None) -> JSON | None:
    return None if text is None else JSON(redact_value(json.loads(text)))


# --- types --------------------------------------------------------------------------------


@strawberry.type
class GraphNode:
    id: str = strawberry.field(description="Unique path: <parent id>/<branch>/<name> if nested.")
    type: str = strawberry.field(description="The state's Type; Start/End for scope markers.")
    label: str
    end: bool = strawberry.field(description="Ends its workflow or branch (End, Succeed, Fail).")
    parent: str | None = strawberry.field(description="The Parallel/Map node containing it.")
    query_language: str = strawberry.field(
        description="JSONPath or JSONata: the state's own QueryLanguage, else the machine's."
    )


@strawberry.type
class GraphEdge:
    from_: str = strawberry.field(name="from")
    to: str
    kind: str = strawberry.field(
        description="start, next, choice, default, catch, retry, end or branch"
    )
    label: str | None = strawberry.field(description="Caught/retried errors; a choice rule.")


@strawberry.type
class StateMachineGraph:
    nodes: list[GraphNode]
    edges: list[GraphEdge]


@strawberry.type
class StateMachine:
    name: str
    arn: str
    type: str
    status: str
    description: str | None
    managed_by: str | None
    created_at: datetime
    updated_at: datetime
    definition: JSON
    execution_count: int

    @strawberry.field  # nodes and edges to draw: app/workflows/graph.py says how
    def graph(self) -> StateMachineGraph:
        drawn = workflow_graph.graph(cast(dict[str, Any], self.definition))
        return StateMachineGraph(
            nodes=[
                GraphNode(
                    id=n.id,
                    type=n.type,
                    label=n.label,
                    end=n.end,
                    parent=n.parent,
                    query_language=n.query_language,
                )
                for n in drawn.nodes
            ],
            edges=[
                GraphEdge(from_=e.source, to=e.target, kind=e.kind, label=e.label)
                for e in drawn.edges
            ],
        )


@strawberry.type
class HistoryEvent:
    id: int
    previous_event_id: int
    type: str
    timestamp: datetime
    details: JSON | None = strawberry.field(
        description='As GetExecutionHistory: {"<type>EventDetails": {...}}.'
    )


@strawberry.type
class MapRun:
    """A distributed Map's run: its items run as executions of ``stateMachine`` (the Map's
    ItemProcessor, named ``<machine>/<label>`` as on AWS)."""

    arn: str
    state_machine: str
    status: str
    start_date: datetime
    stop_date: datetime | None
    item_counts: JSON = strawberry.field(description="As DescribeMapRun's itemCounts.")
    execution_counts: JSON = strawberry.field(description="As DescribeMapRun's executionCounts.")


@strawberry.type
class Execution:
    execution_id: strawberry.Private[int]
    parent_id: strawberry.Private[int | None]
    arn: str
    name: str
    state_machine: str = strawberry.field(description="The state machine's name.")
    state_machine_arn: str
    status: str
    input: JSON | None
    output: JSON | None
    error: str | None
    cause: str | None
    start_date: datetime
    stop_date: datetime | None

    @strawberry.field  # in id order; newest first with reverse
    async def history(
        self, info: Info[Context, Any], limit: int = 100, reverse: bool = False
    ) -> list[HistoryEvent]:
        key = (self.execution_id, _limit(limit), reverse)
        return await info.context.loaders(WorkflowLoaders).history.load(key)

    @strawberry.field  # its distributed Maps' runs, oldest first
    async def map_runs(self, info: Info[Context, Any]) -> list[MapRun]:
        return await info.context.loaders(WorkflowLoaders).map_runs.load(self.execution_id)

    # The execution whose states:startExecution task started this one, if any (AWS's API has
    # no such field; its console links the two the same way).
    @strawberry.field
    async def parent_execution_arn(self, info: Info[Context, Any]) -> str | None:
        if self.parent_id is None:
            return None
        return await info.context.loaders(WorkflowLoaders).arns.load(self.parent_id)


@strawberry.type
class ExecutionUpdate:
    execution: Execution = strawberry.field(description="The execution as it stands now.")
    events: list[HistoryEvent] = strawberry.field(
        description="History events appended since the previous update, in id order."
    )


def _event(row: m.ExecutionEvent) -> HistoryEvent:
    return HistoryEvent(
        id=row.event_id,
        previous_event_id=row.previous_event_id,
        type=row.type,
        timestamp=row.timestamp,
        details=_json(row.details),
    )


def _execution(row: m.Execution, machine_name: str, machine_arn: str) -> Execution:
    return Execution(
        execution_id=row.id,
        parent_id=row.parent_id,
        arn=row.arn,
        name=row.name,
        state_machine=machine_name,
        state_machine_arn=machine_arn,
        status=row.status,
        input=_json(row.input),
        output=_json(row.output),
        error=row.error,
        cause=row.cause,
        start_date=row.start_date,
        stop_date=row.stop_date,
    )


def _with_machine() -> Any:
    return select(m.Execution, m.StateMachine.name, m.StateMachine.arn).join(
        m.StateMachine, m.StateMachine.id == m.Execution.state_machine_id
    )


def _machines(session: Session, name: str | None = None) -> list[StateMachine]:
    counts = (
        select(m.Execution.state_machine_id, func.count().label("n"))
        .group_by(m.Execution.state_machine_id)
        .subquery()
    )
    statement = (
        select(m.StateMachine, m.StateMachineDefinition.definition, counts.c.n)
        .join(
            m.StateMachineDefinition,
            m.StateMachineDefinition.hash == m.StateMachine.definition_hash,
        )
        .outerjoin(counts, counts.c.state_machine_id == m.StateMachine.id)
        .order_by(m.StateMachine.name)
    )
    if name is not None:
        statement = statement.where(or_(m.StateMachine.name == name, m.StateMachine.arn == name))
    else:  # a "<machine>/<label>" machine is a Map Run's: reached from its execution's run
        statement = statement.where(~m.StateMachine.name.contains("/"))
    return [
        StateMachine(
            name=row.name,
            arn=row.arn,
            type=row.type,
            status=row.status,
            description=row.description,
            managed_by=row.managed_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
            definition=JSON(json.loads(text)),
            execution_count=count or 0,
        )
        for row, text, count in session.execute(statement)
    ]


# --- dataloaders --------------------------------------------------------------------------


class WorkflowLoaders:
    """One set per request or WebSocket connection; batches, never caches (see module doc)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.history = DataLoader[tuple[int, int, bool], list[HistoryEvent]](
            load_fn=self._history, cache=False
        )
        self.arns = DataLoader[int, str | None](load_fn=self._arns, cache=False)
        self.map_runs = DataLoader[int, list[MapRun]](load_fn=self._map_runs, cache=False)

    async def _map_runs(self, keys: list[int]) -> list[list[MapRun]]:
        def work(session: Session) -> list[list[MapRun]]:
            found: dict[int, list[MapRun]] = {}
            rows = session.scalars(
                select(MapRunRow)
                .where(MapRunRow.execution_id.in_(keys))
                .order_by(MapRunRow.start_date, MapRunRow.arn)
            )
            for run in rows:
                items, executions = map_runs.counts(session, run)
                found.setdefault(run.execution_id, []).append(
                    MapRun(
                        arn=run.arn,
                        state_machine=run.state_machine_arn.split(":", 6)[6],
                        status=run.status,
                        start_date=run.start_date,
                        stop_date=run.stop_date,
                        item_counts=JSON(items),
                        execution_counts=JSON(executions),
                    )
                )
            return [found.get(key, []) for key in keys]

        return await in_session(self.settings, work)

    async def _arns(self, keys: list[int]) -> list[str | None]:
        def work(session: Session) -> list[str | None]:
            rows = session.execute(
                select(m.Execution.id, m.Execution.arn).where(m.Execution.id.in_(keys))
            )
            found = {row.id: row.arn for row in rows}
            return [found.get(key) for key in keys]

        return await in_session(self.settings, work)

    async def _history(self, keys: list[tuple[int, int, bool]]) -> list[list[HistoryEvent]]:
        def work(session: Session) -> list[list[HistoryEvent]]:
            found: dict[tuple[int, int, bool], list[HistoryEvent]] = {}
            for limit, reverse in {(limit, reverse) for _, limit, reverse in keys}:
                ids = [i for i, lim, rev in keys if (lim, rev) == (limit, reverse)]
                for row in _histories(session, ids, limit, reverse):
                    found.setdefault((row.execution_id, limit, reverse), []).append(_event(row))
            return [found.get(key, []) for key in keys]

        return await in_session(self.settings, work)


def _histories(
    session: Session, execution_ids: list[int], limit: int, reverse: bool
) -> list[m.ExecutionEvent]:
    """The first (or last) ``limit`` events of each execution in one statement."""
    E = m.ExecutionEvent  # noqa: N806
    order = E.event_id.desc() if reverse else E.event_id
    ranked = (
        select(
            E.execution_id,
            E.event_id,
            func.row_number().over(partition_by=E.execution_id, order_by=order).label("rank"),
        )
        .where(E.execution_id.in_(execution_ids))
        .subquery()
    )
    statement = (
        select(E)
        .join(
            ranked,
            and_(ranked.c.execution_id == E.execution_id, ranked.c.event_id == E.event_id),
        )
        .where(ranked.c.rank <= limit)
        .order_by(E.execution_id, order)
    )
    return list(session.scalars(statement))


# --- queries ------------------------------------------------------------------------------


async def resolve_state_machines(info: Info[Context, Any]) -> list[StateMachine]:
    return await in_session(info.context.settings, _machines)


async def resolve_state_machine(info: Info[Context, Any], name: str) -> StateMachine | None:
    """By name or ARN."""
    found = await in_session(info.context.settings, lambda s: _machines(s, name))
    return found[0] if found else None


async def resolve_executions(
    info: Info[Context, Any],
    state_machine: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Execution]:
    """Standard executions newest first; ``stateMachine`` by name or ARN."""
    if status is not None and status not in service.STATUSES:
        raise ValueError(f"status must be one of {', '.join(service.STATUSES)}")

    def work(session: Session) -> list[Execution]:
        statement = _with_machine()
        if state_machine is not None:
            statement = statement.where(
                or_(m.StateMachine.name == state_machine, m.StateMachine.arn == state_machine)
            )
        if status is not None:
            statement = statement.where(m.Execution.status == status)
        statement = statement.order_by(m.Execution.start_date.desc(), m.Execution.id.desc())
        rows = session.execute(statement.limit(_limit(limit)))
        return [_execution(e, name, arn) for e, name, arn in rows]

    return await in_session(info.context.settings, work)


async def resolve_execution(info: Info[Context, Any], arn: str) -> Execution | None:
    return await in_session(info.context.settings, lambda s: _execution_by_arn(s, arn))


def _execution_by_arn(session: Session, arn: str) -> Execution | None:
    row = session.execute(_with_machine().where(m.Execution.arn == arn)).first()
    return _execution(*row) if row else None


@strawberry.type
class WorkflowQuery:
    state_machines: list[StateMachine] = strawberry.field(
        resolver=resolve_state_machines, permission_classes=[IsAuthenticated]
    )
    state_machine: StateMachine | None = strawberry.field(
        resolver=resolve_state_machine, permission_classes=[IsAuthenticated]
    )
    executions: list[Execution] = strawberry.field(
        resolver=resolve_executions, permission_classes=[IsAuthenticated]
    )
    execution: Execution | None = strawberry.field(
        resolver=resolve_execution, permission_classes=[IsAuthenticated]
    )


# --- mutations ----------------------------------------------------------------------------


async def resolve_start_execution(
    info: Info[Context, Any],
    state_machine: str,
    input: JSON | None = None,
    name: str | None = None,
) -> Execution:
    """Start a Standard execution (by machine name or ARN). Express executions are not stored,
    so there would be nothing to answer with: use the AWS API for them."""
    settings = info.context.settings

    def machine_arn(session: Session) -> str:
        arn = session.scalar(
            select(m.StateMachine.arn).where(
                or_(m.StateMachine.name == state_machine, m.StateMachine.arn == state_machine),
                m.StateMachine.type == "STANDARD",
            )
        )
        if arn is None:
            raise errors.state_machine_does_not_exist(f"{state_machine} (Standard)")
        return arn

    arn = await in_session(settings, machine_arn)
    text = json.dumps(input if input is not None else {})
    started, _ = await run_in_threadpool(service.start, settings, arn, name, text)
    found = await in_session(settings, lambda s: _execution_by_arn(s, started))
    assert found is not None  # committed by start()
    return found


async def resolve_stop_execution(
    info: Info[Context, Any], arn: str, error: str | None = None, cause: str | None = None
) -> Execution:
    settings = info.context.settings
    await run_in_threadpool(callbacks.stop, settings, arn, error, cause)
    found = await in_session(settings, lambda s: _execution_by_arn(s, arn))
    assert found is not None  # stop() raised ExecutionDoesNotExist otherwise
    return found


@strawberry.type
class WorkflowMutation:
    start_execution: Execution = strawberry.field(
        resolver=resolve_start_execution, permission_classes=[CanWrite]
    )
    stop_execution: Execution = strawberry.field(
        resolver=resolve_stop_execution,
        permission_classes=[CanWrite],
        description="StopExecution: ABORTED now, its pending tasks cancelled.",
    )


# --- subscriptions ------------------------------------------------------------------------


class ExecutionPoller:
    """What changed in executions since the last poll: per execution, the last history event
    id and status seen.

    Following all executions, each poll reads the running ones, the ones this poller still
    tracks and those with an id above a horizon (the largest id seen :data:`ID_HORIZON_SECONDS`
    ago), so an execution that starts and ends between two polls is still reported, even when
    a larger id committed first. Following one (``arn``), the stream ends after its terminal
    update (at once if it had already ended).
    """

    def __init__(self, arn: str | None) -> None:
        self.arn = arn
        self.done = False
        self.seen: dict[int, tuple[int, str]] = {}  # execution id → (last event id, status)
        self.horizon = 0
        self.maxima: deque[tuple[float, int]] = deque()

    def _snapshot(self, session: Session) -> list[tuple[int, str, int]]:
        E, H = m.Execution, m.ExecutionEvent  # noqa: N806
        last = (
            select(func.coalesce(func.max(H.event_id), 0))
            .where(H.execution_id == E.id)
            .correlate(E)
            .scalar_subquery()
        )
        if self.arn is not None:
            where: Any = E.arn == self.arn
        else:
            where = or_(E.status == "RUNNING", E.id > self.horizon, E.id.in_(list(self.seen)))
        return [
            (r[0], r[1], r[2]) for r in session.execute(select(E.id, E.status, last).where(where))
        ]

    def baseline(self, session: Session) -> None:
        if self.arn is not None:
            service.get_execution(session, self.arn)  # ExecutionDoesNotExist, InvalidArn
        else:
            self.horizon = session.scalar(select(func.max(m.Execution.id))) or 0
        for execution_id, status, last in self._snapshot(session):
            self.seen[execution_id] = (last, status)
            self.done = self.arn is not None and status in TERMINAL_STATUSES

    def changes(self, session: Session) -> list[ExecutionUpdate]:
        cursors: dict[int, int] = {}
        snapshot = self._snapshot(session)
        for gone in set(self.seen) - {row[0] for row in snapshot}:  # deleted with its machine
            del self.seen[gone]
            self.done = self.arn is not None
        for execution_id, status, last in snapshot:
            previous = self.seen.get(execution_id)
            if previous is None or previous != (last, status):
                cursors[execution_id] = previous[0] if previous else 0
                self.seen[execution_id] = (last, status)
        updates = self._updates(session, cursors) if cursors else []
        self._move_horizon()
        for update in updates:
            if update.execution.status in TERMINAL_STATUSES:
                self.done = self.arn is not None
        return updates

    def _updates(self, session: Session, cursors: dict[int, int]) -> list[ExecutionUpdate]:
        H = m.ExecutionEvent  # noqa: N806
        events: dict[int, list[HistoryEvent]] = {}
        for chunk in _chunks(list(cursors.items()), 200):
            rows = session.scalars(
                select(H)
                .where(or_(*(and_(H.execution_id == i, H.event_id > c) for i, c in chunk)))
                .order_by(H.execution_id, H.event_id)
            )
            for row in rows:
                events.setdefault(row.execution_id, []).append(_event(row))
        rows_ = session.execute(_with_machine().where(m.Execution.id.in_(list(cursors))))
        found = {e.id: _execution(e, name, arn) for e, name, arn in rows_}
        return [
            ExecutionUpdate(execution=found[i], events=events.get(i, []))
            for i in sorted(cursors)
            if i in found
        ]

    def _move_horizon(self) -> None:
        """Advance the horizon; forget finished executions below it (they cannot change)."""
        if self.arn is not None:
            return
        now = time.monotonic()
        self.maxima.append((now, max(self.seen, default=self.horizon)))
        while self.maxima and self.maxima[0][0] <= now - ID_HORIZON_SECONDS:
            self.horizon = max(self.horizon, self.maxima.popleft()[1])
        for execution_id, (_, status) in list(self.seen.items()):
            if execution_id <= self.horizon and status in TERMINAL_STATUSES:
                del self.seen[execution_id]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def subscribe_execution_updates(
    info: Info[Context, Any], arn: str | None = None
) -> AsyncGenerator[ExecutionUpdate, None]:
    """Status changes and new history events of one execution, or of all when ``arn`` is
    omitted; one update per execution per poll."""
    poller = ExecutionPoller(arn)
    async with aclosing(watch(info.context.settings, "executionUpdates", poller)) as stream:
        async for update in stream:
            yield update


@strawberry.type
class WorkflowSubscription:
    execution_updates: AsyncGenerator[ExecutionUpdate, None] = strawberry.subscription(
        resolver=subscribe_execution_updates, permission_classes=[IsAuthenticated]
    )
