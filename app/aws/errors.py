"""AWS-shaped errors for the JSON protocol endpoint.

Everything that goes wrong on ``POST /`` -- bad signature, unknown operation, a rule that does
not exist -- is raised as an :class:`AwsError` and rendered the way AWS's JSON 1.0/1.1 services
render it, so that botocore raises ``ClientError`` with ``Error.Code`` set and the modeled
exception classes (``client.exceptions.ResourceNotFoundException``) match:

    HTTP 400
    x-amzn-RequestId: <uuid>
    x-amzn-ErrorType: ResourceNotFoundException
    {"__type": "ResourceNotFoundException", "message": "Rule r does not exist on EventBus default."}

botocore reads the code from ``__type`` (stripping any ``namespace#`` prefix) and the message from
``message``; the ``x-amzn-ErrorType`` header is what restJson clients and humans with curl look at.
"""

from __future__ import annotations

import json
from typing import Final

JSON_1_0: Final = "application/x-amz-json-1.0"
JSON_1_1: Final = "application/x-amz-json-1.1"


class AwsError(Exception):
    """An error with an AWS error code, a message for the caller and an HTTP status.

    Domain handlers raise these for anything the caller should see (``ResourceNotFoundException``,
    ``ValidationException``, ...); the dispatcher turns them into the JSON error response and never
    leaks anything else.
    """

    def __init__(
        self, code: str, message: str, status: int = 400, *, query_code: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.query_code = query_code

    def body(self) -> bytes:
        """The JSON error document, as AWS JSON protocols send it."""
        return json.dumps({"__type": self.code, "message": self.message}).encode()

    def headers(self, request_id: str) -> dict[str, str]:
        """Headers every AWS error response carries (the request id also goes on successes).

        A service that moved from the Query protocol to JSON (SQS) also names the error's old
        Query code in ``x-amzn-query-error`` (``<code>;Sender``): botocore reports that code as
        ``Error.Code`` and still matches the modeled exception by ``__type``."""
        headers = {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": self.code}
        if self.query_code is not None:
            fault = "Receiver" if self.status >= 500 else "Sender"
            headers["x-amzn-query-error"] = f"{self.query_code};{fault}"
        return headers


# --- Common errors of AWS JSON (Coral) services. -------------------------------------------------
# Codes, statuses and wording as real EventBridge / DynamoDB / Kinesis answer them (the JSON
# services share one framework); the module docstring of ``app.aws.sigv4`` names the sources.


def validation(message: str) -> AwsError:
    """The request was well-formed JSON but breaks a documented constraint."""
    return AwsError("ValidationException", message)


def not_found(message: str, code: str = "ResourceNotFoundException") -> AwsError:
    """A named resource does not exist (Step Functions has its own codes, pass ``code``)."""
    return AwsError(code, message)


def already_exists(message: str, code: str = "ResourceAlreadyExistsException") -> AwsError:
    """Creating a resource whose name is taken."""
    return AwsError(code, message)


def access_denied(message: str) -> AwsError:
    """The caller is authenticated but may not do this (EventBridge answers 400, not 403)."""
    return AwsError("AccessDeniedException", message)


def serialization(message: str = "") -> AwsError:
    """The body is not a JSON object."""
    return AwsError("SerializationException", message)


def unknown_operation(message: str = "", status: int = 400) -> AwsError:
    """``X-Amz-Target`` names nothing we serve (404 when the request is not AWS JSON at all)."""
    return AwsError("UnknownOperationException", message, status)


def too_large(limit: int) -> AwsError:
    """The body exceeds what the endpoint reads."""
    return AwsError(
        "RequestEntityTooLargeException",
        f"Request must be smaller than {limit} bytes.",
        413,
    )


def internal(code: str = "InternalFailure") -> AwsError:
    """A bug on our side; the detail goes to the log, never to the caller."""
    return AwsError(
        code,
        "The request processing has failed because of an unknown error, exception or failure.",
        500,
    )
