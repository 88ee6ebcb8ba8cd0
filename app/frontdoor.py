"""The front door: every HTTP request is classed by route, its caller checked, *then* its body
read -- and never more of it than the class allows.

One pure-ASGI layer (no ``BaseHTTPMiddleware``: bodies stream through it, websockets too):

1. The request's **route class** comes from its method and path (:func:`classify`).
2. The class's **authentication** runs on the headers alone, before a byte of the body is read:
   SigV4's header checks for the AWS endpoint (the header parses, the date is within 15 minutes,
   the key id exists; the signature itself covers the body, so the endpoint verifies it after the
   capped read), a session token for GraphQL, the work-queue routes and the dashboard's API, an
   ``X-Gitlab-Token`` for the webhook (whose route checks its value before it reads). A refusal is
   401 (or the AWS error on the AWS endpoint) and the body is never received.
3. The class's **body cap**: a ``Content-Length`` over it is 413 at once; a chunked body is
   counted as it streams and cut when it passes the cap (413; what was read is dropped, the rest
   is never read). Nothing here buffers a body.

WebSocket messages (GraphQL subscriptions) are capped too: a bigger one closes the socket (1009).
The caller, once known, is put in the ASGI scope (:data:`app.auth.SCOPE_CALLER`) for the routes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import SCOPE_CALLER, AccessKey, KeyRing, credential_from_headers
from app.aws import errors as aws_errors
from app.aws import sigv4
from app.aws.errors import JSON_1_1, AwsError
from app.aws.operations import TARGET_PREFIXES
from app.aws.protocol import MAX_BODY_BYTES
from app.aws.rest import is_rest_path

log = logging.getLogger("smokehouse.frontdoor")

KiB: Final = 1024
#: The AWS kit's own cap (a 1 MiB SQS message as JSON; see ``app.aws.protocol``).
AWS_MAX_BYTES: Final = MAX_BODY_BYTES
#: A GraphQL request is a document plus variables; the dashboard's biggest is a few KiB.
GRAPHQL_MAX_BYTES: Final = 64 * KiB
#: SQS's message size quota.
QUEUE_MAX_BYTES: Final = 256 * KiB
#: ``{"key": ..., "id": ...}``.
LOGIN_MAX_BYTES: Final = 4 * KiB
#: Health, metrics, the dashboard's page and files, unknown paths: nothing takes a body.
PUBLIC_MAX_BYTES: Final = 16 * KiB
#: One graphql-transport-ws message (a subscribe carries a document and its variables).
WS_MESSAGE_MAX_BYTES: Final = GRAPHQL_MAX_BYTES

Auth = str  # "sigv4" | "session" | "gitlab-token" | "public"


@dataclass(frozen=True, slots=True)
class RouteClass:
    name: str
    auth: Auth
    max_bytes: int


class BodyTooLarge(Exception):
    """Raised from ``receive`` once the body passes the cap (the app stops reading)."""


def route_classes(webhook_max_bytes: int) -> dict[str, RouteClass]:
    return {
        "aws": RouteClass("aws", "sigv4", AWS_MAX_BYTES),
        "graphql": RouteClass("graphql", "session", GRAPHQL_MAX_BYTES),
        "queues": RouteClass("queues", "session", QUEUE_MAX_BYTES),
        "webhook": RouteClass("webhook", "gitlab-token", webhook_max_bytes),
        "dashboard": RouteClass("dashboard", "session", PUBLIC_MAX_BYTES),
        "login": RouteClass("login", "public", LOGIN_MAX_BYTES),
        "public": RouteClass("public", "public", PUBLIC_MAX_BYTES),
    }


def classify(method: str, path: str) -> str:
    """The route class of a request (its name in :func:`route_classes`)."""
    if path == "/" and method == "POST":
        return "aws"
    if is_rest_path(path):  # AWS REST-JSON services (EventBridge Scheduler)
        return "aws"
    if path == "/graphql" or path.startswith("/graphql/"):
        # GET serves the GraphiQL page (queries over GET still need a session: the GraphQL
        # context refuses them); OPTIONS is a CORS preflight.
        return "public" if method in ("GET", "HEAD", "OPTIONS") else "graphql"
    if path.startswith("/queues/"):
        return "queues"
    if path.startswith("/webhooks/"):
        return "webhook"
    if path == "/auth/session":
        return "login"
    if path == "/ui/session":
        return "dashboard"
    return "public"


class FrontDoor:
    """Authenticate from the headers, then let the body through up to the class's cap."""

    def __init__(
        self,
        app: ASGIApp,
        keyring: Callable[[], KeyRing],
        webhook_max_bytes: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.app = app
        self.keyring = keyring
        self.classes = route_classes(webhook_max_bytes)
        self.clock = clock
        self.signing_names = tuple(sorted(set(TARGET_PREFIXES.values())))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.app(scope, _capped_ws_receive(receive, send), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = self.classes[classify(scope["method"], scope["path"])]
        headers = Headers(scope=scope)
        refusal = self._authenticate(kind, headers, scope)
        if refusal is not None:
            await refusal(send)
            return
        declared = headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > kind.max_bytes:
            await _too_large(kind, send)
            return
        await self._capped(kind, scope, receive, send)

    def _authenticate(self, kind: RouteClass, headers: Headers, scope: Scope) -> _Reply | None:
        if kind.auth == "public":
            return None
        if kind.auth == "gitlab-token":  # the route compares the value before it reads
            if headers.get("x-gitlab-token"):
                return None
            return _Reply(401, {"detail": "missing or wrong X-Gitlab-Token"})
        if kind.auth == "sigv4":
            try:
                key = sigv4.authenticate_headers(
                    headers.items(), self.keyring().by_id, self.clock(), services=self.signing_names
                )
            except AwsError as error:
                return _aws_reply(error, headers)
            scope[SCOPE_CALLER] = key
            return None
        found: AccessKey | None = self.keyring().authenticate(credential_from_headers(headers))
        if found is None:
            return _Reply(
                401,
                {
                    "detail": "Missing or invalid session token: log in with POST /auth/session "
                    "(or `smokehouse session`) and send Authorization: Bearer <token>"
                },
                {"www-authenticate": "Bearer"},
            )
        scope[SCOPE_CALLER] = found
        return None

    async def _capped(self, kind: RouteClass, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        exceeded = False
        started = False

        async def capped_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > kind.max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:  # whatever the app answers to a cut body, the caller gets the 413
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, capped_receive, guarded_send)
        if exceeded and not started:
            log.info("%s %s: body over %d bytes", scope["method"], scope["path"], kind.max_bytes)
            await _too_large(kind, send)


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: object
    headers: dict[str, str] | None = None
    media_type: str = "application/json"

    async def __call__(self, send: Send) -> None:
        raw = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        extra = [(k.encode(), v.encode()) for k, v in (self.headers or {}).items()]
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [
                    (b"content-type", self.media_type.encode()),
                    (b"content-length", str(len(raw)).encode()),
                    (b"connection", b"close"),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})


def _aws_reply(error: AwsError, headers: Headers) -> _Reply:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    media = content_type if content_type.startswith("application/x-amz-json") else JSON_1_1
    return _Reply(error.status, error.body(), error.headers(str(uuid.uuid4())), media)


async def _too_large(kind: RouteClass, send: Send) -> None:
    if kind.name == "aws":
        await _aws_reply(aws_errors.too_large(kind.max_bytes), Headers())(send)
        return
    await _Reply(413, {"detail": f"the body is over {kind.max_bytes} bytes"})(send)


def _capped_ws_receive(receive: Receive, send: Send) -> Receive:
    async def capped() -> Message:
        message = await receive()
        if message["type"] == "websocket.receive":
            size = len(message.get("text") or "") + len(message.get("bytes") or b"")
            if size > WS_MESSAGE_MAX_BYTES:
                await send({"type": "websocket.close", "code": 1009, "reason": "message too big"})
                return {"type": "websocket.disconnect", "code": 1009}
        return message

    return capped
