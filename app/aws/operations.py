"""The registry of AWS operations served on ``POST /``.

Domain packages (``app.bus``, ``app.workflows``) register plain functions here instead of knowing
about HTTP, signatures or error rendering::

    from app.aws.operations import AwsCall, registry

    @registry.operation("AWSEvents", "PutRule", write=True)
    def put_rule(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        with call.session() as session:
            ...
        return {"RuleArn": call.arn("events", f"rule/{name}")}

The operation's name is botocore's: before the handler runs, its parameters are checked against
botocore's model of the operation (:mod:`app.aws.validate`), so a handler sees members of the
right types within the model's lengths, patterns, enums and ranges. ``enums`` overrides the order
an enum's values are listed in the error (AWS's servers list some in their own order);
``shallow`` leaves a member's contents to the handler, which words its own errors.

The call carries the app's :class:`~app.config.Settings` (given to ``aws_router`` by
``create_app``) and opens the unit of work: nothing here is process-global but the registry.

Handlers are synchronous (the router runs them in a thread pool, so they may use a blocking DB
session), or coroutine functions for an operation that must wait without holding a thread (SQS's
long polling). They take the request's JSON object -- timestamps arrive as epoch-second numbers,
as botocore sends them -- and return the response's (``datetime`` values go out as epoch
seconds), and raise :class:`app.aws.errors.AwsError` for anything the caller should see.
``write=True`` marks operations that change state: a ``viewer`` key gets
``AccessDeniedException`` before the handler runs.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.orm import Session

from app.auth import AccessKey
from app.aws.validate import RequestValidator
from app.config import Settings
from app.db import get_database

#: ``X-Amz-Target`` prefix -> SigV4 signing name (the service in the credential scope).
TARGET_PREFIXES: Final[dict[str, str]] = {
    "AWSEvents": "events",
    "AWSStepFunctions": "states",
    "AmazonSQS": "sqs",
    "Scheduler": "scheduler",  # REST-JSON (app.aws.rest), not on POST /
}
#: ``X-Amz-Target`` prefix -> botocore service model name.
MODELS: Final[dict[str, str]] = {
    "AWSEvents": "events",
    "AWSStepFunctions": "stepfunctions",
    "AmazonSQS": "sqs",
    "Scheduler": "scheduler",
}

DEFAULT_ACCOUNT_ID: Final = "000000000000"


@dataclass(frozen=True, slots=True)
class AwsCall:
    """Who is calling and where: what a handler needs besides its parameters."""

    key: AccessKey
    region: str
    account_id: str
    request_id: str
    operation: str  # e.g. "AWSEvents.PutRule"
    settings: Settings | None = None  # None only on endpoints built without a domain (tests)
    #: ``scheme://host[:port]`` as the client addressed us (SQS queue URLs are built from it).
    endpoint: str = "http://localhost"

    def arn(self, service: str, resource: str) -> str:
        """An ARN in the caller's region and our account, e.g. ``arn(\"events\", \"rule/r\")``."""
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"

    def require_settings(self) -> Settings:
        """The app's Settings; an endpoint built without them serves no domain operation."""
        if self.settings is None:
            raise RuntimeError(f"{self.operation}: aws_router(...) was built without settings")
        return self.settings

    def session(self) -> AbstractContextManager[Session]:
        """This call's unit of work: commit on success, then run its after-commit work."""
        return get_database(self.require_settings().sqlalchemy_url).session()


SyncHandler = Callable[[dict[str, Any], AwsCall], dict[str, Any]]
#: A coroutine handler runs on the event loop -- for an operation that waits (SQS's long
#: polling) without holding a thread -- and must hand its blocking work to a thread itself.
AsyncHandler = Callable[[dict[str, Any], AwsCall], Awaitable[dict[str, Any]]]
Handler = SyncHandler | AsyncHandler


@dataclass(frozen=True, slots=True)
class Operation:
    prefix: str
    name: str
    handler: Handler
    write: bool
    enums: tuple[tuple[str, tuple[str, ...]], ...] = ()
    validated: bool = True
    shallow: frozenset[str] = frozenset()

    @property
    def target(self) -> str:
        return f"{self.prefix}.{self.name}"

    @property
    def service(self) -> str:
        """The SigV4 signing name this operation must be signed for."""
        return TARGET_PREFIXES[self.prefix]

    def validate(self, params: Mapping[str, Any]) -> None:
        """Check ``params`` against botocore's model of this operation (see module doc)."""
        if self.validated:
            _validator(self.prefix, self.name, self.enums, self.shallow)(params)


@functools.cache
def _validator(
    prefix: str,
    name: str,
    enums: tuple[tuple[str, tuple[str, ...]], ...],
    shallow: frozenset[str],
) -> RequestValidator:
    """Built on first use: loading a service model costs ~0.1 s, not worth paying at import."""
    return RequestValidator.for_operation(MODELS[prefix], name, enums=dict(enums), shallow=shallow)


class AwsOperations:
    """Operations by ``X-Amz-Target``; registering one twice is a bug and fails at import time.

    ``validate=False`` serves parameters unchecked: for registries of fakes that test the
    transport, not the models.
    """

    def __init__(self, *, validate: bool = True) -> None:
        self._operations: dict[str, Operation] = {}
        self._validate = validate

    def operation(
        self,
        prefix: str,
        name: str,
        *,
        write: bool,
        enums: Mapping[str, Sequence[str]] | None = None,
        shallow: Collection[str] = (),
    ) -> Callable[[Handler], Handler]:
        """Decorator: register the handler as ``<prefix>.<name>`` and return it unchanged.

        ``enums`` and ``shallow`` tune the model check (see
        :class:`~app.aws.validate.RequestValidator`)."""
        if prefix not in TARGET_PREFIXES:
            raise ValueError(
                f"unknown target prefix {prefix!r}; expected one of {sorted(TARGET_PREFIXES)}"
            )
        if not name or not name.isidentifier():
            raise ValueError(f"operation name {name!r} is not an identifier")

        def register(handler: Handler) -> Handler:
            order = tuple((shape, tuple(values)) for shape, values in (enums or {}).items())
            self.add(
                Operation(prefix, name, handler, write, order, self._validate, frozenset(shallow))
            )
            return handler

        return register

    def add(self, operation: Operation) -> None:
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
