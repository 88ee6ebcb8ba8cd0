"""Connections and API destinations through boto3: shapes, secrets never shown, errors.

Shapes and messages follow what LocalStack's suite records from AWS: CreateConnection answers
``AUTHORIZED``; DescribeConnection shows ``ApiKeyName``/``Username`` only; DeleteConnection
answers ``DELETING``; a missing connection is "Failed to describe the connection(s). Connection
'x' does not exist."; a missing API destination "Failed to describe the api-destination(s). An
api-destination 'x' does not exist."; bad members are "N validation error(s) detected: ...".
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from app.bus.models import Connection
from app.secrets import resolve_references
from app.secrets.models import Secret
from tests.integration.bus.conftest import ACCOUNT, REGION, Live

pytestmark = pytest.mark.integration

CONNECTION_ARN = (
    r"^arn:aws([a-z]|\-)*:events:([a-z]|\d|\-)*:([0-9]{12})?:"
    r"connection\/[\.\-_A-Za-z0-9]+\/[\-A-Za-z0-9]+$"
)


def error(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def api_key(name: str = "x-api-key", value: str = "s3cr3t") -> dict[str, Any]:
    return {"ApiKeyAuthParameters": {"ApiKeyName": name, "ApiKeyValue": value}}


def test_api_key_connection_never_shows_its_secrets(events: Any, live: Live, uid: str) -> None:
    name = f"key-{uid}"
    auth = {
        **api_key(),
        "InvocationHttpParameters": {
            "HeaderParameters": [
                {"Key": "X-Tenant", "Value": "smokehouse", "IsValueSecret": False},
                {"Key": "X-Token", "Value": "hidden", "IsValueSecret": True},
            ],
            "QueryStringParameters": [{"Key": "q", "Value": "secret-q", "IsValueSecret": True}],
        },
    }
    created = events.create_connection(
        Name=name, Description="svc", AuthorizationType="API_KEY", AuthParameters=auth
    )
    created.pop("ResponseMetadata")
    assert sorted(created) == [
        "ConnectionArn",
        "ConnectionState",
        "CreationTime",
        "LastModifiedTime",
    ]
    assert created["ConnectionArn"].startswith(
        f"arn:aws:events:{REGION}:{ACCOUNT}:connection/{name}/"
    )
    assert created["ConnectionState"] == "AUTHORIZED"
    assert isinstance(created["CreationTime"], datetime)

    described = events.describe_connection(Name=name)
    described.pop("ResponseMetadata")
    for key in ("CreationTime", "LastModifiedTime", "LastAuthorizedTime"):
        assert isinstance(described.pop(key), datetime)
    assert described == {
        "ConnectionArn": created["ConnectionArn"],
        "Name": name,
        "Description": "svc",
        "ConnectionState": "AUTHORIZED",
        "AuthorizationType": "API_KEY",
        "AuthParameters": {
            "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key"},
            "InvocationHttpParameters": {
                "HeaderParameters": [
                    {"Key": "X-Tenant", "Value": "smokehouse", "IsValueSecret": False},
                    {"Key": "X-Token", "IsValueSecret": True},
                ],
                "QueryStringParameters": [{"Key": "q", "IsValueSecret": True}],
            },
        },
    }
    listed = events.list_connections(NamePrefix=name)["Connections"]
    assert [(c["Name"], c["AuthorizationType"], c["ConnectionState"]) for c in listed] == [
        (name, "API_KEY", "AUTHORIZED")
    ]
    assert "AuthParameters" not in listed[0]
    with live.session() as session:  # stored encrypted: the row holds references only
        stored = session.get(Connection, name)
        assert stored is not None
        row = json.dumps(stored.auth_parameters)
        for secret in ("s3cr3t", "hidden", "secret-q"):
            assert secret not in row
        assert "smokehouse" in row  # not secret: kept as given
        resolved = resolve_references(stored.auth_parameters, live.settings, session)
        assert resolved["ApiKeyAuthParameters"]["ApiKeyValue"] == "s3cr3t"  # for the delivery
        headers = resolved["InvocationHttpParameters"]["HeaderParameters"]
        assert headers[1]["Value"] == "hidden"


def test_basic_connection_update_and_delete(events: Any, live: Live, uid: str) -> None:
    name = f"basic-{uid}"
    events.create_connection(
        Name=name,
        AuthorizationType="BASIC",
        AuthParameters={"BasicAuthParameters": {"Username": "user", "Password": "pass"}},
    )
    shown = events.describe_connection(Name=name)["AuthParameters"]
    assert shown == {"BasicAuthParameters": {"Username": "user"}}

    updated = events.update_connection(
        Name=name, AuthParameters={"BasicAuthParameters": {"Password": "new-pass"}}
    )
    assert updated["ConnectionState"] == "AUTHORIZED"
    with live.session() as session:
        stored = session.get(Connection, name)
        assert stored is not None
        assert "new-pass" not in json.dumps(stored.auth_parameters)
        assert resolve_references(stored.auth_parameters, live.settings, session)[
            "BasicAuthParameters"
        ] == {"Username": "user", "Password": "new-pass"}
        owned = session.scalars(select(Secret).where(Secret.owner == f"connection:{name}")).all()
        assert len(owned) == 1  # the replaced password's secret went with it
    switched = events.update_connection(
        Name=name, AuthorizationType="API_KEY", AuthParameters=api_key()
    )
    assert switched["ConnectionState"] == "AUTHORIZED"
    assert events.describe_connection(Name=name)["AuthParameters"] == {
        "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key"}
    }

    deleted = events.delete_connection(Name=name)
    assert (deleted["ConnectionArn"], deleted["ConnectionState"]) == (
        switched["ConnectionArn"],
        "DELETING",
    )
    with live.session() as session:  # its secrets went with it
        assert not session.scalars(select(Secret).where(Secret.owner == f"connection:{name}")).all()
    for call in (events.describe_connection, events.delete_connection):
        with pytest.raises(events.exceptions.ResourceNotFoundException) as caught:
            call(Name=name)
        assert error(caught)[1] == (
            f"Failed to describe the connection(s). Connection '{name}' does not exist."
        )


def test_connection_errors(events: Any, raw_events: Any, uid: str) -> None:
    name = f"err-{uid}"
    events.create_connection(Name=name, AuthorizationType="API_KEY", AuthParameters=api_key())
    with pytest.raises(events.exceptions.ResourceAlreadyExistsException) as caught:
        events.create_connection(Name=name, AuthorizationType="API_KEY", AuthParameters=api_key())
    assert error(caught)[1] == f"Connection {name} already exists."

    with pytest.raises(ClientError) as caught:
        events.create_connection(
            Name=f"oauth-{uid}",
            AuthorizationType="OAUTH_CLIENT_CREDENTIALS",
            AuthParameters={
                "OAuthParameters": {
                    "ClientParameters": {"ClientID": "id", "ClientSecret": "secret"},
                    "AuthorizationEndpoint": "https://auth.example/token",
                    "HttpMethod": "POST",
                }
            },
        )
    code, message = error(caught)
    assert code == "ValidationException"
    assert "OAUTH_CLIENT_CREDENTIALS is not supported" in message

    with pytest.raises(ClientError) as caught:
        raw_events.create_connection(
            Name="Invalid Name With Spaces!", AuthorizationType="API_KEY", AuthParameters=api_key()
        )
    assert error(caught) == (  # as AWS answers (recorded by LocalStack)
        "ValidationException",
        "1 validation error detected: Value 'Invalid Name With Spaces!' at 'name' failed to "
        "satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+",
    )
    with pytest.raises(ClientError) as caught:
        raw_events.create_connection(
            Name=f"t-{uid}", AuthorizationType="INVALID_AUTH_TYPE", AuthParameters=api_key()
        )
    assert error(caught) == (
        "ValidationException",
        "1 validation error detected: Value 'INVALID_AUTH_TYPE' at 'authorizationType' failed "
        "to satisfy constraint: Member must satisfy enum value set: "
        "[BASIC, OAUTH_CLIENT_CREDENTIALS, API_KEY]",
    )
    with pytest.raises(ClientError) as caught:  # botocore would refuse this one itself
        raw_events.create_connection(
            Name=f"v-{uid}",
            AuthorizationType="API_KEY",
            AuthParameters={"ApiKeyAuthParameters": {"ApiKeyName": "k"}},
        )
    assert error(caught)[0] == "ValidationException"
    assert "ApiKeyValue" in error(caught)[1]
    with pytest.raises(ClientError) as caught:
        events.create_connection(
            Name=f"w-{uid}",
            AuthorizationType="BASIC",
            AuthParameters=api_key(),
        )
    assert error(caught)[0] == "ValidationException"
    assert "BasicAuthParameters" in error(caught)[1]
    assert events.list_connections(NamePrefix=f"v-{uid}")["Connections"] == []


def test_api_destination_lifecycle(events: Any, uid: str) -> None:
    connection = events.create_connection(
        Name=f"dest-{uid}", AuthorizationType="API_KEY", AuthParameters=api_key()
    )["ConnectionArn"]
    name = f"hook-{uid}"
    created = events.create_api_destination(
        Name=name,
        Description="lan hook",
        ConnectionArn=connection,
        InvocationEndpoint="http://192.168.1.20:8080/hook",  # plain http: allowed on purpose
        HttpMethod="POST",
    )
    created.pop("ResponseMetadata")
    assert sorted(created) == [
        "ApiDestinationArn",
        "ApiDestinationState",
        "CreationTime",
        "LastModifiedTime",
    ]
    assert created["ApiDestinationArn"].startswith(
        f"arn:aws:events:{REGION}:{ACCOUNT}:api-destination/{name}/"
    )
    assert created["ApiDestinationState"] == "ACTIVE"

    described = events.describe_api_destination(Name=name)
    described.pop("ResponseMetadata")
    assert isinstance(described.pop("CreationTime"), datetime)
    assert isinstance(described.pop("LastModifiedTime"), datetime)
    assert described == {
        "ApiDestinationArn": created["ApiDestinationArn"],
        "Name": name,
        "Description": "lan hook",
        "ApiDestinationState": "ACTIVE",
        "ConnectionArn": connection,
        "InvocationEndpoint": "http://192.168.1.20:8080/hook",
        "HttpMethod": "POST",
        "InvocationRateLimitPerSecond": 300,
    }
    for listed in (
        events.list_api_destinations(NamePrefix=name)["ApiDestinations"],
        events.list_api_destinations(ConnectionArn=connection)["ApiDestinations"],
    ):
        assert [(d["Name"], d["ConnectionArn"], d["HttpMethod"]) for d in listed] == [
            (name, connection, "POST")
        ]

    updated = events.update_api_destination(
        Name=name,
        InvocationEndpoint="https://example.com/v2",
        HttpMethod="PUT",
        InvocationRateLimitPerSecond=5,
    )
    assert updated["ApiDestinationArn"] == created["ApiDestinationArn"]
    after = events.describe_api_destination(Name=name)
    assert (
        after["InvocationEndpoint"],
        after["HttpMethod"],
        after["InvocationRateLimitPerSecond"],
    ) == ("https://example.com/v2", "PUT", 5)

    with pytest.raises(ClientError) as caught:  # its connection is in use
        events.delete_connection(Name=f"dest-{uid}")
    assert error(caught)[0] == "ValidationException"
    assert name in error(caught)[1]

    events.delete_api_destination(Name=name)
    for call in (events.describe_api_destination, events.delete_api_destination):
        with pytest.raises(events.exceptions.ResourceNotFoundException) as caught:
            call(Name=name)
        assert error(caught)[1] == (
            f"Failed to describe the api-destination(s). An api-destination '{name}' does not "
            "exist."
        )
    events.delete_connection(Name=f"dest-{uid}")


def test_api_destination_errors(events: Any, raw_events: Any, uid: str) -> None:
    connection = events.create_connection(
        Name=f"de-{uid}", AuthorizationType="API_KEY", AuthParameters=api_key()
    )["ConnectionArn"]
    events.create_api_destination(
        Name=f"d-{uid}",
        ConnectionArn=connection,
        InvocationEndpoint="https://a.example",
        HttpMethod="GET",
    )
    with pytest.raises(events.exceptions.ResourceAlreadyExistsException):
        events.create_api_destination(
            Name=f"d-{uid}",
            ConnectionArn=connection,
            InvocationEndpoint="https://a.example",
            HttpMethod="GET",
        )
    with pytest.raises(ClientError) as caught:
        raw_events.create_api_destination(
            Name=f"x-{uid}",
            ConnectionArn="invalid-connection-arn",
            InvocationEndpoint="https://example.com/api",
            HttpMethod="INVALID_METHOD",
        )
    assert error(caught) == (  # word for word what AWS answers (recorded by LocalStack)
        "ValidationException",
        "2 validation errors detected: Value 'invalid-connection-arn' at 'connectionArn' failed "
        f"to satisfy constraint: Member must satisfy regular expression pattern: {CONNECTION_ARN}; "
        "Value 'INVALID_METHOD' at 'httpMethod' failed to satisfy constraint: Member must "
        "satisfy enum value set: [HEAD, POST, PATCH, DELETE, PUT, GET, OPTIONS]",
    )
    stale = connection.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.create_api_destination(
            Name=f"y-{uid}",
            ConnectionArn=stale,
            InvocationEndpoint="https://a.example",
            HttpMethod="GET",
        )
    with pytest.raises(ClientError) as caught:
        events.create_api_destination(
            Name=f"z-{uid}",
            ConnectionArn=connection,
            InvocationEndpoint="ftp://a.example/x",
            HttpMethod="GET",
        )
    assert error(caught)[0] == "ValidationException"
    assert events.list_api_destinations(NamePrefix=f"y-{uid}")["ApiDestinations"] == []
    assert events.list_api_destinations(NamePrefix=f"z-{uid}")["ApiDestinations"] == []
