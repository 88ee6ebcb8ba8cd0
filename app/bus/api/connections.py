"""Connections (credentials for API destinations): Create/Describe/List/Update/DeleteConnection."""

from __future__ import annotations

from app.aws.operations import AwsCall
from app.bus import connections
from app.bus.api.common import Answer, Params, clean, operation, page, paging, pick, scope
from app.bus.arns import Scope
from app.bus.errors import Validation
from app.bus.models import Connection


def _times(connection: Connection) -> Answer:
    return {
        "CreationTime": connection.created_at,
        "LastModifiedTime": connection.last_modified_at,
        "LastAuthorizedTime": connection.last_modified_at,
    }


def _summary(scope: Scope, connection: Connection) -> Answer:
    return {
        "ConnectionArn": connections.connection_arn(scope, connection),
        "Name": connection.name,
        "ConnectionState": connection.state,
        "AuthorizationType": connection.authorization_type,
        **_times(connection),
    }


def _refuse_private(params: Params) -> None:
    """Private API connectivity needs VPC Lattice: the model allows it, smokehouse does not."""
    auth = params.get("AuthParameters") or {}
    if (
        params.get("InvocationConnectivityParameters") is not None
        or auth.get("ConnectivityParameters") is not None
    ):
        raise Validation(
            "Private API connectivity (ConnectivityParameters) is not supported by smokehouse."
        )


#: ``app.bus.connections`` checks AuthParameters against the AuthorizationType, in its own words.
AUTH = ("AuthParameters",)


@operation("CreateConnection", write=True, shallow=AUTH)
def create_connection_op(params: Params, call: AwsCall) -> Answer:
    """Credentials for API destinations: API_KEY or BASIC (OAuth is refused for now)."""
    _refuse_private(params)
    with call.session() as session:
        connection = connections.create_connection(
            session,
            name=params["Name"],
            authorization_type=params["AuthorizationType"],
            auth_parameters=params["AuthParameters"],
            settings=call.require_settings(),
            description=params.get("Description"),
        )
        return pick(
            _summary(scope(call), connection),
            "ConnectionArn",
            "ConnectionState",
            "CreationTime",
            "LastModifiedTime",
        )


@operation("DescribeConnection", write=False)
def describe_connection_op(params: Params, call: AwsCall) -> Answer:
    """Everything but the secrets: passwords, API key values and secret parameter values."""
    with call.session() as session:
        connection = connections.get_connection(session, params["Name"])
        return clean(
            {
                **_summary(scope(call), connection),
                "Description": connection.description,
                "AuthParameters": connections.public_auth_parameters(connection),
            }
        )


@operation("ListConnections", write=False, enums={"ConnectionState": connections.CONNECTION_STATES})
def list_connections_op(params: Params, call: AwsCall) -> Answer:
    where = scope(call)
    limit, token = paging(params)
    with call.session() as session:
        found = connections.list_connections(
            session,
            name_prefix=params.get("NamePrefix"),
            state=params.get("ConnectionState"),
            limit=limit,
            token=token,
        )
        return page(found, "Connections", lambda c: _summary(where, c))


@operation("UpdateConnection", write=True, shallow=AUTH)
def update_connection_op(params: Params, call: AwsCall) -> Answer:
    """Given parameters are merged into the stored ones; the rest keep their values."""
    _refuse_private(params)
    with call.session() as session:
        connection = connections.update_connection(
            session,
            params["Name"],
            description=params.get("Description"),
            authorization_type=params.get("AuthorizationType"),
            auth_parameters=params.get("AuthParameters"),
            settings=call.require_settings(),
        )
        return pick(
            _summary(scope(call), connection),
            "ConnectionArn",
            "ConnectionState",
            "CreationTime",
            "LastModifiedTime",
            "LastAuthorizedTime",
        )


@operation("DeleteConnection", write=True)
def delete_connection_op(params: Params, call: AwsCall) -> Answer:
    with call.session() as session:
        connection = connections.delete_connection(session, params["Name"])
        return {
            "ConnectionArn": connections.connection_arn(scope(call), connection),
            "ConnectionState": "DELETING",  # what AWS answers; ours is gone already
            **_times(connection),
        }
