"""The pure SigV4 verifier against requests signed by botocore's ``SigV4Auth``."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest

from app.aws.errors import AwsError
from app.aws.sigv4 import (
    INVALID_TOKEN,
    SIGNATURE_MISMATCH,
    SignedRequest,
    Verified,
    canonical_query,
    canonical_uri,
    verify,
)
from tests.unit.aws.signing import (
    ADMIN,
    KEYS,
    VIEWER,
    authorization,
    replace_header,
    sign,
    signed_at,
    wire,
)


def check(request: SignedRequest, now: datetime, **kwargs: object) -> Verified:
    return verify(request, KEYS.by_id, now, **kwargs)  # type: ignore[arg-type]


def rejected(request: SignedRequest, now: datetime, **kwargs: object) -> AwsError:
    with pytest.raises(AwsError) as caught:
        check(request, now, **kwargs)
    return caught.value


def test_accepts_botocore_signature_and_returns_key_and_scope() -> None:
    prepared = sign(service="states", region="eu-west-3", key=VIEWER)
    verified = check(wire(prepared), signed_at(prepared))
    assert verified.key == VIEWER
    assert (verified.region, verified.service) == ("eu-west-3", "states")
    assert verified.signed_at == signed_at(prepared)


@pytest.mark.parametrize("region", ["us-east-1", "ap-southeast-2", "local", "us-gov-west-1"])
def test_any_region_is_accepted(region: str) -> None:
    prepared = sign(region=region)
    assert check(wire(prepared), signed_at(prepared)).region == region


@pytest.mark.parametrize(
    "params",
    [
        {"b": "2", "a": "1"},
        {"space": "a b", "plus": "1+1", "slash": "a/b", "eq": "x=y", "amp": "&"},
        {"unicode": "caf\u00e9 \u2603", "tilde~": "~-_.", "empty": ""},
        {"Upper": "1", "lower": "2", "_": "3"},
    ],
)
def test_query_strings(params: dict[str, str]) -> None:
    prepared = sign(params=params)
    assert check(wire(prepared), signed_at(prepared)).key == ADMIN


def test_raw_query_with_repeated_keys_sorted_by_value() -> None:
    prepared = sign(url="http://127.0.0.1:8000/?b=2&a=2&a=1&c")
    assert check(wire(prepared), signed_at(prepared)).key == ADMIN


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/caf\u00e9/\u2603",
        "/with space/and+plus",
        "/reserved/!$'()*,;:@",
        "/a/./b/../c//d/",
        "/~user/%/",
    ],
)
def test_paths_are_double_encoded_and_normalised_like_botocore(path: str) -> None:
    # botocore expects an already-encoded path (its serializers encode it) and encodes it again
    # for the canonical request; the server sees the once-encoded path.
    prepared = sign(url="http://127.0.0.1:8000" + quote(path, safe="/~!$'()*,;:@+"))
    assert check(wire(prepared), signed_at(prepared)).key == ADMIN


def test_extra_headers_with_odd_spacing_and_case() -> None:
    prepared = sign(
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AWSEvents.ListRules",
            "X-Custom-Thing": "  spaced    out   value  ",
            "x-lower": "UPPER value",
        }
    )
    assert check(wire(prepared), signed_at(prepared)).key == ADMIN


def test_unsigned_headers_added_later_do_not_matter() -> None:
    prepared = sign()
    request = replace_header(wire(prepared), "X-Forwarded-For", "10.0.0.1")
    request = replace_header(request, "User-Agent", "something else")
    assert check(request, signed_at(prepared)).key == ADMIN


def test_comma_separated_authorization_without_spaces() -> None:
    prepared = sign()
    request = wire(prepared)
    compact = authorization(request).replace(", ", ",")
    assert check(replace_header(request, "Authorization", compact), signed_at(prepared))


def test_date_header_instead_of_x_amz_date() -> None:
    prepared = sign(
        headers={"Content-Type": "application/x-amz-json-1.1", "Date": "Mon, 01 Jan 2001 00:00:00"}
    )
    assert "X-Amz-Date" not in prepared.headers
    assert check(wire(prepared), signed_at(prepared)).key == ADMIN


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("body", b'{"Name": "other"}'),
        ("method", "PUT"),
        ("raw_path", b"/other"),
        ("query_string", "a=1"),
    ],
)
def test_tampering_breaks_the_signature(field: str, value: object) -> None:
    prepared = sign(body=b'{"Name": "rule"}')
    error = rejected(wire(prepared, **{field: value}), signed_at(prepared))
    assert (error.code, error.status) == ("InvalidSignatureException", 400)
    assert error.message.startswith(SIGNATURE_MISMATCH + "\n\nThe Canonical String")
    assert "The String-to-Sign should have been" in error.message


def test_tampering_a_signed_header_breaks_the_signature() -> None:
    prepared = sign(headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "A.B"})
    request = replace_header(wire(prepared), "X-Amz-Target", "A.C")
    assert rejected(request, signed_at(prepared)).code == "InvalidSignatureException"


def test_wrong_secret() -> None:
    prepared = sign(secret="not-the-secret")
    error = rejected(wire(prepared), signed_at(prepared))
    assert error.code == "InvalidSignatureException"
    assert error.message.split("\n")[0] == SIGNATURE_MISMATCH


def test_unknown_key() -> None:
    prepared = sign(key=ADMIN.__class__("AKIDNOBODY", "x", "admin"))
    error = rejected(wire(prepared), signed_at(prepared))
    assert (error.code, error.message, error.status) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
        400,
    )


def test_session_token_is_refused() -> None:
    prepared = sign(token="FQoGZXIvYXdzE")
    error = rejected(wire(prepared), signed_at(prepared))
    assert error.code == "UnrecognizedClientException"
    assert error.message == INVALID_TOKEN.rstrip(".")


def test_content_sha256_header_is_honoured() -> None:
    body = b'{"Name": "r"}'
    digest = hashlib.sha256(body).hexdigest()
    prepared = sign(body=body, headers={"X-Amz-Content-SHA256": digest})
    assert check(wire(prepared), signed_at(prepared)).key == ADMIN


def test_content_sha256_header_must_match_the_body() -> None:
    body = b'{"Name": "r"}'
    digest = hashlib.sha256(body).hexdigest()
    prepared = sign(body=body, headers={"X-Amz-Content-SHA256": digest})
    # The signature covers the header, so it still verifies: only the hash check catches this.
    error = rejected(wire(prepared, body=b'{"Name": "evil"}'), signed_at(prepared))
    assert (error.code, error.status) == ("XAmzContentSHA256Mismatch", 400)


def test_unsigned_payload_is_refused() -> None:
    prepared = sign(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert rejected(wire(prepared), signed_at(prepared)).code == "XAmzContentSHA256Mismatch"


@pytest.mark.parametrize("skew", [timedelta(0), timedelta(minutes=15), -timedelta(minutes=15)])
def test_clock_skew_within_15_minutes(skew: timedelta) -> None:
    prepared = sign()
    assert check(wire(prepared), signed_at(prepared) + skew).key == ADMIN


def test_signature_expired() -> None:
    prepared = sign()
    stamp = prepared.headers["X-Amz-Date"]
    now = signed_at(prepared) + timedelta(minutes=15, seconds=1)
    error = rejected(wire(prepared), now)
    fmt = "%Y%m%dT%H%M%SZ"
    assert error.code == "InvalidSignatureException"
    assert error.message == (
        f"Signature expired: {stamp} is now earlier than "
        f"{(now - timedelta(minutes=15)).strftime(fmt)} ({now.strftime(fmt)} - 15 min.)"
    )


def test_signature_not_yet_current() -> None:
    prepared = sign()
    stamp = prepared.headers["X-Amz-Date"]
    now = signed_at(prepared) - timedelta(minutes=16)
    error = rejected(wire(prepared), now)
    fmt = "%Y%m%dT%H%M%SZ"
    assert error.code == "InvalidSignatureException"
    assert error.message == (
        f"Signature not yet current: {stamp} is still later than "
        f"{(now + timedelta(minutes=15)).strftime(fmt)} ({now.strftime(fmt)} + 15 min.)"
    )


def test_expiry_is_checked_before_the_key() -> None:
    prepared = sign(key=ADMIN.__class__("AKIDNOBODY", "x", "admin"))
    error = rejected(wire(prepared), signed_at(prepared) + timedelta(hours=1))
    assert error.message.startswith("Signature expired:")


@pytest.mark.parametrize("value", [None, "", "Bearer abc", "AWS AKID:signature"])
def test_missing_authentication_token(value: str | None) -> None:
    prepared = sign()
    request = replace_header(wire(prepared), "Authorization", value)
    error = rejected(request, signed_at(prepared))
    assert (error.code, error.message, error.status) == (
        "MissingAuthenticationTokenException",
        "Request is missing Authentication Token",
        400,
    )


def test_incomplete_authorization_lists_every_missing_part() -> None:
    prepared = sign()
    header = "AWS4-HMAC-SHA256 Credential=AKIDADMIN0000000/20240101/us-east-1/events/aws4_request"
    request = replace_header(
        replace_header(wire(prepared), "Authorization", header), "X-Amz-Date", None
    )
    error = rejected(request, signed_at(prepared))
    assert (error.code, error.status) == ("IncompleteSignatureException", 400)
    assert error.message == (
        "Authorization header requires 'Signature' parameter. "
        "Authorization header requires 'SignedHeaders' parameter. "
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        f"Authorization={header}"
    )


def test_authorization_part_without_equal_sign() -> None:
    prepared = sign()
    header = authorization(wire(prepared)).replace("SignedHeaders=", "SignedHeaders")
    error = rejected(replace_header(wire(prepared), "Authorization", header), signed_at(prepared))
    assert error.code == "IncompleteSignatureException"
    assert (
        "not a valid key=value pair (missing equal-sign) in Authorization header" in error.message
    )


def test_date_not_in_basic_format() -> None:
    prepared = sign()
    request = replace_header(wire(prepared), "X-Amz-Date", "2024-01-01T00:00:00Z")
    error = rejected(request, signed_at(prepared))
    assert error.code == "IncompleteSignatureException"
    assert error.message.startswith("Date must be in ISO-8601 'basic format'. Got '2024-01-01T")


def test_host_must_be_signed() -> None:
    prepared = sign()
    header = authorization(wire(prepared))
    names = header.split("SignedHeaders=")[1].split(",")[0]
    without_host = ";".join(n for n in names.split(";") if n != "host")
    request = replace_header(wire(prepared), "Authorization", header.replace(names, without_host))
    error = rejected(request, signed_at(prepared))
    assert error.code == "InvalidSignatureException"
    assert (
        error.message == "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
    )


def test_unsupported_algorithm() -> None:
    prepared = sign()
    header = authorization(wire(prepared)).replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512")
    error = rejected(replace_header(wire(prepared), "Authorization", header), signed_at(prepared))
    assert error.code == "IncompleteSignatureException"
    assert error.message.startswith("Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512'")


def test_credential_needs_five_parts() -> None:
    prepared = sign()
    header = authorization(wire(prepared)).replace("/aws4_request", "")
    error = rejected(replace_header(wire(prepared), "Authorization", header), signed_at(prepared))
    assert error.code == "IncompleteSignatureException"
    assert error.message.startswith("Credential must have exactly 5 slash-delimited elements")


def test_wrong_service_in_scope() -> None:
    prepared = sign(service="sqs")
    error = rejected(wire(prepared), signed_at(prepared), services=("events",))
    assert (error.code, error.message) == (
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'events'. ",
    )


def test_service_must_be_the_one_asked_for() -> None:
    prepared = sign(service="states")
    assert rejected(wire(prepared), signed_at(prepared), services=("events",)).code == (
        "InvalidSignatureException"
    )
    assert check(wire(prepared), signed_at(prepared), services=("states",)).service == "states"


def test_scope_problems_are_reported_together() -> None:
    prepared = sign()
    stamp = prepared.headers["X-Amz-Date"]
    header = authorization(wire(prepared))
    scope = f"{stamp[:8]}/us-east-1/events/aws4_request"
    header = header.replace(scope, "19990101/US_EAST/events/aws5_request")
    error = rejected(replace_header(wire(prepared), "Authorization", header), signed_at(prepared))
    assert error.code == "InvalidSignatureException"
    assert error.message == (
        "Credential should be scoped to a valid region, not 'US_EAST'. "
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'. "
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
        f"HTTP: '19990101' != '{stamp[:8]}', from '{stamp}'. "
    )


def test_now_must_be_timezone_aware() -> None:
    prepared = sign()
    with pytest.raises(ValueError, match="timezone-aware"):
        check(wire(prepared), signed_at(prepared).replace(tzinfo=None))


def test_canonical_helpers() -> None:
    assert canonical_uri(b"") == "/"
    assert canonical_uri(b"/a%20b/./c/../d") == "/a%2520b/d"
    assert canonical_uri("/\u00e9") == "/%C3%A9"
    assert canonical_query("b=2&a=%7e&a=1&c&d=x+y") == "a=1&a=~&b=2&c=&d=x%20y"
