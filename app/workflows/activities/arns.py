"""Activity ARNs: ``arn:aws:states:<region>:<account>:activity:<name>``, checked as AWS does."""

from __future__ import annotations

import re
from typing import Final

from app.workflows import errors
from app.workflows.asl.interpreter import is_activity

_ARN: Final = re.compile(r"^arn:aws[a-z-]*:states:([a-z0-9-]*):(\d{12}):([A-Za-z]+):(.+)$")


def activity_name(arn: object) -> str:
    """The name in an activity ARN; ``InvalidArn`` for anything else (a state machine's ARN
    says its resource type is not valid here, as AWS words it)."""
    if not isinstance(arn, str) or not arn:
        raise errors.invalid_arn(f"Invalid ARN prefix: {arn}")
    match = _ARN.match(arn)
    if match is None:
        raise errors.invalid_arn(f"Invalid ARN prefix: {arn}")
    if match.group(3) != "activity":
        raise errors.invalid_arn(f"Resource type not valid in this context: {match.group(3)}")
    name = match.group(4)
    if ":" in name:
        raise errors.invalid_arn(f"Invalid ARN prefix: {arn}")
    return name


__all__ = ["activity_arn", "activity_name", "is_activity"]


def activity_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:states:{region}:{account_id}:activity:{name}"
