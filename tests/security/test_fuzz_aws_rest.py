"""Generated REST-JSON requests (EventBridge Scheduler) from botocore's shapes never get a 5xx.

As tests/security/test_fuzz_aws.py for ``POST /``: for every operation of the REST-JSON registry
(``app.aws.rest``), hypothesis builds parameters from botocore's model -- valid ones and invalid
ones (wrong type at any depth, a required member left out, a value past a bound) -- places them
where the model says (path, query string, JSON body), signs the request with SigV4 as boto3 does
and sends it to the real app on SQLite and PostgreSQL. Asserted: never a 5xx; every 4xx has AWS's
error shape (``x-amzn-ErrorType``, ``__type`` and a message); an invalid request changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import assume, given
from hypothesis import strategies as st

from app.aws.operations import MODELS, Operation
from app.aws.rest import rest_registry
from app.aws.validate import service_model
from tests.security.fuzz_support import (
    FUZZ_SETTINGS,
    Tally,
    fuzzed_app,
    invalid_params,
    valid_value,
)
from tests.security.test_fuzz_aws import ADMIN_ID, ADMIN_SECRET, REGION, Endpoint, _check_answer

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

OPERATIONS = sorted(rest_registry, key=lambda op: op.target)


def _model(operation: Operation) -> Any:
    return service_model(MODELS[operation.prefix]).operation_model(operation.name)


class RestEndpoint(Endpoint):
    def send_rest(self, operation: Operation, params: Any) -> Any:
        model = _model(operation)
        path = model.http["requestUri"]
        query: list[tuple[str, str]] = []
        body: dict[str, Any] = dict(params) if isinstance(params, dict) else {}
        members = model.input_shape.members if model.input_shape is not None else {}
        for name, member in members.items():
            location = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            if location == "uri":
                value = body.pop(name, None)
                assume(isinstance(value, str) and value not in ("", ".", ".."))
                path = path.replace("{" + wire + "}", quote(str(value), safe=""))
            elif location == "querystring" and name in body:
                value = body.pop(name)
                values = value if isinstance(value, list) else [value]
                query.extend((wire, v if isinstance(v, str) else json.dumps(v)) for v in values)
        url = f"http://testserver{path}" + (f"?{urlencode(query)}" if query else "")
        payload = json.dumps(body).encode() if model.http["method"] in ("POST", "PUT") else b""
        request = AWSRequest(
            method=model.http["method"],
            url=url,
            data=payload,
            headers={"Content-Type": "application/json"},
        )
        SigV4Auth(Credentials(ADMIN_ID, ADMIN_SECRET), operation.service, REGION).add_auth(request)
        headers = {name: value.encode() for name, value in request.headers.items()}
        return self.client.request(
            model.http["method"],
            url.removeprefix("http://testserver"),
            content=payload,
            headers=headers,
        )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def endpoint(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RestEndpoint]:
    home: Path = tmp_path_factory.mktemp(f"fuzz-aws-rest-{request.param}")
    keys = f"{ADMIN_ID}:{ADMIN_SECRET}:admin"
    with fuzzed_app(request.param, home, keys) as (client, settings):
        yield RestEndpoint(client, settings.sqlalchemy_url)


def _check_rest_answer(response: Any, what: str) -> None:
    _check_answer(response, what)
    if response.status_code >= 400:
        assert response.headers.get("x-amzn-errortype"), what


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.target)
def test_valid_rest_requests_never_get_a_5xx(
    endpoint: RestEndpoint, operation: Operation, request: pytest.FixtureRequest
) -> None:
    shape = _model(operation).input_shape
    tally = Tally(operation.target)

    @FUZZ_SETTINGS
    @given(params=valid_value(shape) if shape is not None else st.just({}))
    def run(params: dict[str, Any]) -> None:
        response = endpoint.send_rest(operation, params)
        tally.count(response.status_code, "valid" if response.status_code < 400 else "refused")
        _check_rest_answer(response, f"{operation.target} {json.dumps(params)[:300]}")

    try:
        run()
    finally:
        tally.report(request)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.target)
def test_invalid_rest_requests_get_an_aws_error_and_change_nothing(
    endpoint: RestEndpoint, operation: Operation, request: pytest.FixtureRequest
) -> None:
    tally = Tally(operation.target)
    shape = _model(operation).input_shape
    located = {
        name
        for name, member in (shape.members.items() if shape is not None else ())
        if member.serialization.get("location") in ("uri", "querystring")
    }

    @FUZZ_SETTINGS
    @given(case=invalid_params(_model(operation).input_shape))
    def run(case: tuple[Any, Any]) -> None:
        mutation, params = case
        assume(isinstance(params, dict))
        # on the wire a path or query member is text: a "wrong type" there is no such request
        assume(not (mutation.kind == "wrong-type" and mutation.where.split(".")[0] in located))
        before = endpoint.fingerprint()
        response = endpoint.send_rest(operation, params)
        tally.count(response.status_code, mutation.kind)
        what = f"{operation.target} {mutation} {json.dumps(params)[:300]}"
        _check_rest_answer(response, what)
        assert 400 <= response.status_code < 500, f"{what}: accepted {response.text[:300]}"
        assert endpoint.fingerprint() == before, f"{what}: changed the database"

    try:
        run()
    finally:
        tally.report(request)
