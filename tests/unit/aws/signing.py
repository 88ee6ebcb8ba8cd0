"""Requests signed by botocore's own SigV4 signer, the reference our verifier must agree with."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.credentials import Credentials

from app.auth import AccessKey, KeyRing
from app.aws.sigv4 import AMZ_DATE_FORMAT, SignedRequest

ADMIN = AccessKey("AKIDADMIN0000000", "admin-secret/with+chars", "admin")
VIEWER = AccessKey("AKIDVIEWER000000", "viewer-secret", "viewer")
KEYS = KeyRing((ADMIN, VIEWER))


def sign(
    *,
    url: str = "http://127.0.0.1:8000/",
    body: bytes = b"{}",
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    method: str = "POST",
    service: str = "events",
    region: str = "us-east-1",
    key: AccessKey = ADMIN,
    secret: str | None = None,
    token: str | None = None,
) -> AWSPreparedRequest:
    """Sign like boto3 does (``SigV4Auth.add_auth``) and prepare the request for the wire."""
    request = AWSRequest(
        method=method,
        url=url,
        data=body,
        headers=dict(headers or {"Content-Type": "application/x-amz-json-1.1"}),
        params=dict(params or {}),
    )
    credentials = Credentials(key.id, secret if secret is not None else key.secret, token)
    SigV4Auth(credentials, service, region).add_auth(request)
    return request.prepare()


def host_of(url: str) -> str:
    """The Host header an HTTP client sends for ``url`` (no port when it is the default)."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname or ""
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def wire(prepared: AWSPreparedRequest, **changes: object) -> SignedRequest:
    """What the server sees for ``prepared``: the raw path/query off the URL, plus ``Host``."""
    parts = urlsplit(prepared.url)
    headers = [(name, value) for name, value in prepared.headers.items()]
    if not any(name.lower() == "host" for name, _ in headers):
        headers.append(("Host", host_of(prepared.url)))
    body = prepared.body if isinstance(prepared.body, bytes) else (prepared.body or b"")
    fields: dict[str, object] = {
        "method": prepared.method,
        "raw_path": parts.path.encode(),
        "query_string": parts.query,
        "headers": headers,
        "body": body,
    }
    fields.update(changes)
    return SignedRequest(**fields)  # type: ignore[arg-type]


def signed_at(prepared: AWSPreparedRequest) -> datetime:
    """When botocore signed ``prepared`` (its X-Amz-Date, or the Date header it wrote)."""
    stamp = prepared.headers.get("X-Amz-Date")
    if stamp is None:  # botocore writes "... -0000", which parses to a naive datetime
        return parsedate_to_datetime(prepared.headers["Date"]).replace(tzinfo=UTC)
    return datetime.strptime(stamp, AMZ_DATE_FORMAT).replace(tzinfo=UTC)


def replace_header(request: SignedRequest, name: str, value: str | None) -> SignedRequest:
    """A copy of ``request`` with header ``name`` set to ``value`` (or removed when ``None``)."""
    headers = [(k, v) for k, v in request.headers if k.lower() != name.lower()]
    if value is not None:
        headers.append((name, value))
    return SignedRequest(
        request.method, request.raw_path, request.query_string, headers, request.body
    )


def authorization(request: SignedRequest) -> str:
    return next(v for k, v in request.headers if k.lower() == "authorization")
