"""``POST /``: the AWS JSON 1.0/1.1 protocol endpoint, so boto3's ``events`` and ``stepfunctions``
clients (and the AWS CLI, Terraform, ...) can be pointed at smokehouse with ``endpoint_url``.

Before any of this, the front door (:mod:`app.frontdoor`) has run SigV4's header checks
(:func:`app.aws.sigv4.authenticate_headers`: the ``Authorization`` header parses, the date is in
range, the access key id exists) without reading the body, and capped the body at 1 MiB; an
anonymous caller never gets a byte of its body read. Then one request goes through, in this
order (the order AWS's JSON services use, so a client sees the same error AWS would give it
first):

1. body size (``RequestEntityTooLargeException`` 413, before reading more than the limit),
2. content type ``application/x-amz-json-1.0``/``1.1`` (else ``UnknownOperationException`` 404; the
   answer uses the request's content type, as botocore expects),
3. ``X-Amz-Target: <Prefix>.<Operation>`` must be registered (``UnknownOperationException`` 400),
4. SigV4 over the raw path, query, headers and body, scoped to that prefix's signing name,
5. ``write`` operations need an ``admin`` key (``AccessDeniedException`` 400),
6. the body must be a JSON object (``SerializationException`` 400),
7. its members must fit botocore's model of the operation (``SerializationException`` for a wrong
   type, else one ``ValidationException`` naming every violation; :mod:`app.aws.validate`),
8. the handler runs in a thread pool; its dict is serialised with datetimes as epoch seconds.

Nothing escapes: an :class:`AwsError` becomes its JSON error, anything else is logged with the
request id and answered ``InternalException``/``InternalFailure`` 500 without details.

The signature covers the ``Host`` header and the path the client used: a reverse proxy in front
must pass both through unchanged.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.auth import KeyRing
from app.aws import errors, sigv4
from app.aws.errors import JSON_1_0, JSON_1_1, AwsError
from app.aws.operations import DEFAULT_ACCOUNT_ID, AwsCall, AwsOperations, Operation
from app.config import Settings

logger = logging.getLogger(__name__)

#: The largest request body. SQS takes messages (and batches) of up to 1 MiB of UTF-8, which
#: botocore sends as JSON with non-ASCII escaped (``\u00e9``: six bytes for two, so up to three
#: times the bytes) beside the request's other fields; Step Functions definitions (1 MiB) and
#: PutEvents (256 KiB) fit under it. Each operation's own limit is checked on the parsed request.
MAX_BODY_BYTES: Final = 3 * 1024 * 1024 + 64 * 1024
CONTENT_TYPES: Final = (JSON_1_0, JSON_1_1)
#: The 500 error code each service models (EventBridge has ``InternalException``; SFN none).
INTERNAL_CODES: Final[dict[str, str]] = {"AWSEvents": "InternalException"}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def aws_router(
    registry: AwsOperations,
    keyring_provider: Callable[[], KeyRing],
    *,
    settings: Settings | None = None,
    account_id: str | None = None,
    clock: Callable[[], datetime] = _utcnow,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> APIRouter:
    """An ``APIRouter`` with ``POST /`` serving ``registry``.

    ``settings`` travel on every :class:`AwsCall` (the domain handlers open their unit of work
    from them; the account id defaults to theirs). ``keyring_provider`` is called per request, so
    keys can change without a restart; ``clock`` (timezone-aware) is what signatures are checked
    against.
    """
    if account_id is None:
        account_id = settings.account_id if settings is not None else DEFAULT_ACCOUNT_ID
    if not (len(account_id) == 12 and account_id.isdigit()):
        raise ValueError(f"account id must be 12 digits, got {account_id!r}")
    endpoint = _Endpoint(registry, keyring_provider, settings, account_id, clock, max_body_bytes)
    router = APIRouter()
    router.add_api_route(
        "/",
        endpoint.handle,
        methods=["POST"],
        include_in_schema=False,
        response_class=Response,
    )
    return router


class _Endpoint:
    def __init__(
        self,
        registry: AwsOperations,
        keyring_provider: Callable[[], KeyRing],
        settings: Settings | None,
        account_id: str,
        clock: Callable[[], datetime],
        max_body_bytes: int,
    ) -> None:
        self.registry = registry
        self.keyring_provider = keyring_provider
        self.settings = settings
        self.account_id = account_id
        self.clock = clock
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        content_type = JSON_1_1
        target = request.headers.get("x-amz-target", "")
        try:
            content_type = _content_type(request)
            body = await _read_body(request, self.max_body_bytes)
            operation = self.registry.get(target)
            if operation is None:
                raise errors.unknown_operation()
            call = self._authenticate(request, body, operation, request_id)
            params = _parse_params(body)
            operation.validate(params)
            if inspect.iscoroutinefunction(operation.handler):
                result = await operation.handler(params, call)
            else:
                result = await run_in_threadpool(operation.handler, params, call)
            if not isinstance(result, dict):
                raise TypeError(f"{target} returned {type(result).__name__}, not a dict")
            payload = json.dumps(result, default=_json_default, allow_nan=False).encode()
        except AwsError as error:
            logger.info(
                "aws %.100s %s -> %s %s", target or "-", request_id, error.status, error.code
            )
            return _error_response(error, request_id, content_type)
        except Exception:
            logger.exception("aws %.100s %s failed", target or "-", request_id)
            prefix = target.partition(".")[0]
            failure = errors.internal(INTERNAL_CODES.get(prefix, "InternalFailure"))
            return _error_response(failure, request_id, content_type)
        return Response(payload, media_type=content_type, headers={"x-amzn-RequestId": request_id})

    def _authenticate(
        self, request: Request, body: bytes, operation: Operation, request_id: str
    ) -> AwsCall:
        signed = sigv4.SignedRequest(
            method=request.method,
            raw_path=request.scope.get("raw_path") or request.scope["path"].encode(),
            query_string=request.scope.get("query_string", b"").decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            body=body,
        )
        verified = sigv4.verify(
            signed, self.keyring_provider().by_id, self.clock(), services=(operation.service,)
        )
        if operation.write and not verified.key.can_write:
            raise errors.access_denied(
                f"User: arn:aws:iam::{self.account_id}:user/{verified.key.id} is not authorized "
                f"to perform: {operation.service}:{operation.name} because its access key has the "
                f"'{verified.key.role}' role"
            )
        return AwsCall(
            key=verified.key,
            region=verified.region,
            account_id=self.account_id,
            request_id=request_id,
            operation=operation.target,
            settings=self.settings,
            endpoint=str(request.base_url).rstrip("/"),
        )


def _content_type(request: Request) -> str:
    value = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if value not in CONTENT_TYPES:
        raise errors.unknown_operation(
            f"Content-Type must be {JSON_1_0} or {JSON_1_1}, not {value or 'missing'}", status=404
        )
    return value


async def _read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes: refuse early on Content-Length, and again while streaming."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise errors.too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_params(body: bytes) -> dict[str, Any]:
    try:
        params = json.loads(body)
    except (ValueError, RecursionError):
        raise errors.serialization("The request body is not valid JSON.") from None
    if not isinstance(params, dict):
        raise errors.serialization("The request body must be a JSON object.")
    return params


def _json_default(value: object) -> object:
    """AWS JSON protocol shapes: timestamps as epoch seconds, blobs as base64."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to AWS JSON")


def _error_response(error: AwsError, request_id: str, content_type: str) -> Response:
    return Response(
        error.body(),
        status_code=error.status,
        media_type=content_type,
        headers=error.headers(request_id),
    )
