"""Input and output processing: InputPath, Parameters/ItemSelector/ResultSelector payload
templates, ResultPath, OutputPath, and the payload size limit.

The order for a state (Step Functions developer guide, "Processing input and output"):
``InputPath`` -> ``Parameters`` -> (the work) -> ``ResultSelector`` -> ``ResultPath`` ->
``OutputPath``. JSON values are treated as immutable: nothing here mutates its arguments.

Cause wording follows what Step Functions reports, e.g. ``The JSONPath '$.x' specified for the
field 'y.$' could not be found in the input '{"a":1}'`` (error ``States.Runtime``: that is the
name AWS uses for it, not the spec's ``States.ParameterPathFailure``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from app.common.jsonpath import MISSING, Child, Index, JsonPath, JsonPathError
from app.workflows.asl import errors, intrinsics
from app.workflows.asl.varpath import VarPath, parse_path, read, source

#: 256 KiB, the Step Functions quota for a state's input/output and an execution's input.
MAX_PAYLOAD_BYTES: Final = 256 * 1024


def compact(value: Any) -> str:
    """JSON the way Step Functions prints it in causes and history: no whitespace."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def payload_size(value: Any) -> int:
    return len(compact(value).encode("utf-8"))


def check_payload_size(value: Any, state_or_resource: str) -> None:
    if payload_size(value) > MAX_PAYLOAD_BYTES:
        raise errors.StatesError(
            errors.DATA_LIMIT_EXCEEDED,
            f"The state/task '{state_or_resource}' returned a result with a size exceeding the "
            "maximum number of bytes service limit.",
        )


def _jayway_path(path: JsonPath) -> str:
    parts = ["$"]
    for seg in path.segments:
        if isinstance(seg, Child):
            parts.append(f"['{seg.name}']")
        elif isinstance(seg, Index):
            parts.append(f"[{seg.index}]")
    return "".join(parts)


def read_path(path: JsonPath, data: Any, context: Any) -> Any:
    """The value (or match list) at ``path``; ``$$`` paths read the context object, ``$name``
    paths a variable."""
    return read(path, data, context)


def select(path: JsonPath | None, data: Any, context: Any) -> Any:
    """InputPath / OutputPath / ItemsPath: ``null`` gives ``{}``; a miss is ``States.Runtime``."""
    if path is None:
        return {}
    if not path.segments and not path.context and not isinstance(path, VarPath):
        return data
    value = read_path(path, data, context)
    if value is MISSING:
        raise errors.runtime_error(
            f"Invalid path '{path.text}' : No results for path: {_jayway_path(path)}"
        )
    return value


def apply_result_path(path: JsonPath | None, state_input: Any, result: Any) -> Any:
    """Place ``result`` into ``state_input`` at the Reference Path ``path``.

    ``None`` (``"ResultPath": null``) discards the result; ``$`` replaces the input; missing
    object fields along the path are created; a step that lands on a non-object (or an array
    index that does not exist) is ``States.ResultPathMatchFailure``.
    """
    if path is None:
        return state_input
    if not path.segments:
        return result

    def conflict(step: str) -> errors.StatesError:
        return errors.StatesError(
            errors.RESULT_PATH_MATCH_FAILURE,
            f'Unable to apply step "{step}" to input {compact(state_input)}',
        )

    root: Any = state_input
    # Copy the containers along the path only; everything else is shared (never mutated).
    if isinstance(root, dict):
        root = dict(root)
    elif isinstance(root, list):
        root = list(root)
    node = root
    last = len(path.segments) - 1
    for i, seg in enumerate(path.segments):
        if isinstance(seg, Child):
            if not isinstance(node, dict):
                raise conflict(seg.name)
            if i == last:
                node[seg.name] = result
                break
            child = node.get(seg.name, MISSING)
            if child is MISSING:
                child = {}
            elif isinstance(child, dict):
                child = dict(child)
            elif isinstance(child, list):
                child = list(child)
            else:
                raise conflict(seg.name)
            node[seg.name] = child
            node = child
        else:
            assert isinstance(seg, Index)
            if not isinstance(node, list):
                raise conflict(str(seg.index))
            idx = seg.index + len(node) if seg.index < 0 else seg.index
            if not 0 <= idx < len(node):
                raise conflict(str(seg.index))
            if i == last:
                node[idx] = result
                break
            child = node[idx]
            if isinstance(child, dict):
                child = dict(child)
            elif isinstance(child, list):
                child = list(child)
            else:
                raise conflict(str(seg.index))
            node[idx] = child
            node = child
    return root


# --- Payload templates ----------------------------------------------------------------------------


class TemplateError(ValueError):
    """A ``.$`` field whose value is neither a path nor an intrinsic function call."""

    def __init__(self, pointer: str, message: str):
        super().__init__(message)
        self.pointer = pointer  # relative JSON pointer, e.g. "/a/b.$"


@dataclass(frozen=True, slots=True)
class TConst:
    value: Any


@dataclass(frozen=True, slots=True)
class TObject:
    items: tuple[tuple[str, TNode], ...]


@dataclass(frozen=True, slots=True)
class TArray:
    items: tuple[TNode, ...]


@dataclass(frozen=True, slots=True)
class TPath:
    field: str
    path: JsonPath


@dataclass(frozen=True, slots=True)
class TCall:
    field: str
    call: intrinsics.Call


TNode: TypeAlias = TConst | TObject | TArray | TPath | TCall


def compile_dynamic(field: str, value: Any, pointer: str = "") -> TPath | TCall:
    """Compile the value of one ``<field>.$`` entry."""
    if not isinstance(value, str):
        raise TemplateError(
            pointer,
            f"The value for the field '{field}.$' must be a STRING that contains a JSONPath or "
            "an intrinsic function",
        )
    text = value.strip()
    if text.startswith("$"):
        try:
            return TPath(field, parse_path(text))
        except JsonPathError:
            pass
    elif intrinsics.looks_like_intrinsic(text):
        try:
            return TCall(field, intrinsics.parse_intrinsic(text))
        except intrinsics.IntrinsicSyntaxError:
            pass
    raise TemplateError(
        pointer,
        f"The value for the field '{field}.$' must be a valid JSONPath or a valid intrinsic "
        "function call",
    )


def compile_template(value: Any, pointer: str = "") -> TNode:
    """Compile a payload template; static subtrees become a single :class:`TConst`."""
    if isinstance(value, dict):
        items: list[tuple[str, TNode]] = []
        dynamic = False
        for key, sub in value.items():
            key_pointer = f"{pointer}/{key}"
            if key.endswith(".$") and len(key) > 2:
                node: TNode = compile_dynamic(key[:-2], sub, key_pointer)
                items.append((key[:-2], node))
                dynamic = True
            else:
                node = compile_template(sub, key_pointer)
                dynamic = dynamic or not isinstance(node, TConst)
                items.append((key, node))
        return TObject(tuple(items)) if dynamic else TConst(value)
    if isinstance(value, list):
        nodes = [compile_template(v, f"{pointer}/{i}") for i, v in enumerate(value)]
        if all(isinstance(n, TConst) for n in nodes):
            return TConst(value)
        return TArray(tuple(nodes))
    return TConst(value)


@dataclass(frozen=True, slots=True)
class Scope:
    """What a template can read: its input, the context object and the injected randomness."""

    data: Any
    context: Any
    random: Callable[[], float]
    uuid: Callable[[], str]

    def intrinsic_context(self) -> intrinsics.IntrinsicContext:
        return intrinsics.IntrinsicContext(self.data, self.context, self.random, self.uuid)


def render(node: TNode, scope: Scope) -> Any:
    if isinstance(node, TConst):
        return node.value
    if isinstance(node, TObject):
        return {key: render(sub, scope) for key, sub in node.items}
    if isinstance(node, TArray):
        return [render(sub, scope) for sub in node.items]
    if isinstance(node, TPath):
        value = read(node.path, scope.data, scope.context, index_past_end_is_null=True)
        if value is MISSING:
            doc = source(node.path, scope.data, scope.context)
            raise errors.runtime_error(
                f"The JSONPath '{node.path.text}' specified for the field '{node.field}.$' could "
                f"not be found in the input '{compact(None if doc is MISSING else doc)}'"
            )
        return value
    return intrinsics.evaluate(node.call, scope.intrinsic_context())


def evaluate_dynamic(text: str, scope: Scope) -> Any:
    """Evaluate a field that takes a Reference Path *or* an intrinsic (``ErrorPath``,
    ``CausePath``): a path miss is ``States.Runtime``."""
    stripped = text.strip()
    if intrinsics.looks_like_intrinsic(stripped):
        return intrinsics.evaluate_text(stripped, scope.intrinsic_context())
    path = parse_path(stripped)
    return select(path, scope.data, scope.context)
