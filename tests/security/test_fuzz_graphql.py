"""GraphQL operations generated from the schema never get a 5xx or an unhandled error.

``hypothesis-graphql`` builds documents from the strawberry schema's SDL: queries per root field,
mutations per root field (sent as an admin), and invalid documents (its negative mode: wrong
argument types, missing required arguments, unknown fields), plus text that is not GraphQL at all.
They go through ``tests/integration/graphql_client.py`` (the one place that knows how a test
authenticates), against the real app on SQLite and PostgreSQL.

Asserted: HTTP 200 with every error a GraphQL error with a message; no error is an unexpected
exception (anything but the ``ValueError``/``AwsError`` family the resolvers raise on purpose,
seen on ``strawberry.execution``'s log); no traceback or driver text in any message; and the app
still answers afterwards.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis_graphql as hg
import pytest
from fastapi.testclient import TestClient
from graphql import GraphQLError, get_named_type
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.exc import SQLAlchemyError

from app.aws.errors import AwsError
from app.graphql.schema import schema
from tests.integration.graphql_client import gql
from tests.keys import ADMIN_SECRET, KEYS
from tests.security.fuzz_support import FUZZ_SETTINGS, Tally, fuzzed_app

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

SDL = str(schema)
QUERY_FIELDS = sorted(schema._schema.query_type.fields)  # type: ignore[union-attr]
MUTATION_FIELDS = sorted(schema._schema.mutation_type.fields)  # type: ignore[union-attr]
_BUILTIN = {"String", "Int", "Float", "Boolean", "ID"}


def _has_arguments(kind: str, field: str) -> bool:
    """Negative mode needs an argument of a built-in scalar type to get wrong."""
    root = schema._schema.query_type if kind == "Query" else schema._schema.mutation_type
    assert root is not None
    return any(
        get_named_type(argument.type).name in _BUILTIN  # type: ignore[union-attr]
        for argument in root.fields[field].args.values()
    )


#: (root type, field) of every root field with arguments to get wrong.
INVALID_CASES = [("Query", f) for f in QUERY_FIELDS if _has_arguments("Query", f)] + [
    ("Mutation", f) for f in MUTATION_FIELDS if _has_arguments("Mutation", f)
]

#: Values for the custom scalars: times (valid and not), JSON values, ids.
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "DateTime": st.one_of(
        st.datetimes(timezones=st.just(__import__("datetime").UTC)).map(lambda d: d.isoformat()),
        st.text(max_size=20),
    ).map(hg.nodes.String),
    "JSON": st.one_of(
        st.text(max_size=20).map(hg.nodes.String),
        st.integers().map(hg.nodes.Int),
        st.booleans().map(hg.nodes.Boolean),
        st.just(hg.nodes.Null),
    ),
}

#: What an error message must never carry: a traceback, a driver's or ORM's words.
INTERNAL = re.compile(
    r"Traceback|File \"|sqlalchemy|psycopg|sqlite3|IntegrityError|OperationalError|DataError"
    r"|\(Background on this error|NoneType|object has no attribute",
    re.IGNORECASE,
)
#: The errors resolvers raise on purpose (their message is meant for the caller).
INTENDED = (ValueError, LookupError, AwsError, PermissionError)


class ErrorLog(logging.Handler):
    """Collects the exceptions strawberry logs for each errored operation."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.unexpected: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # strawberry logs each error with ``exc_info=error.original_error``: the exception the
        # resolver raised, or none for errors of the document itself.
        original = record.exc_info[1] if record.exc_info else None
        if original is not None and not _intended(original):
            self.unexpected.append(f"{type(original).__name__}: {original}")


def _intended(error: BaseException) -> bool:
    """An error a resolver raises for the caller: ``ValueError``, ``LookupError`` ("no device
    x"), ``AwsError``, or one
    of the app's own domain errors (``AlarmNotFound``, ...); never a bug's ``TypeError``,
    ``KeyError``, ``AttributeError``, a driver's or ORM's error, or a decoding error."""
    if isinstance(error, UnicodeError | KeyError | IndexError | SQLAlchemyError):
        return False
    return isinstance(error, (*INTENDED, GraphQLError)) or type(error).__module__.startswith("app.")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    home: Path = tmp_path_factory.mktemp(f"fuzz-graphql-{request.param}")
    with fuzzed_app(request.param, home, KEYS) as (test_client, _):
        yield test_client


@pytest.fixture
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    logger = logging.getLogger("strawberry.execution")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _check(client: TestClient, document: str, error_log: ErrorLog, tally: Tally) -> None:
    try:
        body = gql(client, document, ADMIN_SECRET)
    except AssertionError:
        tally.count(500, "http-error")
        raise
    tally.count(200, "errors" if body.get("errors") else "data")
    for error in body.get("errors") or []:
        message = error.get("message")
        assert isinstance(message, str), (document, error)
        assert message, (document, error)
        assert not INTERNAL.search(message), (document, message)
    assert not error_log.unexpected, (document, error_log.unexpected)


def _fuzz(
    client: TestClient,
    strategy: st.SearchStrategy[Any],
    error_log: ErrorLog,
    tally: Tally,
    request: pytest.FixtureRequest,
) -> None:
    @FUZZ_SETTINGS
    @given(document=strategy)
    def run(document: str) -> None:
        error_log.unexpected.clear()
        _check(client, document, error_log, tally)

    try:
        run()
    finally:
        tally.report(request)
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("field", QUERY_FIELDS)
def test_generated_queries(
    client: TestClient, field: str, error_log: ErrorLog, request: pytest.FixtureRequest
) -> None:
    strategy = hg.queries(SDL, fields=[field], custom_scalars=SCALARS)
    _fuzz(client, strategy, error_log, Tally(f"graphql.Query.{field}"), request)


@pytest.mark.parametrize("field", MUTATION_FIELDS)
def test_generated_mutations_as_admin(
    client: TestClient, field: str, error_log: ErrorLog, request: pytest.FixtureRequest
) -> None:
    strategy = hg.mutations(SDL, fields=[field], custom_scalars=SCALARS)
    _fuzz(client, strategy, error_log, Tally(f"graphql.Mutation.{field}"), request)


@pytest.mark.parametrize(("kind", "field"), INVALID_CASES)
def test_invalid_documents(
    client: TestClient, kind: str, field: str, error_log: ErrorLog, request: pytest.FixtureRequest
) -> None:
    """hypothesis-graphql's negative mode: documents the schema must refuse (wrong argument
    types, required arguments left out)."""
    build = hg.queries if kind == "Query" else hg.mutations
    strategy = build(SDL, fields=[field], custom_scalars=SCALARS, mode=hg.Mode.NEGATIVE)
    _fuzz(client, strategy, error_log, Tally(f"graphql.{kind}.{field}"), request)


def test_text_that_is_not_graphql(
    client: TestClient, error_log: ErrorLog, request: pytest.FixtureRequest
) -> None:
    strategy = st.one_of(
        st.text(min_size=1, max_size=200),  # (an empty query is strawberry's 400, not a document)
        st.sampled_from(
            [
                "{" * 3000,
                "query { system { version " + "}" * 50,
                "{ __schema { types { name } } }",
                'subscription { readingUpdates(deviceId: "x") { seq } }',
                "query A { system { version } } query A { system { version } }",
                "{ system { ...F } } fragment F on System { ...F }",
                "\x00",
            ]
        ),
    )
    _fuzz(client, strategy, error_log, Tally("graphql.not-graphql"), request)


@pytest.mark.parametrize(
    ("document", "variables"),
    [
        ('{ device(id: "\\u0000") { id } }', {}),
        ('{ queueMessage(id: "a\\u0000") { id } }', {}),
        ('mutation { startExecution(stateMachine: "\\u0000") { arn } }', {}),
        ("query ($id: ID!) { device(id: $id) { id } }", {"id": "x\x00"}),
        (
            'mutation ($p: JSON) { sendMessage(queue: "q", payload: $p) { id } }',
            {"p": {"k": "\x00"}},
        ),
    ],
)
def test_nul_in_text_is_a_graphql_error(
    client: TestClient, document: str, variables: dict[str, Any], error_log: ErrorLog
) -> None:
    """Found by the fuzzer on PostgreSQL: NUL in an argument answered psycopg's DataError, SQL
    included. Now refused before anything runs (app/graphql/limits.py, ``NulRefuser``)."""
    body = gql(client, document, ADMIN_SECRET, **variables)
    assert [e["message"] for e in body["errors"]] == [
        "Text arguments may not contain the NUL character (U+0000)"
    ]
    assert not error_log.unexpected
