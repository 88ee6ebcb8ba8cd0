"""Request size limits and router configuration, through Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.aws.errors import JSON_1_1
from app.aws.protocol import aws_router
from tests.unit.aws.fake_ops import State, build_registry
from tests.unit.aws.signing import sign

LIMIT = 1000


@pytest.fixture
def client() -> Iterator[TestClient]:
    state = State()
    app = FastAPI()
    app.include_router(
        aws_router(build_registry(state), lambda: state.keyring, max_body_bytes=LIMIT)
    )
    with TestClient(app) as test_client:
        yield test_client


def signed_headers(body: bytes) -> dict[str, str]:
    prepared = sign(
        url="http://testserver/",
        body=body,
        headers={"Content-Type": JSON_1_1, "X-Amz-Target": "AWSEvents.ListRules"},
    )
    return dict(prepared.headers.items())


def test_body_at_the_limit_is_served(client: TestClient) -> None:
    body = b'{"NamePrefix": "' + b"x" * (LIMIT - 18) + b'"}'
    assert len(body) == LIMIT
    response = client.post("/", content=body, headers=signed_headers(body))
    assert response.status_code == 200, response.text


def test_declared_length_over_the_limit(client: TestClient) -> None:
    body = b'{"NamePrefix": "' + b"x" * LIMIT + b'"}'
    response = client.post("/", content=body, headers=signed_headers(body))
    assert response.status_code == 413
    assert response.json()["__type"] == "RequestEntityTooLargeException"
    assert response.headers["x-amzn-ErrorType"] == "RequestEntityTooLargeException"


def test_streamed_body_over_the_limit(client: TestClient) -> None:
    body = b'{"NamePrefix": "' + b"x" * LIMIT + b'"}'
    headers = signed_headers(body)
    headers.pop("Content-Length", None)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    response = client.post("/", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert response.json()["__type"] == "RequestEntityTooLargeException"


def test_account_id_must_be_twelve_digits() -> None:
    state = State()
    with pytest.raises(ValueError, match="12 digits"):
        aws_router(build_registry(state), lambda: state.keyring, account_id="123")


def test_configured_account_id_is_used() -> None:
    state = State()
    app = FastAPI()
    app.include_router(
        aws_router(build_registry(state), lambda: state.keyring, account_id="123456789012")
    )
    body = b"{}"
    with TestClient(app) as test_client:
        response = test_client.post("/", content=body, headers=signed_headers(body))
    assert response.status_code == 200, response.text
    assert response.json()["Rules"][0]["Arn"].startswith("arn:aws:events:us-east-1:123456789012:")
