"""Connections and API destinations: where an ``api-destination`` target sends, and with what auth.

A connection holds the credentials; EventBridge keeps them in Secrets Manager, we keep them in the
secret store (:mod:`app.secrets`, encrypted, owner ``connection:<name>``): the ``connections`` row's
``auth_parameters`` is the ``AuthParameters`` structure of CreateConnection with each secret value
(``Password``, ``ApiKeyValue``, ``ClientSecret``, ``IsValueSecret`` values) replaced by its
``{{resolve:smokehouse:<id>}}`` reference, resolved only by the delivery that sends it. Rows from
before the store keep plaintext until their next update (read falls back on it). They go out on
deliveries and nowhere else: Describe/List answers carry the parameter
*names* (``Username``, ``ApiKeyName``, non-secret invocation parameters) and never a password, an
API key value or an ``IsValueSecret`` value, as on AWS.

Differences from AWS, on purpose: ``http://`` endpoints are allowed (targets on the LAN), and
``OAUTH_CLIENT_CREDENTIALS`` is refused until smokehouse can fetch tokens. Services take a Session
and never commit.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.bus.arns import Scope
from app.bus.errors import ResourceAlreadyExists, ResourceNotFound, Validation
from app.bus.models import ApiDestination, Connection
from app.bus.service import Page, paginate
from app.config import Settings
from app.db import utcnow
from app.secrets import delete, delete_owned, put, reference
from app.secrets.references import REFERENCE

AUTHORIZATION_TYPES = ("BASIC", "OAUTH_CLIENT_CREDENTIALS", "API_KEY")
CONNECTION_STATES = (
    "CREATING",
    "UPDATING",
    "DELETING",
    "AUTHORIZED",
    "DEAUTHORIZED",
    "AUTHORIZING",
    "DEAUTHORIZING",
    "ACTIVE",
    "FAILED_CONNECTIVITY",
)
# In the order EventBridge lists them in its enum error message (recorded by LocalStack).
HTTP_METHODS = ("HEAD", "POST", "PATCH", "DELETE", "PUT", "GET", "OPTIONS")
DEFAULT_RATE = 300

#: Which AuthParameters member each AuthorizationType needs, and that member's required fields.
AUTH_MEMBERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "BASIC": ("BasicAuthParameters", ("Username", "Password")),
    "API_KEY": ("ApiKeyAuthParameters", ("ApiKeyName", "ApiKeyValue")),
}
#: Fields never shown by Describe: they are the secrets.
SECRET_FIELDS = frozenset({"Password", "ApiKeyValue", "ClientSecret"})
INVOCATION_LISTS = ("HeaderParameters", "QueryStringParameters", "BodyParameters")

_CONNECTION_ARN = re.compile(
    r"^arn:aws([a-z]|\-)*:events:([a-z]|\d|\-)*:([0-9]{12})?:"
    r"connection/(?P<name>[\.\-_A-Za-z0-9]+)/(?P<uuid>[\-A-Za-z0-9]+)$"
)


def _not_supported(authorization_type: str) -> Validation:
    return Validation(
        f"AuthorizationType {authorization_type} is not supported by smokehouse yet; "
        "use API_KEY or BASIC."
    )


def check_auth_parameters(authorization_type: str, auth: Mapping[str, Any]) -> None:
    """The parameters the type needs are there and are non-empty strings; no other type's."""
    if authorization_type not in AUTH_MEMBERS:
        raise _not_supported(authorization_type)
    member, fields = AUTH_MEMBERS[authorization_type]
    given = auth.get(member)
    if not isinstance(given, Mapping):
        raise Validation(
            f"AuthParameters.{member} is required for AuthorizationType {authorization_type}."
        )
    for field in fields:
        value = given.get(field)
        if not isinstance(value, str) or not value.strip():
            raise Validation(
                f"AuthParameters.{member}.{field} is required for "
                f"AuthorizationType {authorization_type}."
            )
    others = [
        name
        for name in ("BasicAuthParameters", "ApiKeyAuthParameters", "OAuthParameters")
        if name != member and auth.get(name) is not None
    ]
    if others:
        raise Validation(
            f"AuthParameters.{others[0]} cannot be used with AuthorizationType "
            f"{authorization_type}."
        )
    _check_invocation(auth.get("InvocationHttpParameters"))


def _check_invocation(params: Any) -> None:
    if params is None:
        return
    if not isinstance(params, Mapping):
        raise Validation("AuthParameters.InvocationHttpParameters must be an object.")
    for name in INVOCATION_LISTS:
        entries = params.get(name)
        if entries is None:
            continue
        if not isinstance(entries, list) or not all(
            isinstance(e, Mapping) and isinstance(e.get("Key"), str) and e["Key"] for e in entries
        ):
            raise Validation(
                f"AuthParameters.InvocationHttpParameters.{name} must be a list of "
                "{Key, Value, IsValueSecret}."
            )


def public_auth_parameters(connection: Connection) -> dict[str, Any]:
    """``AuthParameters`` as DescribeConnection shows them: no secret ever leaves."""
    shown: dict[str, Any] = {}
    for member, value in connection.auth_parameters.items():
        if member == "InvocationHttpParameters" and isinstance(value, Mapping):
            shown[member] = {
                name: [
                    {
                        k: v
                        for k, v in entry.items()
                        if not (k == "Value" and entry.get("IsValueSecret"))
                    }
                    for entry in value.get(name) or []
                ]
                for name in INVOCATION_LISTS
                if name in value
            }
        elif isinstance(value, Mapping):
            shown[member] = {k: v for k, v in value.items() if k not in SECRET_FIELDS}
    return shown


# --- credentials in the secret store --------------------------------------------------------


def secret_owner(name: str) -> str:
    return f"connection:{name}"


def _seal(session: Session, settings: Settings, name: str, value: Any, secret: bool = False) -> Any:
    """``value`` with every secret field stored and replaced by its reference."""
    if isinstance(value, str):
        if not secret or REFERENCE.fullmatch(value):
            return value
        owner = secret_owner(name)
        return reference(
            put(session, settings, kind="connection-credential", owner=owner, value=value)
        )
    if isinstance(value, list):
        return [_seal(session, settings, name, v) for v in value]
    if isinstance(value, Mapping):
        hidden = bool(value.get("IsValueSecret"))
        return {
            k: _seal(session, settings, name, v, k in SECRET_FIELDS or (k == "Value" and hidden))
            for k, v in value.items()
        }
    return value


def _references(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(REFERENCE.findall(value))
    if isinstance(value, list):
        return {r for v in value for r in _references(v)}
    if isinstance(value, Mapping):
        return {r for v in value.values() for r in _references(v)}
    return set()


# --- connections --------------------------------------------------------------------------


def create_connection(
    session: Session,
    *,
    name: str,
    authorization_type: str,
    auth_parameters: Mapping[str, Any],
    settings: Settings,
    description: str | None = None,
) -> Connection:
    if session.get(Connection, name) is not None:
        raise ResourceAlreadyExists(f"Connection {name} already exists.")
    check_auth_parameters(authorization_type, auth_parameters)
    now = utcnow()
    delete_owned(session, secret_owner(name))  # a connection of this name deleted earlier
    connection = Connection(
        name=name,
        uuid=str(uuid.uuid4()),
        description=description,
        authorization_type=authorization_type,
        auth_parameters=_seal(session, settings, name, copy.deepcopy(dict(auth_parameters))),
        state="AUTHORIZED",
        created_at=now,
        last_modified_at=now,
    )
    session.add(connection)
    try:
        session.flush()
    except IntegrityError:  # a concurrent CreateConnection won the race for the name
        raise ResourceAlreadyExists(f"Connection {name} already exists.") from None
    return connection


def get_connection(session: Session, name: str) -> Connection:
    connection = session.get(Connection, name)
    if connection is None:
        raise ResourceNotFound(
            f"Failed to describe the connection(s). Connection '{name}' does not exist."
        )
    return connection


def connection_by_arn(session: Session, arn: str) -> Connection:
    """The connection an ARN names; a deleted-and-recreated one (new uuid) does not count."""
    match = _CONNECTION_ARN.match(arn or "")
    if match is None:  # the API layer already refused malformed ARNs with AWS's message
        raise Validation(f"Parameter ConnectionArn is not valid: {arn!r} is not a connection ARN.")
    connection = session.get(Connection, match["name"])
    if connection is None or connection.uuid != match["uuid"]:
        raise ResourceNotFound(
            f"Failed to describe the connection(s). Connection '{match['name']}' does not exist."
        )
    return connection


def list_connections(
    session: Session,
    *,
    name_prefix: str | None = None,
    state: str | None = None,
    limit: int | None = None,
    token: str | None = None,
) -> Page:
    statement = select(Connection).order_by(Connection.name)
    if name_prefix:
        statement = statement.where(Connection.name.startswith(name_prefix, autoescape=True))
    if state:
        statement = statement.where(Connection.state == state)
    return paginate(statement, session, limit, token)


def update_connection(
    session: Session,
    name: str,
    *,
    settings: Settings,
    description: str | None = None,
    authorization_type: str | None = None,
    auth_parameters: Mapping[str, Any] | None = None,
) -> Connection:
    """Merge the given parameters into the stored ones (unset fields keep their values)."""
    connection = get_connection(session, name)
    new_type = authorization_type or connection.authorization_type
    merged: dict[str, Any] = copy.deepcopy(connection.auth_parameters)
    if new_type != connection.authorization_type:
        old_member = AUTH_MEMBERS.get(connection.authorization_type, ("", ()))[0]
        merged.pop(old_member, None)
    for member, value in (auth_parameters or {}).items():
        if member == "InvocationHttpParameters" or not isinstance(value, Mapping):
            merged[member] = copy.deepcopy(value)
        else:
            merged[member] = {**merged.get(member, {}), **copy.deepcopy(dict(value))}
    check_auth_parameters(new_type, merged)
    if description is not None:
        connection.description = description
    connection.authorization_type = new_type
    before = _references(connection.auth_parameters)
    merged = _seal(session, settings, name, merged)  # plaintext from before the store too
    for gone in before - _references(merged):
        delete(session, gone)
    connection.auth_parameters = merged
    connection.last_modified_at = utcnow()
    session.flush()
    return connection


def delete_connection(session: Session, name: str) -> Connection:
    """Delete a connection no API destination uses; returns the deleted row (for the answer)."""
    connection = get_connection(session, name)
    users = session.scalars(
        select(ApiDestination.name).where(ApiDestination.connection_name == name).limit(5)
    ).all()
    if users:
        # Ours: smokehouse refuses rather than leave API destinations without credentials.
        raise Validation(
            f"Connection {name} is used by API destination(s) {', '.join(users)}; "
            "delete or update them first."
        )
    session.delete(connection)
    delete_owned(session, secret_owner(name))
    session.flush()
    return connection


# --- API destinations ---------------------------------------------------------------------


def check_endpoint(endpoint: str) -> None:
    """An absolute http(s) URL; unlike AWS, plain http is fine (targets on the LAN)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Validation(
            "Parameter InvocationEndpoint is not valid. "
            "Reason: it must be an absolute http:// or https:// URL."
        )


def create_api_destination(
    session: Session,
    *,
    name: str,
    connection_arn: str,
    endpoint: str,
    http_method: str,
    rate_limit: int | None = None,
    description: str | None = None,
) -> ApiDestination:
    if session.get(ApiDestination, name) is not None:
        raise ResourceAlreadyExists(f"An api-destination '{name}' already exists.")
    connection = connection_by_arn(session, connection_arn)
    check_endpoint(endpoint)
    now = utcnow()
    destination = ApiDestination(
        name=name,
        uuid=str(uuid.uuid4()),
        description=description,
        connection_name=connection.name,
        endpoint=endpoint,
        http_method=http_method,
        invocation_rate_limit_per_second=rate_limit or DEFAULT_RATE,
        state="ACTIVE",
        created_at=now,
        last_modified_at=now,
    )
    session.add(destination)
    try:
        session.flush()
    except IntegrityError:  # a concurrent CreateApiDestination won the race for the name
        raise ResourceAlreadyExists(f"An api-destination '{name}' already exists.") from None
    return destination


def get_api_destination(session: Session, name: str) -> ApiDestination:
    destination = session.get(ApiDestination, name)
    if destination is None:
        raise ResourceNotFound(
            f"Failed to describe the api-destination(s). An api-destination '{name}' does not "
            "exist."
        )
    return destination


def list_api_destinations(
    session: Session,
    *,
    name_prefix: str | None = None,
    connection_arn: str | None = None,
    limit: int | None = None,
    token: str | None = None,
) -> Page:
    statement = select(ApiDestination).order_by(ApiDestination.name)
    if name_prefix:
        statement = statement.where(ApiDestination.name.startswith(name_prefix, autoescape=True))
    if connection_arn:
        connection = connection_by_arn(session, connection_arn)
        statement = statement.where(ApiDestination.connection_name == connection.name)
    return paginate(statement, session, limit, token)


def update_api_destination(
    session: Session,
    name: str,
    *,
    connection_arn: str | None = None,
    endpoint: str | None = None,
    http_method: str | None = None,
    rate_limit: int | None = None,
    description: str | None = None,
) -> ApiDestination:
    destination = get_api_destination(session, name)
    if connection_arn is not None:
        destination.connection_name = connection_by_arn(session, connection_arn).name
    if endpoint is not None:
        check_endpoint(endpoint)
        destination.endpoint = endpoint
    if http_method is not None:
        destination.http_method = http_method
    if rate_limit is not None:
        destination.invocation_rate_limit_per_second = rate_limit
    if description is not None:
        destination.description = description
    destination.last_modified_at = utcnow()
    session.flush()
    return destination


def delete_api_destination(session: Session, name: str) -> None:
    session.delete(get_api_destination(session, name))
    session.flush()


def connection_arn(scope: Scope, connection: Connection) -> str:
    return scope.connection_arn(connection.name, connection.uuid)


def api_destination_arn(scope: Scope, destination: ApiDestination) -> str:
    return scope.api_destination_arn(destination.name, destination.uuid)
