"""Lambda, as state machines written for AWS call it: ``arn:aws:states:::lambda:invoke`` (the
optimised integration) and a bare function ARN (``arn:aws:lambda:<region>:<account>:function:
<name>``). The function is the registered handler of that name -- smokehouse's Lambda functions
-- so the seed's definitions run unchanged.

``lambda:invoke`` takes ``FunctionName`` (a name, ``name:alias``, a partial or a full ARN) and
``Payload``, and answers as Step Functions shows Lambda's answer: ``{"ExecutedVersion",
"Payload", "StatusCode", "SdkHttpMetadata", "SdkResponseMetadata"}``; ``InvocationType: Event``
runs the function and answers 202 with an empty payload, ``DryRun`` only checks it exists (204).
A bare ARN's result is the function's result itself. A function that raises fails the task with
its exception's class name and ``{"errorMessage", "errorType"}`` as the cause (as Lambda's
``errorType``); an unknown function is ``Lambda.ResourceNotFoundException``.
"""

from __future__ import annotations

import re
from typing import Any, Final

from app.handlers import UnknownHandler, handlers
from app.workflows.asl import TaskError
from app.workflows.resources.base import TaskCall
from app.workflows.resources.handler import run_handler

INVOKE: Final = "arn:aws:states:::lambda:invoke"
FUNCTION_ARN: Final = re.compile(r"^arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:([^:]+)(:.+)?$")
INVOCATION_TYPES: Final = ("RequestResponse", "Event", "DryRun")


def function_name(reference: str) -> str:
    """The function a ``FunctionName`` names: ``name``, ``name:alias``, ``<account>:function:
    name[:alias]`` or a full ARN (the alias or version is ignored: one version exists here)."""
    found = FUNCTION_ARN.match(reference)
    if found:
        return found.group(1)
    if ":function:" in reference:
        return reference.split(":function:", 1)[1].split(":", 1)[0]
    return reference.split(":", 1)[0]


class LambdaResource:
    kind = "lambda"
    transactional = False

    def accepts(self, base: str) -> bool:
        return base == INVOKE or FUNCTION_ARN.match(base) is not None

    def problem(self, base: str) -> str | None:
        return None  # functions may be registered by worker processes only: checked at run time

    def run(self, call: TaskCall) -> Any:
        if call.base != INVOKE:  # a bare function ARN: the parameters are the event
            name = function_name(call.base)
            self._known(name, call)
            return run_handler(name, call.parameters, call)
        params = call.parameters if isinstance(call.parameters, dict) else {}
        reference = params.get("FunctionName")
        if not isinstance(reference, str) or not reference:
            raise TaskError(
                "States.Runtime", "lambda:invoke needs the parameter FunctionName (a string)"
            )
        invocation = params.get("InvocationType", "RequestResponse")
        if invocation not in INVOCATION_TYPES:
            raise TaskError(
                "Lambda.InvalidParameterValueException",
                f"InvocationType must be one of {', '.join(INVOCATION_TYPES)}",
            )
        name = function_name(reference)
        self._known(name, call)
        if invocation == "DryRun":
            return self._answer(call, 204, "")
        result = run_handler(name, params.get("Payload", {}), call)
        return (
            self._answer(call, 202, "")
            if invocation == "Event"
            else self._answer(call, 200, result)
        )

    @staticmethod
    def _known(name: str, call: TaskCall) -> None:
        """Lambda's error for a function that does not exist (a handler not registered)."""
        try:
            handlers.get(name)
        except UnknownHandler:
            raise TaskError(
                "Lambda.ResourceNotFoundException",
                f"Function not found: arn:aws:lambda:{call.settings.region}:"
                f"{call.settings.account_id}:function:{name}",
            ) from None

    @staticmethod
    def _answer(call: TaskCall, status: int, payload: Any) -> dict[str, Any]:
        return {
            "ExecutedVersion": "$LATEST",
            "Payload": payload,
            "SdkHttpMetadata": {"HttpStatusCode": status},
            "SdkResponseMetadata": {"RequestId": call.invocation_id},
            "StatusCode": status,
        }
