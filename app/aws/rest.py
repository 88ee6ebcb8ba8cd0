"""AWS REST-JSON services (EventBridge Scheduler): operations routed by HTTP method and path.

The JSON 1.0/1.1 endpoint (:mod:`app.aws.protocol`) dispatches on ``X-Amz-Target``; REST-JSON
services put the operation in the method and path (``POST /schedules/{Name}``) and spread the
parameters over the path, the query string and a JSON body, as botocore's service model says.
This router is generic: it reads each registered operation's ``http`` and member locations from
botocore's model, so a REST-JSON service is added by registering its handlers on
:data:`rest_registry` and listing its paths in :data:`REST_PATH_PREFIXES` (the front door
authenticates those paths like ``POST /``).

Per request, in order: the front door has checked SigV4's headers (no body read before); the body
is read up to the cap; the signature is verified over path, query, headers and body for the
service's signing name; writes need an ``admin`` key (``AccessDeniedException`` 403); the body
must be a JSON object; path, query and body members are merged and checked against the model
(``ValidationException``); the handler runs in a thread pool. Errors are answered as botocore's
REST-JSON parser reads them: ``x-amzn-ErrorType`` header, ``{"Message": ...}`` body, the HTTP status
the model gives the error shape.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote

from botocore.model import OperationModel
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.auth import KeyRing
from app.aws import errors, sigv4
from app.aws.errors import AwsError
from app.aws.operations import MODELS, AwsCall, AwsOperations, Operation
from app.aws.protocol import MAX_BODY_BYTES, _json_default, _read_body
from app.aws.validate import service_model
from app.config import Settings

logger = logging.getLogger(__name__)

JSON: Final = "application/json"
#: Operations of REST-JSON services (kept apart from ``POST /``'s X-Amz-Target registry).
rest_registry = AwsOperations()
#: Paths served by REST-JSON services (the front door classes them as the AWS endpoint).
REST_PATH_PREFIXES: Final = ("/schedules", "/schedule-groups", "/tags/")


def is_rest_path(path: str) -> bool:
    return any(
        path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in REST_PATH_PREFIXES
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def rest_router(
    registry: AwsOperations,
    keyring_provider: Callable[[], KeyRing],
    *,
    settings: Settings,
    clock: Callable[[], datetime] = _utcnow,
) -> APIRouter:
    """An ``APIRouter`` with one route per registered REST-JSON operation."""
    router = APIRouter()
    for operation in registry:
        model = service_model(MODELS[operation.prefix]).operation_model(operation.name)
        path = model.http["requestUri"].split("?")[0]
        endpoint = _Endpoint(operation, model, keyring_provider, settings, clock)
        # a URI member may hold slashes (an ARN): match the rest of the path
        route = path.replace("{ResourceArn}", "{ResourceArn:path}")
        router.add_api_route(
            route,
            endpoint.handle,
            methods=[model.http["method"]],
            include_in_schema=False,
            response_class=Response,
        )
    return router


class _Endpoint:
    def __init__(
        self,
        operation: Operation,
        model: OperationModel,
        keyring_provider: Callable[[], KeyRing],
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self.operation = operation
        self.model = model
        self.keyring_provider = keyring_provider
        self.settings = settings
        self.clock = clock
        self.statuses = {
            shape.name: int(shape.metadata.get("error", {}).get("httpStatusCode", 400))
            for shape in model.error_shapes
        }

    async def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            body = await _read_body(request, MAX_BODY_BYTES)
            call = self._authenticate(request, body, request_id)
            params = self._params(request, body)
            self.operation.validate(params)
            result = await run_in_threadpool(self.operation.handler, params, call)
            payload = json.dumps(result, default=_json_default, allow_nan=False).encode()
        except AwsError as error:
            logger.info("aws %s %s -> %s", self.operation.target, request_id, error.code)
            return self._error(error, request_id)
        except Exception:
            logger.exception("aws %s %s failed", self.operation.target, request_id)
            return self._error(
                AwsError("InternalServerException", "Unexpected error.", 500), request_id
            )
        return Response(payload, media_type=JSON, headers={"x-amzn-RequestId": request_id})

    def _authenticate(self, request: Request, body: bytes, request_id: str) -> AwsCall:
        signed = sigv4.SignedRequest(
            method=request.method,
            raw_path=request.scope.get("raw_path") or request.scope["path"].encode(),
            query_string=request.scope.get("query_string", b"").decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            body=body,
        )
        verified = sigv4.verify(
            signed, self.keyring_provider().by_id, self.clock(), services=(self.operation.service,)
        )
        account = self.settings.account_id
        if self.operation.write and not verified.key.can_write:
            raise AwsError(
                "AccessDeniedException",
                f"User: arn:aws:iam::{account}:user/{verified.key.id} is not authorized to "
                f"perform: {self.operation.service}:{self.operation.name} because its access "
                f"key has the '{verified.key.role}' role",
                403,
            )
        return AwsCall(
            key=verified.key,
            region=verified.region,
            account_id=account,
            request_id=request_id,
            operation=self.operation.target,
            settings=self.settings,
        )

    def _params(self, request: Request, body: bytes) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if body.strip():
            try:
                parsed = json.loads(body)
            except (ValueError, RecursionError):
                raise errors.serialization("The request body is not valid JSON.") from None
            if not isinstance(parsed, dict):
                raise errors.serialization("The request body must be a JSON object.")
            params.update(parsed)
        shape = self.model.input_shape
        if shape is None:
            return params
        for name, member in shape.members.items():
            location = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            if location == "uri":
                value = request.path_params.get(wire)
                if value is not None:
                    params[name] = unquote(value)
            elif location == "querystring":
                if member.type_name == "list":
                    values = request.query_params.getlist(wire)
                    if values:
                        params[name] = values
                elif wire in request.query_params:
                    raw = request.query_params[wire]
                    params[name] = _typed(member.type_name, raw)
        return params

    def _error(self, error: AwsError, request_id: str) -> Response:
        status = self.statuses.get(error.code, error.status)
        return Response(
            json.dumps({"__type": error.code, "Message": error.message}).encode(),
            status_code=status,
            media_type=JSON,
            headers={"x-amzn-RequestId": request_id, "x-amzn-ErrorType": error.code},
        )


def _typed(type_name: str, raw: str) -> Any:
    if type_name in ("integer", "long"):
        try:
            return int(raw)
        except ValueError:
            raise errors.validation(f"{raw!r} is not an integer.") from None
    return raw
