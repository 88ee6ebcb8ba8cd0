"""``arn:aws:events:<region>:<account>:api-destination/<name>/<uuid>``: call an HTTP endpoint.

EventBridge API destinations, as the user guide and API reference describe them:

* the destination's method and endpoint; ``*`` wildcards in the endpoint are filled, in order, by
  the target's ``HttpParameters.PathParameterValues``; ``HeaderParameters`` and
  ``QueryStringParameters`` are added; any value (and any query key) may be a JSON path into the
  event (``$.detail.id``), replaced at delivery time;
* the connection's ``InvocationHttpParameters`` are merged in "with any values from the
  Connection taking precedence", then its auth: ``API_KEY`` sends the header ``ApiKeyName:
  ApiKeyValue`` (a bearer token is ``Authorization`` / ``Bearer …``), ``BASIC`` sends
  ``Authorization: Basic …``; OAuth client credentials are not implemented;
* the headers EventBridge adds: ``User-Agent: Amazon/EventBridge/ApiDestinations``,
  ``Content-Type: application/json; charset=utf-8``, ``Range: bytes=0-1048575`` and
  ``Accept-Encoding: gzip,deflate`` (not ``Connection: close``: a pooled connection is cheaper);
* a 5 s timeout, retried — a total deadline for the whole call (at most
  ``SMOKEHOUSE_EGRESS_TIMEOUT_SECONDS``), and the answer read up to
  ``SMOKEHOUSE_EGRESS_MAX_RESPONSE_BYTES`` (only its status and first bytes matter);
* the egress policy (:mod:`app.egress`): a destination it refuses (loopback, link-local,
  private, metadata, smokehouse's own ports…, checked on the resolved address that is then
  connected to) fails the delivery at once, not retried, code ``EgressRefused``, the reason in
  the message (and so in the attempt row and the dead letter); redirects are not followed;
* 429 and 5xx are retried, honouring ``Retry-After`` (seconds or an HTTP date; a negative value
  stops the retries); every other non-2xx status (1xx, 3xx, 4xx) is not retried.

``invocation_rate_limit_per_second`` is enforced per process with a token bucket; going over it
is a retryable failure with a short ``retry_after``, so the backlog waits in the outbox, not in a
sleeping worker.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy.orm import Session

from app.bus.models import ApiDestination, Connection
from app.bus.targets.base import DeliveryContext, TargetFailure
from app.bus.transform import path_problem, select
from app.common.jsonpath import MISSING
from app.config import Settings
from app.egress import (
    EgressRefused,
    EgressTimeout,
    EgressTooLarge,
    EgressUnresolved,
    Response,
    policy_for,
    request,
)
from app.secrets import resolve_references

ARN = re.compile(
    r"^arn:aws:events:[a-z0-9-]*:\d{12}:api-destination/([.\-_A-Za-z0-9]{1,64})(?:/([^/]+))?$"
)
HEADER_KEY = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-zA-Z]+$")
HEADER_VALUE = re.compile(r"^[ \t]*[\x20-\x7E]+([ \t]+[\x20-\x7E]+)*[ \t]*$")
TIMEOUT_SECONDS = 5.0
DEFAULT_HEADERS = {
    "User-Agent": "Amazon/EventBridge/ApiDestinations",
    "Content-Type": "application/json; charset=utf-8",
    "Range": "bytes=0-1048575",
    "Accept-Encoding": "gzip,deflate",
}
THROTTLE_FLOOR_SECONDS = 0.05


def parse_arn(arn: str) -> tuple[str, str | None] | None:
    match = ARN.match(arn)
    return (match.group(1), match.group(2)) if match else None


@dataclass(frozen=True, slots=True)
class Destination:
    """An API destination and its connection, read in one short transaction."""

    name: str
    endpoint: str
    method: str
    rate_per_second: int
    state: str
    authorization_type: str
    auth: dict[str, Any]
    connection_state: str


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    url: str
    headers: dict[str, str]
    params: tuple[tuple[str, str], ...]
    body: bytes


# --- rate limit ------------------------------------------------------------------------------


@dataclass
class TokenBucket:
    """``rate`` tokens a second, at most ``rate`` banked (one second of burst)."""

    rate: float
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.tokens = self.rate

    def take(self, now: float | None = None) -> float:
        """Take a token: 0.0 when granted, else how many seconds until one is available."""
        with self.lock:
            now = time.monotonic() if now is None else now
            self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate


_buckets: dict[str, TokenBucket] = {}
_buckets_lock = threading.Lock()


def bucket_for(name: str, rate: int) -> TokenBucket:
    with _buckets_lock:
        bucket = _buckets.get(name)
        if bucket is None or bucket.rate != rate:
            bucket = _buckets[name] = TokenBucket(float(max(rate, 1)))
        return bucket


# --- building the request --------------------------------------------------------------------


def is_path(value: str) -> bool:
    """``$``, ``$.…`` and ``$[…]`` are JSON paths; anything else (``$5``) is static text."""
    return value == "$" or value.startswith(("$.", "$["))


def dynamic(value: str, event: dict[str, Any]) -> str:
    """An ``HttpParameters`` value: static text, or a JSON path (``$.…``) into the event."""
    if not is_path(value):
        return value
    selected = select(event, value)
    if selected is MISSING:
        return ""
    return selected if isinstance(selected, str) else json.dumps(selected, separators=(",", ":"))


def _pairs(given: Any) -> list[tuple[str, str]]:
    """AWS ``[{"Key": …, "Value": …}]`` parameter lists (connections) as pairs."""
    if not isinstance(given, list):
        return []
    return [
        (str(p["Key"]), str(p.get("Value", "")))
        for p in given
        if isinstance(p, dict) and "Key" in p
    ]


def auth_headers(destination: Destination) -> dict[str, str]:
    auth = destination.auth
    kind = destination.authorization_type.upper()
    if kind == "API_KEY":
        given = auth.get("ApiKeyAuthParameters") or {}
        return {str(given["ApiKeyName"]): str(given.get("ApiKeyValue", ""))}
    if kind == "BASIC":
        given = auth.get("BasicAuthParameters") or {}
        token = f"{given.get('Username', '')}:{given.get('Password', '')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(token).decode()}
    raise TargetFailure(
        f"authorization type {destination.authorization_type} is not supported by smokehouse",
        retryable=False,
        code="UnsupportedAuthorization",
    )


def build_call(
    destination: Destination, spec: dict[str, Any], event: dict[str, Any], payload: str
) -> Call:
    """The request EventBridge would make: pure, so every rule above is testable alone."""
    http = spec.get("HttpParameters") or {}
    path_values = [dynamic(str(v), event) for v in http.get("PathParameterValues") or []]
    parts = destination.endpoint.split("*")
    if len(path_values) < len(parts) - 1:
        raise TargetFailure(
            f"endpoint {destination.endpoint} has {len(parts) - 1} path wildcards but the target "
            f"gives {len(path_values)} PathParameterValues",
            retryable=False,
            code="PathParameters",
        )
    url = parts[0]
    for value, rest in zip(path_values, parts[1:], strict=False):
        url += quote(value, safe="") + rest
    invocation = destination.auth.get("InvocationHttpParameters") or {}
    headers = dict(DEFAULT_HEADERS)
    layers = [
        [(str(k), dynamic(str(v), event)) for k, v in (http.get("HeaderParameters") or {}).items()],
        _pairs(invocation.get("HeaderParameters")),  # the connection's win over the target's
        list(auth_headers(destination).items()),
    ]
    for key, value in (pair for layer in layers for pair in layer):
        for existing in [k for k in headers if k.lower() == key.lower()]:  # names are case-blind
            del headers[existing]
        headers[key] = value
    query: dict[str, str] = {}
    for key, value in (http.get("QueryStringParameters") or {}).items():
        query[dynamic(str(key), event)] = dynamic(str(value), event)
    query.update(_pairs(invocation.get("QueryStringParameters")))
    body = payload
    body_parameters = _pairs(invocation.get("BodyParameters"))
    if body_parameters:
        try:
            document = json.loads(payload)
        except ValueError:
            document = None
        if isinstance(document, dict):  # body parameters join a JSON object body
            document.update(body_parameters)
            body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return Call(destination.method.upper(), url, headers, tuple(query.items()), body.encode())


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (negative stays negative: "stop retrying"); None if absent or
    unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def judge_response(response: Response | httpx.Response) -> int:
    """The status on success; a retryable or final TargetFailure otherwise."""
    status = response.status_code
    if 200 <= status < 300:
        return status
    snippet = response.text[:200] if response.content else ""
    # No query string in the message: connection query parameters may be secrets, and the
    # message is stored (attempts, dead letters).
    where = response.url.copy_with(query=None)
    message = f"HTTP {status} from {where}" + (f": {snippet}" if snippet else "")
    if status == 429 or 500 <= status < 600:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if retry_after is not None and retry_after < 0:
            raise TargetFailure(
                message + " (negative Retry-After: not retried)",
                retryable=False,
                code="HttpError",
                status_code=status,
            )
        raise TargetFailure(
            message, retryable=True, code="HttpError", status_code=status, retry_after=retry_after
        )
    raise TargetFailure(message, retryable=False, code="HttpError", status_code=status)


def load_destination(session: Session, name: str, settings: Settings) -> Destination | None:
    row = session.get(ApiDestination, name)
    if row is None:
        return None
    connection = session.get(Connection, row.connection_name)
    return Destination(
        name=row.name,
        endpoint=row.endpoint,
        method=row.http_method,
        rate_per_second=row.invocation_rate_limit_per_second,
        state=row.state,
        authorization_type=connection.authorization_type if connection else "",
        # the connection's secrets, resolved for this call only
        auth=resolve_references(dict(connection.auth_parameters or {}), settings, session)
        if connection
        else {},
        connection_state=connection.state if connection else "MISSING",
    )


def http_parameters_problem(http: Any) -> str | None:
    if not isinstance(http, dict) or set(http) - {
        "PathParameterValues",
        "HeaderParameters",
        "QueryStringParameters",
    }:
        return (
            "HttpParameters accepts PathParameterValues, HeaderParameters and "
            "QueryStringParameters."
        )
    values = http.get("PathParameterValues") or []
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        return "HttpParameters.PathParameterValues must be a list of non-empty strings."
    headers = http.get("HeaderParameters") or {}
    queries = http.get("QueryStringParameters") or {}
    for label, given in (("HeaderParameters", headers), ("QueryStringParameters", queries)):
        if not isinstance(given, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 512 and len(v) <= 512
            for k, v in given.items()
        ):
            return f"HttpParameters.{label} must map strings to strings (at most 512 characters)."
    for key, value in headers.items():
        if not HEADER_KEY.match(key):
            return f"HttpParameters.HeaderParameters key {key!r} is not a valid header name."
        if not is_path(value) and not HEADER_VALUE.match(value):
            return f"HttpParameters.HeaderParameters[{key}] is not a valid header value."
    dynamic_values = [*values, *headers.values(), *queries, *queries.values()]
    for value in dynamic_values:
        if is_path(value):
            problem = path_problem(value)
            if problem is not None:
                return f"HttpParameters value {value!r} is not a valid JSON path: {problem}."
    return None


class ApiDestinationTarget:
    kind = "api-destination"

    def accepts(self, arn: str) -> bool:
        return arn.startswith("arn:aws:events:") and ":api-destination/" in arn

    def validate(self, session: Session, spec: dict[str, Any]) -> str | None:
        parsed = parse_arn(spec["Arn"])
        if parsed is None:
            return f"Target ARN {spec['Arn']} is not a valid API destination ARN."
        name, uuid = parsed
        row = session.get(ApiDestination, name)
        if row is None or (uuid is not None and uuid != row.uuid):
            return f"API destination {name} does not exist."
        if spec.get("HttpParameters") is not None:
            return http_parameters_problem(spec["HttpParameters"])
        return None

    def deliver(self, context: DeliveryContext, payload: str) -> int | None:
        parsed = parse_arn(context.spec["Arn"])
        if parsed is None:
            raise TargetFailure(
                f"not an API destination ARN: {context.spec['Arn']}",
                retryable=False,
                code="BadArn",
            )
        key = (self.kind, parsed[0])
        if key in context.memo:  # another delivery of this batch loaded it
            destination = context.memo[key]
        else:
            with context.database.session() as session:
                destination = load_destination(session, parsed[0], context.settings)
            context.memo[key] = destination
        if destination is None:
            raise TargetFailure(
                f"API destination {parsed[0]} does not exist", retryable=False, code="NotFound"
            )
        if destination.state == "INACTIVE" or destination.connection_state in (
            "DEAUTHORIZED",
            "MISSING",
        ):
            raise TargetFailure(
                f"API destination {destination.name} is {destination.state}, its connection "
                f"{destination.connection_state}",
                retryable=False,
                code="NotAuthorized",
            )
        wait = bucket_for(destination.name, destination.rate_per_second).take()
        if wait > 0:
            raise TargetFailure(
                f"invocation rate limit of {destination.rate_per_second}/s reached",
                retryable=True,
                code="ThrottledByRateLimit",
                retry_after=max(wait, THROTTLE_FLOOR_SECONDS),
            )
        call = build_call(destination, context.spec, context.event, payload)
        try:
            response = request(
                policy_for(context.settings),
                call.method,
                call.url,
                headers=call.headers,
                params=call.params,
                content=call.body,
                timeout=TIMEOUT_SECONDS,
                max_redirects=0,
            )
        except EgressRefused as exc:
            raise TargetFailure(str(exc), retryable=False, code="EgressRefused") from None
        except EgressUnresolved as exc:
            raise TargetFailure(str(exc), retryable=True, code="ConnectionError") from None
        except EgressTimeout as exc:
            raise TargetFailure(str(exc), retryable=True, code="Timeout") from None
        except EgressTooLarge as exc:  # the status was fine; the answer is just too long
            raise TargetFailure(str(exc), retryable=False, code="ResponseTooLarge") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise TargetFailure(
                f"endpoint {call.url} is not usable: {exc}", retryable=False, code="BadEndpoint"
            ) from exc
        except httpx.TransportError as exc:
            raise TargetFailure(
                f"{call.method} {call.url}: {type(exc).__name__}: {exc}",
                retryable=True,
                code="ConnectionError",
            ) from exc
        return judge_response(response)
