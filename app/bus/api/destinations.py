"""API destinations: Create/Describe/List/Update/DeleteApiDestination.

``http://`` endpoints are allowed (LAN targets), unlike AWS; the model's pattern still applies.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.aws.operations import AwsCall
from app.bus import connections
from app.bus.api.common import Answer, Params, clean, operation, page, paging, scope
from app.bus.arns import Scope
from app.bus.models import ApiDestination, Connection

#: EventBridge lists the methods in its own order in the enum error (recorded by LocalStack).
ENUMS = {"ApiDestinationHttpMethod": connections.HTTP_METHODS}


def _render(session: Session, scope: Scope, destination: ApiDestination) -> Answer:
    connection = session.get(Connection, destination.connection_name)
    return clean(
        {
            "ApiDestinationArn": connections.api_destination_arn(scope, destination),
            "Name": destination.name,
            "ApiDestinationState": destination.state,
            "ConnectionArn": (
                connections.connection_arn(scope, connection) if connection is not None else None
            ),
            "InvocationEndpoint": destination.endpoint,
            "HttpMethod": destination.http_method,
            "InvocationRateLimitPerSecond": destination.invocation_rate_limit_per_second,
            "CreationTime": destination.created_at,
            "LastModifiedTime": destination.last_modified_at,
        }
    )


def _short(scope: Scope, destination: ApiDestination) -> Answer:
    return {
        "ApiDestinationArn": connections.api_destination_arn(scope, destination),
        "ApiDestinationState": destination.state,
        "CreationTime": destination.created_at,
        "LastModifiedTime": destination.last_modified_at,
    }


@operation("CreateApiDestination", write=True, enums=ENUMS)
def create_api_destination_op(params: Params, call: AwsCall) -> Answer:
    """An HTTP endpoint plus a connection."""
    with call.session() as session:
        destination = connections.create_api_destination(
            session,
            name=params["Name"],
            connection_arn=params["ConnectionArn"],
            endpoint=params["InvocationEndpoint"],
            http_method=params["HttpMethod"],
            rate_limit=params.get("InvocationRateLimitPerSecond"),
            description=params.get("Description"),
        )
        return _short(scope(call), destination)


@operation("DescribeApiDestination", write=False)
def describe_api_destination_op(params: Params, call: AwsCall) -> Answer:
    with call.session() as session:
        destination = connections.get_api_destination(session, params["Name"])
        return {
            **_render(session, scope(call), destination),
            **clean({"Description": destination.description}),
        }


@operation("ListApiDestinations", write=False)
def list_api_destinations_op(params: Params, call: AwsCall) -> Answer:
    where = scope(call)
    limit, token = paging(params)
    with call.session() as session:
        found = connections.list_api_destinations(
            session,
            name_prefix=params.get("NamePrefix"),
            connection_arn=params.get("ConnectionArn"),
            limit=limit,
            token=token,
        )
        return page(found, "ApiDestinations", lambda d: _render(session, where, d))


@operation("UpdateApiDestination", write=True, enums=ENUMS)
def update_api_destination_op(params: Params, call: AwsCall) -> Answer:
    with call.session() as session:
        destination = connections.update_api_destination(
            session,
            params["Name"],
            connection_arn=params.get("ConnectionArn"),
            endpoint=params.get("InvocationEndpoint"),
            http_method=params.get("HttpMethod"),
            rate_limit=params.get("InvocationRateLimitPerSecond"),
            description=params.get("Description"),
        )
        return _short(scope(call), destination)


@operation("DeleteApiDestination", write=True)
def delete_api_destination_op(params: Params, call: AwsCall) -> Answer:
    with call.session() as session:
        connections.delete_api_destination(session, params["Name"])
    return {}
