"""Workflow-variable references in JSONPath fields: ``$name`` and ``$name.path``.

Step Functions lets every JSONPath field read a variable (``"x.$": "$order.id"``,
``"InputPath": "$answer"``, Choice ``"Variable": "$status"``, intrinsic arguments). A
:class:`VarPath` is a :class:`~app.common.jsonpath.JsonPath` whose document is the variable's
value; :func:`source` picks the document a path reads (input, context object or variable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from app.common.jsonpath import MISSING, JsonPath, parse

#: Variable names (``^[A-Za-z_][A-Za-z0-9_]*$``); ``states`` is reserved.
NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED: Final = frozenset({"states"})
_REF: Final = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class VarPath(JsonPath):
    """``$name...``: reads ``variables[name]``."""

    variable: str = ""

    @property
    def is_reference_path(self) -> bool:
        return False


def parse_path(text: str) -> JsonPath:
    """A JSONPath, or a variable path; raises ``JsonPathError`` like ``parse``."""
    m = _REF.match(text) if text.startswith("$") and not text.startswith("$$") else None
    if m is None:
        return parse(text)
    inner = parse("$" + text[m.end() :])
    return VarPath(text, False, inner.segments, m.group(1))


EMPTY: Final[Mapping[str, Any]] = {}


class Context(dict[str, Any]):
    """The context object (``$$``) of one state, carrying the variables in scope there: every
    reader of a path already receives the context, so variables travel with it."""

    __slots__ = ("variables",)

    def __init__(self, data: dict[str, Any], variables: Mapping[str, Any] = EMPTY):
        super().__init__(data)
        self.variables = variables


def variables_of(context: Any) -> Mapping[str, Any]:
    return getattr(context, "variables", EMPTY)


def source(path: JsonPath, data: Any, context: Any) -> Any:
    """The document ``path`` reads (``MISSING`` for an unassigned variable)."""
    if isinstance(path, VarPath):
        return variables_of(context).get(path.variable, MISSING)
    return context if path.context else data


def read(path: JsonPath, data: Any, context: Any, *, index_past_end_is_null: bool = False) -> Any:
    """``path``'s value in its document, or ``MISSING``."""
    doc = source(path, data, context)
    if doc is MISSING:
        return MISSING
    return path.get(doc, index_past_end_is_null=index_past_end_is_null)


#: Step Functions quotas for variables: one variable, one ``Assign`` block, one execution.
MAX_VARIABLE_BYTES: Final = 256 * 1024
MAX_ASSIGN_BYTES: Final = 256 * 1024
MAX_TOTAL_BYTES: Final = 10 * 1024 * 1024
