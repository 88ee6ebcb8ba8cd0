"""The registry of AWS operations served on ``POST /``.

Domain packages (``app.bus``, ``app.workflows``) register plain functions here instead of knowing
about HTTP, signatures or error rendering::

    from app.aws.operations import AwsCall, registry

    @registry.operation("AWSEvents", "PutRule", write=True)
    def put_rule(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        ...
        return {"RuleArn": call.arn("events", f"rule/{name}")}

Handlers are synchronous (the router runs them in a thread pool, so they may use a blocking DB
session). They take the request's JSON object -- timestamps arrive as epoch-second numbers, as
botocore sends them -- and return the response's (``datetime`` values go out as epoch seconds), and
raise :class:`app.aws.errors.AwsError` for anything the caller should see. ``write=True`` marks
operations that change state: a ``viewer`` key gets ``AccessDeniedException`` before the handler
runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from app.auth import AccessKey

#: ``X-Amz-Target`` prefix -> SigV4 signing name (the service in the credential scope).
TARGET_PREFIXES: Final[dict[str, str]] = {"AWSEvents": "events", "AWSStepFunctions": "states"}

DEFAULT_ACCOUNT_ID: Final = "000000000000"


@dataclass(frozen=True, slots=True)
class AwsCall:
    """Who is calling and where: what a handler needs besides its parameters."""

    key: AccessKey
    region: str
    account_id: str
    request_id: str
    operation: str  # e.g. "AWSEvents.PutRule"

    def arn(self, service: str, resource: str) -> str:
        """An ARN in the caller's region and our account, e.g. ``arn(\"events\", \"rule/r\")``."""
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"


Handler = Callable[[dict[str, Any], AwsCall], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Operation:
    prefix: str
    name: str
    handler: Handler
    write: bool

    @property
    def target(self) -> str:
        return f"{self.prefix}.{self.name}"

    @property
    def service(self) -> str:
        """The SigV4 signing name this operation must be signed for."""
        return TARGET_PREFIXES[self.prefix]


class AwsOperations:
    """Operations by ``X-Amz-Target``; registering one twice is a bug and fails at import time."""

    def __init__(self) -> None:
        self._operations: dict[str, Operation] = {}

    def operation(self, prefix: str, name: str, *, write: bool) -> Callable[[Handler], Handler]:
        """Decorator: register the handler as ``<prefix>.<name>`` and return it unchanged."""
        if prefix not in TARGET_PREFIXES:
            raise ValueError(
                f"unknown target prefix {prefix!r}; expected one of {sorted(TARGET_PREFIXES)}"
            )
        if not name or not name.isidentifier():
            raise ValueError(f"operation name {name!r} is not an identifier")

        def register(handler: Handler) -> Handler:
            self.add(Operation(prefix, name, handler, write))
            return handler

        return register

    def add(self, operation: Operation) -> None:
        if inspect.iscoroutinefunction(operation.handler):
            raise TypeError(f"{operation.target}: handlers are synchronous (run in a thread pool)")
        if operation.target in self._operations:
            raise ValueError(f"{operation.target} is registered twice")
        self._operations[operation.target] = operation

    def get(self, target: str) -> Operation | None:
        return self._operations.get(target)

    def __contains__(self, target: object) -> bool:
        return target in self._operations

    def __iter__(self) -> Iterator[Operation]:
        return iter(self._operations.values())

    def __len__(self) -> int:
        return len(self._operations)


#: The process-wide registry the domain packages register into and ``app.main`` mounts.
registry = AwsOperations()
