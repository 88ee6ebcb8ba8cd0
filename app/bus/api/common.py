"""What the EventBridge handlers share: registration, scope, paging and rendering."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from app.aws.operations import AwsCall, Handler, registry
from app.aws.validate import parse_timestamp
from app.bus import service
from app.bus.arns import Scope
from app.bus.errors import Validation

T = TypeVar("T")
Params = dict[str, Any]
Answer = dict[str, Any]


def operation(
    name: str,
    *,
    write: bool,
    enums: Mapping[str, Sequence[str]] | None = None,
    shallow: Collection[str] = (),
) -> Callable[[Handler], Handler]:
    """Register ``AWSEvents.<name>``; its parameters are checked against botocore's model of the
    operation before the handler runs."""
    return registry.operation("AWSEvents", name, write=write, enums=enums, shallow=shallow)


def scope(call: AwsCall) -> Scope:
    return Scope(region=call.region, account_id=call.account_id)


def paging(params: Params) -> tuple[int | None, str | None]:
    """``Limit`` and ``NextToken`` (their ranges were checked against the model)."""
    return params.get("Limit"), params.get("NextToken")


def page(found: service.Page, key: str, render: Callable[[Any], Answer]) -> Answer:
    """A List* answer: the rendered items under ``key`` and the next token, if any."""
    answer: Answer = {key: [render(item) for item in found.items]}
    if found.next_token is not None:
        answer["NextToken"] = found.next_token
    return answer


def slice_page(
    items: Sequence[T], limit: int | None, token: str | None
) -> tuple[list[T], str | None]:
    """Offset paging over a list that is already in memory (a rule's targets)."""
    size = limit or 100
    try:
        start = int(token) if token else 0
    except ValueError:
        raise Validation("The NextToken is not valid.") from None
    end = start + size
    return list(items[start:end]), (str(end) if end < len(items) else None)


def clean(data: Mapping[str, Any]) -> Answer:
    """Leave out members that have no value, as AWS does (boto3 then omits the key)."""
    return {key: value for key, value in data.items() if value is not None}


def pick(data: Mapping[str, Any], *keys: str) -> Answer:
    """The members of a fuller rendering that an operation's answer has."""
    return {key: data[key] for key in keys}


def timestamp(params: Params, name: str) -> datetime:
    """A required timestamp member (the model check made sure it parses)."""
    moment = parse_timestamp(params[name])
    if moment is None:  # pragma: no cover - validated before the handler ran
        raise Validation(f"Value at '{name}' must be a timestamp.")
    return moment
