"""The bus's errors, with EventBridge's error codes (they reach boto3 unchanged)."""

from __future__ import annotations

from app.aws.errors import AwsError


class BusError(AwsError):
    code_name = "InternalException"

    def __init__(self, message: str) -> None:
        super().__init__(self.code_name, message)


class ResourceNotFound(BusError):
    code_name = "ResourceNotFoundException"


class ResourceAlreadyExists(BusError):
    code_name = "ResourceAlreadyExistsException"


class Validation(BusError):
    code_name = "ValidationException"


class LimitExceeded(BusError):
    code_name = "LimitExceededException"


class InvalidEventPatternError(BusError):
    code_name = "InvalidEventPatternException"


class IllegalStatus(BusError):
    code_name = "IllegalStatusException"


class ConcurrentModification(BusError):
    code_name = "ConcurrentModificationException"
