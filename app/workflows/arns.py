"""Step Functions ARNs and names, checked the way AWS checks them.

``arn:aws:states:<region>:<account>:stateMachine:<name>``,
``arn:aws:states:<region>:<account>:execution:<machine>:<name>`` (Standard) and
``arn:aws:states:<region>:<account>:express:<machine>:<name>:<id>`` (Express, never stored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.workflows import errors

MAX_NAME = 80
_BAD_NAME = re.compile(r'[\s<>{}\[\]?*"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]')
_ARN = re.compile(r"^arn:aws[a-z-]*:states:([a-z0-9-]*):(\d{12}):([A-Za-z]+):(.+)$")


@dataclass(frozen=True, slots=True)
class Scope:
    """Where ARNs are minted: smokehouse's configured region and account."""

    region: str
    account_id: str

    def _arn(self, resource: str) -> str:
        return f"arn:aws:states:{self.region}:{self.account_id}:{resource}"

    def state_machine(self, name: str) -> str:
        return self._arn(f"stateMachine:{name}")

    def execution(self, machine: str, name: str) -> str:
        return self._arn(f"execution:{machine}:{name}")

    def express_execution(self, machine: str, name: str, run_id: str) -> str:
        return self._arn(f"express:{machine}:{name}:{run_id}")


def check_name(name: object) -> str:
    """A state machine or execution name: 1-80 characters, none of AWS's forbidden ones."""
    if not isinstance(name, str) or not name or _BAD_NAME.search(name):
        raise errors.invalid_name(str(name))
    if len(name) > MAX_NAME:
        raise errors.validation(
            f"1 validation error detected: Value '{name}' at 'name' failed to satisfy "
            "constraint: Member must have length less than or equal to 80"
        )
    return name


def _parse(arn: object, kind: str) -> list[str]:
    if not isinstance(arn, str) or not arn:
        raise errors.invalid_arn(f"Invalid ARN prefix: {arn}")
    match = _ARN.match(arn)
    if match is None:
        raise errors.invalid_arn(f"Invalid ARN prefix: {arn}")
    if match.group(3) != kind and not (kind == "execution" and match.group(3) == "express"):
        raise errors.invalid_arn(f"Resource type not valid in this context: {match.group(3)}")
    return [match.group(3), *match.group(4).split(":")]


def state_machine_name(arn: object) -> str:
    parts = _parse(arn, "stateMachine")
    if len(parts) != 2:
        raise errors.invalid_arn(f"Invalid ARN prefix: {arn}")
    return parts[1]


@dataclass(frozen=True, slots=True)
class ExecutionRef:
    kind: str  # execution | express
    machine: str
    name: str


def execution_ref(arn: object) -> ExecutionRef:
    parts = _parse(arn, "execution")
    expected = 3 if parts[0] == "execution" else 4
    if len(parts) != expected:
        raise errors.invalid_arn(f"Invalid ARN prefix: {arn}")
    return ExecutionRef(parts[0], parts[1], parts[2])
