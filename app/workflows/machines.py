"""Definitions: validate for create/update, store content-addressed, compile once per process.

Compiling a definition costs far more than running a step, so every process keeps compiled
machines by the sha256 of their text; an execution carries that hash, so it keeps running the
definition it started with whatever ``UpdateStateMachine`` does meanwhile.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import dialect_insert, utcnow
from app.workflows import errors
from app.workflows.asl import (
    CompiledMachine,
    InvalidDefinition,
    compile_machine,
    validation_result,
)
from app.workflows.models import StateMachineDefinition
from app.workflows.resources import check_definition

TYPES = ("STANDARD", "EXPRESS")
CACHE_SIZE = 512

_compiled: OrderedDict[str, CompiledMachine] = OrderedDict()
_lock = threading.Lock()


def definition_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _remember(digest: str, machine: CompiledMachine) -> CompiledMachine:
    with _lock:
        _compiled[digest] = machine
        _compiled.move_to_end(digest)
        while len(_compiled) > CACHE_SIZE:
            _compiled.popitem(last=False)
    return machine


def compiled(session: Session, digest: str) -> CompiledMachine:
    """The compiled machine for a stored definition."""
    machine = _compiled.get(digest)
    if machine is not None:
        return machine
    text = session.scalar(
        select(StateMachineDefinition.definition).where(StateMachineDefinition.hash == digest)
    )
    if text is None:
        raise LookupError(f"definition {digest} is not stored")
    return _remember(digest, compile_machine(text))


def check(definition: Any, machine_type: str, *, aws_sdk_allow: str | None) -> CompiledMachine:
    """Validate a definition for CreateStateMachine/UpdateStateMachine (``InvalidDefinition``),
    aws-sdk actions against the policy (``settings.egress.aws_sdk_allow``; None: not here)."""
    if not isinstance(definition, str):
        raise errors.validation("The definition must be a string of JSON.")
    if machine_type not in TYPES:
        raise errors.validation(
            f"1 validation error detected: Value '{machine_type}' at 'type' failed to satisfy "
            "constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]"
        )
    try:
        machine = compile_machine(definition)
        problems = check_definition(machine, machine_type, aws_sdk_allow)
        if problems:
            raise InvalidDefinition(problems)
    except InvalidDefinition as exc:
        raise errors.invalid_definition(str(exc)) from None
    return _remember(definition_hash(definition), machine)


def diagnostics(
    definition: str, machine_type: str | None, aws_sdk_allow: str = ""
) -> dict[str, Any]:
    """ValidateStateMachineDefinition: the interpreter's diagnostics plus ours (resources)."""
    result = validation_result(definition)
    if result["result"] == "OK":
        try:
            machine = compile_machine(definition)
        except InvalidDefinition:  # pragma: no cover - validation_result said OK
            return result
        extra = check_definition(machine, machine_type or "STANDARD", aws_sdk_allow)
        if extra:
            result["diagnostics"] = [*result["diagnostics"], *(d.to_dict() for d in extra)]
            result["result"] = "FAIL"
    return result


def store(session: Session, text: str) -> str:
    """Keep the definition text (once per distinct text); return its hash."""
    digest = definition_hash(text)
    session.execute(
        dialect_insert(session)(StateMachineDefinition)
        .values(hash=digest, definition=text, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["hash"])
    )
    return digest
