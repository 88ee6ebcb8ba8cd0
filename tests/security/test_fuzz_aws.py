"""Generated AWS requests from botocore's shapes never get a 5xx.

For every operation in the app's registry (EventBridge and Step Functions, as ``app.main`` mounts
them), hypothesis builds parameters from botocore's model of the operation's input shape
(tests/security/fuzz_support.py): valid ones within the model's constraints (plus members the
model does not know, which AWS ignores) and invalid ones (a member of the wrong type at any depth,
a required member left out, a value just past a length or range, a body that is not a JSON object),
and raw requests that are broken below the parameters (garbage JSON, a wrong content type, an
X-Amz-Target that is not registered). Every request is signed with SigV4 by botocore, as boto3
signs it, with an admin key, and sent to the real app on SQLite and PostgreSQL.

Asserted: never a 5xx; every 4xx has AWS's error shape (``__type`` and a message); an invalid
request changes nothing in the database.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import MetaData, select
from sqlalchemy.exc import SAWarning

from app.aws import registry
from app.aws.operations import MODELS, Operation
from app.aws.validate import service_model
from app.db import get_database
from app.workflows.activities import api as activities_api
from tests.security.fuzz_support import (
    FUZZ_SETTINGS,
    Tally,
    fuzzed_app,
    invalid_params,
    valid_value,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

ADMIN_ID = "AKFUZZADMIN0000000001"
ADMIN_SECRET = "fz7Qm2Lw9Xc4Rt8Yp1Vb6Nh3Js5Kd0Ga2Ue7Wi4O"
REGION = "us-east-1"
OPERATIONS = sorted(registry, key=lambda op: op.target)


def _model(operation: Operation) -> Any:
    return service_model(MODELS[operation.prefix]).operation_model(operation.name)


class Endpoint:
    """The app's ``POST /`` with requests signed by botocore."""

    def __init__(self, client: TestClient, database_url: str) -> None:
        self.client = client
        self.database_url = database_url
        self.tables: list[Any] = []

    def send(
        self,
        target: str,
        body: bytes,
        *,
        service: str,
        content_type: str = "application/x-amz-json-1.1",
    ) -> Any:
        request = AWSRequest(
            method="POST",
            url="http://testserver/",
            data=body,
            headers={"Content-Type": content_type, "X-Amz-Target": target},
        )
        SigV4Auth(Credentials(ADMIN_ID, ADMIN_SECRET), service, REGION).add_auth(request)
        # As bytes: httpx refuses non-ASCII text in a header; a client can still send the bytes.
        headers = {name: value.encode() for name, value in request.headers.items()}
        return self.client.post("/", content=body, headers=headers)

    def fingerprint(self) -> str:
        """A digest of every row of every table: equal before and after = nothing changed."""
        database = get_database(self.database_url)
        digest = hashlib.sha256()
        with database.session() as session:
            if not self.tables:
                metadata = MetaData()
                with warnings.catch_warnings():  # expression indexes are not reflected: fine
                    warnings.simplefilter("ignore", SAWarning)
                    metadata.reflect(bind=session.connection())
                self.tables = sorted(metadata.tables.values(), key=lambda t: t.name)
            for table in self.tables:
                rows = sorted(repr(tuple(row)) for row in session.execute(select(table)))
                digest.update(f"{table.name}:{len(rows)}:{''.join(rows)}".encode())
        return digest.hexdigest()


@pytest.fixture(autouse=True)
def short_activity_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """GetActivityTask on an activity a generated CreateActivity made would wait 60 s for a task
    that never comes (the app runs in this process): a generated poll waits at most 0.2 s."""
    monkeypatch.setattr(activities_api, "POLL_SECONDS", 0.2)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def endpoint(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Endpoint]:
    home: Path = tmp_path_factory.mktemp(f"fuzz-aws-{request.param}")
    keys = f"{ADMIN_ID}:{ADMIN_SECRET}:admin"
    with fuzzed_app(request.param, home, keys) as (client, settings):
        yield Endpoint(client, settings.sqlalchemy_url)


def _check_answer(response: Any, what: str) -> None:
    """No 5xx, and a 4xx in AWS's JSON error shape."""
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("__type"), str), (what, body)
        assert body["__type"], (what, body)
        message = body.get("message", body.get("Message"))
        assert isinstance(message, str), (what, body)
        assert "Traceback" not in message, (what, body)


def _unknown_members() -> st.SearchStrategy[dict[str, Any]]:
    """Members no model has: AWS ignores them, so they must not change the answer's class."""
    return st.dictionaries(
        st.text("abcXYZ_", min_size=1, max_size=8).map(lambda name: f"Zz{name}"),
        st.integers() | st.text(max_size=5) | st.none(),
        max_size=2,
    )


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.target)
def test_valid_requests_never_get_a_5xx(
    endpoint: Endpoint, operation: Operation, request: pytest.FixtureRequest
) -> None:
    """Parameters within the model (and unknown members): a 2xx or a clean 4xx, never 5xx."""
    model = _model(operation)
    tally = Tally(operation.target)
    shape = model.input_shape
    params = valid_value(shape) if shape is not None else st.just({})

    @FUZZ_SETTINGS
    @given(params=params, extra=_unknown_members())
    def run(params: dict[str, Any], extra: dict[str, Any]) -> None:
        body = json.dumps({**extra, **params}).encode()
        response = endpoint.send(operation.target, body, service=operation.service)
        tally.count(response.status_code, "valid" if response.status_code < 400 else "refused")
        _check_answer(response, f"{operation.target} {body[:300]!r}")

    try:
        run()
    finally:
        tally.report(request)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.target)
def test_invalid_requests_get_an_aws_error_and_change_nothing(
    endpoint: Endpoint, operation: Operation, request: pytest.FixtureRequest
) -> None:
    model = _model(operation)
    tally = Tally(operation.target)

    @FUZZ_SETTINGS
    @given(case=invalid_params(model.input_shape))
    def run(case: tuple[Any, Any]) -> None:
        mutation, params = case
        body = json.dumps(params).encode()
        before = endpoint.fingerprint()
        response = endpoint.send(operation.target, body, service=operation.service)
        tally.count(response.status_code, mutation.kind)
        what = f"{operation.target} {mutation} {body[:300]!r}"
        _check_answer(response, what)
        assert 400 <= response.status_code < 500, f"{what}: accepted {response.text[:300]}"
        assert endpoint.fingerprint() == before, f"{what}: changed the database"

    try:
        run()
    finally:
        tally.report(request)


#: Bodies that are not JSON at all, or not what JSON parsers like.
_GARBAGE = st.binary(max_size=64) | st.sampled_from(
    [
        b"",
        b"{",
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b"\xff\xfe",
        b'{"Name": "\xff"}',
        b"NaN",
        b'{"Limit": 1e999}',
        b'{"a": "\\ud800"}',
        b"\x00",
    ]
)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.target)
def test_broken_requests_get_an_aws_error_and_change_nothing(
    endpoint: Endpoint, operation: Operation, request: pytest.FixtureRequest
) -> None:
    """Garbage bodies, wrong content types and unregistered X-Amz-Targets."""
    tally = Tally(operation.target)
    targets = st.sampled_from(
        [
            operation.target,
            operation.target.lower(),
            f"{operation.prefix}.{operation.name}X",
            f"{operation.prefix}{operation.name}",
            "",
            f"{operation.prefix}.",
            f".{operation.name}",
            f"{operation.prefix}.__init__",
            f"{operation.prefix}.{operation.name}\u00e9",
        ]
    )
    content_types = st.sampled_from(
        [
            "application/x-amz-json-1.1",
            "application/x-amz-json-1.0",
            "application/json",
            "text/plain",
            "",
            "application/x-amz-json-1.1; charset=latin-1",
        ]
    )

    @FUZZ_SETTINGS
    @given(body=_GARBAGE, target=targets, content_type=content_types)
    def run(body: bytes, target: str, content_type: str) -> None:
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            parsed = None
        if target == operation.target and isinstance(parsed, dict):
            body = b"[" + body  # keep it broken: this test is about what is not a request
        before = endpoint.fingerprint()
        response = endpoint.send(target, body, service=operation.service, content_type=content_type)
        tally.count(response.status_code, "broken")
        what = f"{target!r} {content_type!r} {body[:100]!r}"
        _check_answer(response, what)
        assert 400 <= response.status_code < 500, what
        assert endpoint.fingerprint() == before, f"{what}: changed the database"

    try:
        run()
    finally:
        tally.report(request)
