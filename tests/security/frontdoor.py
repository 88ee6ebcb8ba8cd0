"""Calling the real app at the ASGI level, so a test can see whether the body was read.

``TestClient`` reads a request body whole before the app runs; here the body is handed to the
app one chunk per ``receive()`` and every pull is counted: "refused without reading the body"
means the app pulled no chunk at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from fastapi.testclient import TestClient

from app.auth import AccessKey
from app.config import load_settings
from app.main import create_app
from tests.keys import KEYS
from tests.services import free_port, migrated_sqlite

HOST = "testserver"
AUTH_CODES = frozenset(
    {
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "InvalidSignatureException",
        "UnrecognizedClientException",
    }
)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    pulled: int = 0  # body chunks the app asked for
    pulled_bytes: int = 0

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def aws_code(self) -> str | None:
        try:
            return str(self.json().get("__type"))
        except ValueError:
            return None


@dataclass
class Body:
    """A request body as ``count`` chunks of ``chunk`` (or one given payload)."""

    chunk: bytes = b""
    count: int = 0
    payload: bytes | None = None
    declared: bool = True  # send Content-Length (else: chunked, no length)
    sent: list[int] = field(default_factory=list)

    def chunks(self) -> Iterator[bytes]:
        if self.payload is not None:
            yield self.payload
            return
        for _ in range(self.count):
            yield self.chunk

    @property
    def length(self) -> int:
        return len(self.payload) if self.payload is not None else len(self.chunk) * self.count


def build_client(tmp: Path, **overrides: Any) -> TestClient:
    values: dict[str, Any] = {
        "data_dir": tmp / "data",
        "database_url": migrated_sqlite(tmp / "security.db"),
        "http_port": free_port(),
        "embedded_mqtt_port": free_port(),
        "log_format": "console",
        "access_keys": KEYS,
    }
    settings = load_settings(**(values | overrides))
    return TestClient(create_app(settings))


def call(
    client: TestClient,
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]] = (),
    body: Body | bytes = b"",
) -> Answer:
    """One request through the whole app (middleware included), inside the client's portal."""
    if isinstance(body, bytes):
        body = Body(payload=body)
    raw_headers = [(b"host", HOST.encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers]
    if body.declared and body.length and not any(k == b"content-length" for k, _ in raw_headers):
        raw_headers.append((b"content-length", str(body.length).encode()))
    elif not body.declared:
        raw_headers.append((b"transfer-encoding", b"chunked"))
    path_only, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path_only,
        "raw_path": path_only.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": (HOST, 80),
        "state": {},
    }
    answer = Answer(0, {}, b"")
    chunks = body.chunks()
    pending = next(chunks, None)
    finished = False

    async def receive() -> dict[str, Any]:
        nonlocal pending, finished
        if finished:  # like a server: the next message is the disconnect, once the client goes
            await anyio.sleep_forever()
        if pending is None:
            finished = True
            return {"type": "http.request", "body": b"", "more_body": False}
        current, pending = pending, next(chunks, None)
        finished = pending is None
        answer.pulled += 1
        answer.pulled_bytes += len(current)
        return {"type": "http.request", "body": current, "more_body": pending is not None}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    async def run() -> None:
        await client.app(scope, receive, send)  # type: ignore[arg-type]

    assert client.portal is not None, "use the client in a `with` block"
    client.portal.call(run)
    return answer


def sigv4_headers(
    key: AccessKey, target: str, body: bytes, service: str, region: str = "us-east-1"
) -> list[tuple[str, str]]:
    """Headers boto3 would send for ``target`` with ``body``, signed with ``key``."""
    request = AWSRequest(
        method="POST",
        url=f"http://{HOST}/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    SigV4Auth(Credentials(key.id, key.secret), service, region).add_auth(request)
    return [(k, v) for k, v in request.headers.items()]
