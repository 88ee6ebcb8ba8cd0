"""AWS Signature Version 4 verification, as a pure function.

Why our own: the endpoint must accept exactly what boto3, the AWS CLI and the other SDKs send, and
refuse everything else with the error AWS itself would give, so a client library's retry and error
handling behave as they do against AWS. Nothing here does I/O or reads the clock: the caller passes
the request bytes, a key lookup and ``now``.

The checks run in the order AWS's JSON services run them, with their codes and wording (observed on
real EventBridge/DynamoDB responses; the order and the texts are the ones dynalite and Scylla's
Alternator tests record against AWS, and botocore's ``SigV4Auth`` is the reference signer):

1. no ``Authorization`` (or not ``AWS4-...``)  -> ``MissingAuthenticationTokenException`` 400
2. header not ``key=value`` pairs, missing ``Credential``/``Signature``/``SignedHeaders`` or no
   ``X-Amz-Date``/``Date`` header            -> ``IncompleteSignatureException`` 400
3. date not ISO-8601 basic format            -> ``IncompleteSignatureException`` 400
4. more than 15 minutes off ``now``          -> ``InvalidSignatureException`` 400
   "Signature expired: ... is now earlier than ... (... - 15 min.)" or "Signature not yet current"
5. ``host`` not signed                       -> ``InvalidSignatureException`` 400
6. algorithm other than AWS4-HMAC-SHA256     -> ``IncompleteSignatureException`` 400
7. credential not 5 ``/``-separated parts    -> ``IncompleteSignatureException`` 400
8. scope: bad region, wrong service, wrong terminator, date not the request's
                                             -> ``InvalidSignatureException`` 400
9. unknown access key id                     -> ``UnrecognizedClientException`` 400
10. signature differs (constant-time compare) -> ``InvalidSignatureException`` 400, with the
    canonical request and string to sign we expected (AWS does the same; neither holds a secret)
11. ``X-Amz-Security-Token`` present (we issue no session tokens) -> ``UnrecognizedClientException``
12. ``X-Amz-Content-SHA256`` present but not the body's hash -> ``XAmzContentSHA256Mismatch`` 400:
    the signature covers the header's value, not the body, so without this check a captured request
    could be replayed with another body (this also refuses ``UNSIGNED-PAYLOAD``).

Only the ``Authorization`` header form is accepted; presigned query-string auth is not (nothing
sends a presigned POST to a JSON API).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import quote, unquote_plus

from app.auth import AccessKey
from app.aws.errors import AwsError

ALGORITHM: Final = "AWS4-HMAC-SHA256"
SERVICES: Final = ("events", "states")
MAX_SKEW: Final = timedelta(minutes=15)
AMZ_DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"

SIGNATURE_MISMATCH: Final = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
INVALID_TOKEN: Final = "The security token included in the request is invalid."

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_REGION = re.compile(r"[a-z0-9][a-z0-9-]*")
_AUTH_SEPARATORS = re.compile(r"[\s,]+")

KeyLookup = Callable[[str], AccessKey | None]


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What the verifier needs of an HTTP request, exactly as it came off the wire.

    ``raw_path`` is the still percent-encoded path (ASGI ``raw_path``), ``query_string`` the raw
    query without ``?``; headers keep repeats and order.
    """

    method: str
    raw_path: str | bytes
    query_string: str
    headers: Sequence[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Verified:
    """A request whose signature checked out: who signed it, and the scope they signed for."""

    key: AccessKey
    region: str
    service: str
    signed_at: datetime


def _incomplete(message: str) -> AwsError:
    return AwsError("IncompleteSignatureException", message)


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidSignatureException", message)


def _stamp(moment: datetime) -> str:
    return moment.strftime(AMZ_DATE_FORMAT)


def verify(
    request: SignedRequest,
    lookup: KeyLookup,
    now: datetime,
    *,
    services: Collection[str] = SERVICES,
) -> Verified:
    """Check a SigV4-signed request; return the signer or raise the :class:`AwsError` AWS would.

    ``services`` are the signing names accepted in the credential scope (the router passes the one
    that matches the ``X-Amz-Target`` prefix). ``now`` must be timezone-aware.
    """
    headers = _header_map(request.headers)
    key, stamp, signed_at, signed_headers, params, (scope_date, region, service) = _check_headers(
        headers, lookup, now, services
    )

    payload_hash = _first(headers, "x-amz-content-sha256")
    body_hash = hashlib.sha256(request.body).hexdigest()
    canonical = canonical_request(request, signed_headers, payload_hash or body_hash)
    scope = f"{scope_date}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    expected = hmac.new(
        signing_key(key.secret, scope_date, region, service), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    provided = params["Signature"].encode("utf-8", "backslashreplace")
    if not hmac.compare_digest(expected.encode(), provided):
        raise _invalid(
            f"{SIGNATURE_MISMATCH}\n\n"
            f"The Canonical String for this request should have been\n'{canonical}'\n\n"
            f"The String-to-Sign should have been\n'{to_sign}'\n"
        )
    if _first(headers, "x-amz-security-token") is not None:
        raise AwsError("UnrecognizedClientException", INVALID_TOKEN.rstrip("."))
    if payload_hash is not None and payload_hash != body_hash:
        raise AwsError(
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    return Verified(key=key, region=region, service=service, signed_at=signed_at)


def authenticate_headers(
    headers: Iterable[tuple[str, str]],
    lookup: KeyLookup,
    now: datetime,
    *,
    services: Collection[str] = SERVICES,
) -> AccessKey:
    """Steps 1-9 (everything that needs no body): the ``Authorization`` header parses, the date
    is within 15 minutes of ``now``, the scope fits and the access key id exists. The front door
    runs this before it reads a byte of the body; :func:`verify` then checks the signature over
    the (capped) body."""
    return _check_headers(_header_map(headers), lookup, now, services)[0]


def _check_headers(
    headers: dict[str, list[str]], lookup: KeyLookup, now: datetime, services: Collection[str]
) -> tuple[AccessKey, str, datetime, list[str], dict[str, str], tuple[str, str, str]]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    authorization = _first(headers, "authorization")
    if authorization is None or not authorization.strip().startswith("AWS4-"):
        raise AwsError(
            "MissingAuthenticationTokenException", "Request is missing Authentication Token"
        )
    authorization = authorization.strip()
    algorithm, params = _parse_authorization(authorization, headers)

    stamp, signed_at = _request_time(headers)
    _check_skew(stamp, signed_at, now.astimezone(UTC))

    signed_headers = sorted({name.strip().lower() for name in params["SignedHeaders"].split(";")})
    if "host" not in signed_headers and ":authority" not in signed_headers:
        raise _invalid("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    if algorithm != ALGORITHM:
        raise _incomplete(
            f"Unsupported AWS 'algorithm': '{algorithm}' (only {ALGORITHM} for now). "
        )

    key_id, scope_date, region, service = _check_scope(params["Credential"], stamp, services)
    key = lookup(key_id)
    if key is None:
        raise AwsError("UnrecognizedClientException", INVALID_TOKEN)
    return key, stamp, signed_at, signed_headers, params, (scope_date, region, service)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The derived key: HMAC chain over date, region, service and ``aws4_request``."""
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def canonical_request(
    request: SignedRequest, signed_headers: Sequence[str], payload_hash: str
) -> str:
    """The SigV4 canonical request for ``request`` over the given (lowercase, sorted) headers."""
    headers = _header_map(request.headers)
    lines = "".join(
        f"{name}:{','.join(' '.join(value.split()) for value in headers.get(name, []))}\n"
        for name in signed_headers
    )
    return "\n".join(
        [
            request.method.upper(),
            canonical_uri(request.raw_path),
            canonical_query(request.query_string),
            lines,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def canonical_uri(raw_path: str | bytes) -> str:
    """Normalise the path (dot segments, repeated slashes) and URI-encode it once more.

    Every AWS service but S3 signs the path encoded twice: the client encodes it for the wire, then
    again for the canonical request, so the server encodes the wire form once.
    """
    text = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    path = _remove_dot_segments(text) or "/"
    encoded = path.encode("latin-1") if isinstance(raw_path, bytes) else path.encode()
    return quote(encoded, safe="/~")


def canonical_query(query_string: str) -> str:
    """Decode each name and value, re-encode them RFC 3986 style, sort by name then value.

    ``+`` decodes to a space because that is how botocore puts query parameters on the wire
    (``urlencode``) while it signs them ``%20``-encoded.
    """
    pairs = []
    for part in query_string.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append(
            (quote(unquote_plus(name), safe="-_.~"), quote(unquote_plus(value), safe="-_.~"))
        )
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal plus collapsing of empty segments, as AWS (and botocore) do."""
    if not path:
        return ""
    output: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if output:
                output.pop()
        else:
            output.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and output else ""
    return first + "/".join(output) + last


def _header_map(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in headers:
        result.setdefault(name.lower(), []).append(value)
    return result


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _parse_authorization(
    authorization: str, headers: dict[str, list[str]]
) -> tuple[str, dict[str, str]]:
    tokens = [token for token in _AUTH_SEPARATORS.split(authorization) if token]
    algorithm, params = tokens[0], {}
    for token in tokens[1:]:
        name, equals, value = token.partition("=")
        if not equals:
            raise _incomplete(
                f"'{token}' not a valid key=value pair (missing equal-sign) in Authorization "
                f"header: '{authorization}'."
            )
        params[name] = value
    problems = "".join(
        f"Authorization header requires '{name}' parameter. "
        for name in ("Credential", "Signature", "SignedHeaders")
        if not params.get(name) and not (name == "SignedHeaders" and name in params)
    )
    if "x-amz-date" not in headers and "date" not in headers:
        problems += (
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        )
    if problems:
        raise _incomplete(f"{problems}Authorization={authorization}")
    return algorithm, params


def _request_time(headers: dict[str, list[str]]) -> tuple[str, datetime]:
    """The signing timestamp: ``X-Amz-Date`` (ISO-8601 basic), else the HTTP ``Date`` header."""
    amz_date = _first(headers, "x-amz-date")
    if amz_date is not None:
        amz_date = amz_date.strip()
        try:
            if not _AMZ_DATE.fullmatch(amz_date):
                raise ValueError(amz_date)
            moment = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise _incomplete(
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. "
                "See http://en.wikipedia.org/wiki/ISO_8601"
            ) from None
        return amz_date, moment
    http_date = _first(headers, "date") or ""
    try:
        moment = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        raise _incomplete(
            f"Date must be in ISO-8601 'basic format'. Got '{http_date}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return _stamp(moment), moment


def _check_skew(stamp: str, signed_at: datetime, now: datetime) -> None:
    earliest, latest = now - MAX_SKEW, now + MAX_SKEW
    if signed_at < earliest:
        raise _invalid(
            f"Signature expired: {stamp} is now earlier than {_stamp(earliest)} "
            f"({_stamp(now)} - 15 min.)"
        )
    if signed_at > latest:
        raise _invalid(
            f"Signature not yet current: {stamp} is still later than {_stamp(latest)} "
            f"({_stamp(now)} + 15 min.)"
        )


def _check_scope(
    credential: str, stamp: str, services: Collection[str]
) -> tuple[str, str, str, str]:
    """Split ``keyid/date/region/service/aws4_request`` and check every part but the key id."""
    trimmed = credential.rstrip("/")
    parts = trimmed.split("/")
    if len(parts) != 5:
        raise _incomplete(
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{trimmed}'"
        )
    key_id, date, region, service, terminator = parts
    problems = ""
    if not _REGION.fullmatch(region):
        problems += f"Credential should be scoped to a valid region, not '{region}'. "
    if service not in services:
        expected = "' or '".join(sorted(services))
        problems += f"Credential should be scoped to correct service: '{expected}'. "
    if terminator != "aws4_request":
        problems += (
            "Credential should be scoped with a valid terminator: 'aws4_request', "
            f"not '{terminator}'. "
        )
    if date != stamp[:8]:
        problems += (
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
            f"HTTP: '{date}' != '{stamp[:8]}', from '{stamp}'. "
        )
    if problems:
        raise _invalid(problems)
    return key_id, date, region, service
