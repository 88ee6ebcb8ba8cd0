"""Request parameters checked against botocore's service models, worded as AWS's servers word them.

botocore ships the same models AWS's request framework validates with, so instead of copying
lengths, patterns and enums by hand we walk the operation's input shape. A member of the wrong
JSON type is a ``SerializationException`` at once (the body cannot be read as the shape);
constraint violations -- a null required member, lengths, patterns, enums, ranges, at any depth --
are collected and reported together as one ``ValidationException``::

    2 validation errors detected: Value 'x y' at 'name' failed to satisfy constraint: Member must
    satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+; Value null at 'eventBusName' failed
    to satisfy constraint: Member must not be null

Sensitive members are not quoted (``Value at 'input' failed ...``), as AWS words them. Member
paths are lowerCamelCase, list items are ``targets.1.member.id`` (1-based), map values
``tags.<key>``. Members the model does not know are ignored, as AWS ignores them. Checks the model
cannot express (is this text an event pattern?) stay in the domain handlers.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from app.aws import errors

#: Java regex classes the models use that Python's ``re`` spells differently.
_JAVA_CLASSES: Final = {r"\p{ASCII}": r"\x00-\x7F"}

_WHAT: Final = {
    "string": ("a string", "strings"),
    "blob": ("a string", "strings"),
    "integer": ("an integer", "integers"),
    "long": ("an integer", "integers"),
    "float": ("a number", "numbers"),
    "double": ("a number", "numbers"),
    "boolean": ("a boolean", "booleans"),
    "timestamp": ("a timestamp", "timestamps"),
    "structure": ("an object", "objects"),
    "map": ("an object", "objects"),
    "list": ("a list", "lists"),
}


@functools.cache
def _botocore() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def service_model(service: str) -> ServiceModel:
    """botocore's model of ``service`` (``"events"``, ``"stepfunctions"``), loaded once."""
    return _botocore().get_service_model(service)


def member_path(name: str) -> str:
    """AWS reports members in lowerCamelCase: ``EventBusName`` -> ``eventBusName``."""
    return name[:1].lower() + name[1:]


def shown(value: Any) -> str:
    """A value as the messages quote it: text as is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def not_null(path: str) -> str:
    """The problem of a required member that is missing (or JSON ``null``)."""
    return f"Value null at '{path}' failed to satisfy constraint: Member must not be null"


def validation_error(problems: Sequence[str]) -> errors.AwsError:
    """``N validation error(s) detected: <problem>; <problem>``."""
    noun = "error" if len(problems) == 1 else "errors"
    return errors.validation(f"{len(problems)} validation {noun} detected: " + "; ".join(problems))


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    """The model's (Java) pattern for Python; ``None`` if ``re`` cannot read it (then unchecked)."""
    translated = pattern
    for java, python in _JAVA_CLASSES.items():
        translated = translated.replace(java, f"[{python}]")
    try:
        return re.compile(translated, re.ASCII | re.DOTALL)
    except re.error:
        return None


def _is_type(shape: Shape, value: Any) -> bool:
    kind = shape.type_name
    if kind in ("string", "blob"):
        return isinstance(value, str)
    if kind in ("integer", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "double"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "timestamp":
        return parse_timestamp(value) is not None
    if kind in ("structure", "map"):
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    return True  # a type the JSON protocols do not use: nothing to check


def parse_timestamp(value: Any) -> datetime | None:
    """botocore sends timestamps as epoch seconds; ISO 8601 text is accepted too."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


class _Walk:
    """One request's walk over its input shape, collecting violations in model order."""

    def __init__(self, enums: Mapping[str, Sequence[str]]) -> None:
        self.enums = enums
        self.problems: list[str] = []

    def violation(self, shape: Shape, value: Any, path: str, constraint: str) -> None:
        # Sensitive members (execution input, task output, secrets) are never echoed back.
        quoted = "" if shape.metadata.get("sensitive") else f" '{shown(value)}'"
        self.problems.append(
            f"Value{quoted} at '{path}' failed to satisfy constraint: Member must {constraint}"
        )

    def structure(
        self,
        shape: StructureShape,
        value: Mapping[str, Any],
        prefix: str,
        shallow: Collection[str] = (),
    ) -> None:
        required = set(shape.required_members)
        for name, member in shape.members.items():
            path = prefix + member_path(name)
            item = value.get(name)
            if item is None:
                if name in required:
                    self.problems.append(not_null(path))
                continue
            if name in shallow:
                self.typed(member, item, path)
            else:
                self.value(member, item, path)

    def typed(self, shape: Shape, value: Any, path: str) -> None:
        if not _is_type(shape, value):
            raise errors.serialization(f"Value at '{path}' must be {_WHAT[shape.type_name][0]}.")

    def value(self, shape: Shape, value: Any, path: str) -> None:
        self.typed(shape, value, path)
        kind = shape.type_name
        if kind in ("string", "blob", "list", "map"):
            self.bounds(shape, value, path, len(value), "have length")
        elif kind in ("integer", "long", "float", "double"):
            self.bounds(shape, value, path, value, "have value")
        if kind == "string":
            self.string(shape, value, path)
        elif isinstance(shape, StructureShape):
            self.structure(shape, value, path + ".")
        elif isinstance(shape, ListShape):
            self.items(shape, value, path)
        elif isinstance(shape, MapShape):
            for key, item in value.items():
                if item is not None:
                    self.value(shape.value, item, f"{path}.{key}")

    def bounds(self, shape: Shape, value: Any, path: str, size: float, what: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and size < low:
            self.violation(shape, value, path, f"{what} greater than or equal to {low}")
        if high is not None and size > high:
            self.violation(shape, value, path, f"{what} less than or equal to {high}")

    def string(self, shape: Shape, value: str, path: str) -> None:
        pattern = shape.metadata.get("pattern")
        if pattern is not None:
            compiled = _compiled(pattern)
            if compiled is not None and compiled.fullmatch(value) is None:
                self.violation(shape, value, path, f"satisfy regular expression pattern: {pattern}")
        allowed = self.enums.get(shape.name) or shape.metadata.get("enum")
        if allowed and value not in allowed:
            self.violation(shape, value, path, f"satisfy enum value set: [{', '.join(allowed)}]")

    def items(self, shape: ListShape, value: list[Any], path: str) -> None:
        member = shape.member
        if not all(item is None or _is_type(member, item) for item in value):
            raise errors.serialization(f"Members of '{path}' must be {_WHAT[member.type_name][1]}.")
        for index, item in enumerate(value, start=1):
            if item is not None:
                self.value(member, item, f"{path}.{index}.member")


class RequestValidator:
    """Checks one operation's requests; build it once (the model walk is per request)."""

    def __init__(
        self,
        model: OperationModel,
        *,
        enums: Mapping[str, Sequence[str]] | None = None,
        shallow: Collection[str] = (),
    ) -> None:
        """``enums`` lists an enum shape's values in the order the server's message uses;
        ``shallow`` names top-level members whose contents the handler checks itself, in its
        own words (only their type is checked here)."""
        self.model = model
        self.enums = dict(enums or {})
        self.shallow = frozenset(shallow)

    @classmethod
    def for_operation(
        cls,
        service: str,
        operation: str,
        *,
        enums: Mapping[str, Sequence[str]] | None = None,
        shallow: Collection[str] = (),
    ) -> RequestValidator:
        return cls(service_model(service).operation_model(operation), enums=enums, shallow=shallow)

    def __call__(self, params: Mapping[str, Any]) -> None:
        """Raise ``SerializationException`` or one ``ValidationException`` naming every
        violation; return quietly when ``params`` fits the model."""
        shape = self.model.input_shape
        if shape is None:
            return
        walk = _Walk(self.enums)
        walk.structure(shape, params, "", self.shallow)
        if walk.problems:
            raise validation_error(walk.problems)
