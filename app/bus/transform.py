"""What EventBridge sends to a target: the event, ``Input``, ``InputPath`` or ``InputTransformer``.

Pure: data in, text out. The rules follow the EventBridge user guide ("Transforming target input")
and behaviour recorded against real AWS (LocalStack's AWS-validated snapshots):

* no ``Input*`` → the whole event as (compact) JSON;
* ``Input`` → that JSON text, verbatim;
* ``InputPath`` → the JSON of what the path selects;
* ``InputTransformer`` → ``InputPathsMap`` defines up to 100 variables (a JSONPath each) and
  ``InputTemplate`` uses them as ``<name>``, plus the reserved ``aws.events.*`` variables.

How a value is written depends on where its placeholder stands, because the template is text:

* in a **JSON template** (one that starts with ``{`` or ``[``), outside a string literal: the value
  as JSON — a string gets quotes ("EventBridge automatically adds quotes to string variable
  values"), objects and arrays are inserted as JSON;
* inside a string literal of a JSON template, or anywhere in a **text template**
  (``"instance <instance> is in <state>"``, ``<instance> is in state <status>``): a string is
  inserted raw — EventBridge "doesn't escape values extracted by Input Path" — and an object or
  array is written as JSON with its quotes removed (EventBridge "removes any internal quotes to
  ensure a valid string");
* a path that matches nothing yields an empty string: AWS delivers ``"command": ""`` for an
  unquoted ``<command>`` whose path is missing, and nothing at all inside a string.

A JSON template's result is minified ("The JSON that is passed to the target is minified") when
it is valid JSON; when raw insertion made it invalid, it is sent as is, as AWS does.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Final, NamedTuple

from app.bus.envelope import format_time
from app.common.jsonpath import (
    MISSING,
    Child,
    Index,
    JsonPathError,
    Wildcard,
    parse,
)

MAX_VARIABLES: Final = 100
MAX_TEMPLATE_LENGTH: Final = 8192
MAX_PATH_LENGTH: Final = 256

RULE_ARN = "aws.events.rule-arn"
RULE_NAME = "aws.events.rule-name"
INGESTION_TIME = "aws.events.event.ingestion-time"
EVENT = "aws.events.event"
EVENT_JSON = "aws.events.event.json"
RESERVED: Final = frozenset({RULE_ARN, RULE_NAME, INGESTION_TIME, EVENT, EVENT_JSON})

# "<" and ">" cannot be escaped in a template: every <...> is a placeholder.
PLACEHOLDER: Final = re.compile(r"<([^<>]*)>")
# The order AWS writes <aws.events.event> in (recorded on AWS), detail-type renamed detailType.
_EVENT_KEYS: Final = ("id", "account", "detail-type", "time", "source", "region", "resources")


class _NoNonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NoNonFinite(name)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render_input(
    spec: dict[str, Any],
    event: dict[str, Any],
    *,
    rule_arn: str,
    rule_name: str,
    ingestion_time: datetime,
) -> str:
    """The exact text EventBridge would send to the target ``spec`` for ``event``."""
    if spec.get("Input") is not None:
        return str(spec["Input"])
    if spec.get("InputPath") is not None:
        selected = select(event, str(spec["InputPath"]))
        # AWS does not document a path that selects nothing; JSON null keeps the payload JSON.
        return _compact(None if selected is MISSING else selected)
    transformer = spec.get("InputTransformer")
    if transformer is not None:
        return render_template(
            transformer,
            event,
            rule_arn=rule_arn,
            rule_name=rule_name,
            ingestion_time=ingestion_time,
        )
    return _compact(event)


def select(event: Any, path: str) -> Any:
    """The project's JSONPath (Jayway semantics): a definite path gives the value or
    ``MISSING``, a wildcard path gives the (possibly empty) list of matches."""
    try:
        return parse(path).get(event)
    except JsonPathError:
        return MISSING


def variables(
    transformer: dict[str, Any],
    event: dict[str, Any],
    *,
    rule_arn: str,
    rule_name: str,
    ingestion_time: datetime,
) -> dict[str, Any]:
    """Every variable a template may use; a path that matches nothing is left out."""
    values: dict[str, Any] = {}
    for name, path in (transformer.get("InputPathsMap") or {}).items():
        if name in RESERVED:  # reserved names can't be redefined; the predefined value wins
            continue
        value = select(event, str(path))
        if value is not MISSING:
            values[name] = value
    summary = {
        ("detailType" if k == "detail-type" else k): event[k] for k in _EVENT_KEYS if k in event
    }
    summary.update({k: v for k, v in event.items() if k not in _EVENT_KEYS and k != "detail"})
    values.update(
        {
            RULE_ARN: rule_arn,
            RULE_NAME: rule_name,
            INGESTION_TIME: format_time(ingestion_time),
            EVENT: summary,
            EVENT_JSON: event,
        }
    )
    return values


def is_json_template(template: str) -> bool:
    return template.lstrip()[:1] in ("{", "[")


def render_template(
    transformer: dict[str, Any],
    event: dict[str, Any],
    *,
    rule_arn: str,
    rule_name: str,
    ingestion_time: datetime,
) -> str:
    template = str(transformer.get("InputTemplate") or "")
    values = variables(
        transformer,
        event,
        rule_arn=rule_arn,
        rule_name=rule_name,
        ingestion_time=ingestion_time,
    )
    json_template = is_json_template(template)
    out: list[str] = []
    for piece in _scan(template, json_template):
        if piece.name is None:
            out.append(piece.text)
        else:
            value = values.get(piece.name, MISSING)
            out.append(_format(value, as_json=json_template and not piece.in_string))
    text = "".join(out)
    return minify(text) if json_template else text


def _format(value: Any, *, as_json: bool) -> str:
    if as_json:
        return '""' if value is MISSING else _compact(value)
    if value is MISSING:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return _compact(value).replace('"', "")
    return _compact(value)  # numbers, true/false, null as JSON writes them


class Piece(NamedTuple):
    text: str
    name: str | None  # the variable, for a placeholder; None for literal text
    in_string: bool  # inside a string literal of a JSON template
    end: int  # where the piece ends in the template


def _scan(template: str, json_template: bool) -> list[Piece]:
    """Split a template into literal pieces and placeholders; for a JSON template, note whether
    each placeholder stands inside a string literal. The template is scanned, not the output, so
    a raw value containing quotes cannot confuse what comes after it."""
    pieces: list[Piece] = []
    in_string = False
    literal_start = 0
    i = 0
    while i < len(template):
        ch = template[i]
        if json_template and in_string and ch == "\\":
            i += 2
            continue
        if json_template and ch == '"':
            in_string = not in_string
        elif ch == "<":
            match = PLACEHOLDER.match(template, i)
            if match is not None:
                pieces.append(Piece(template[literal_start:i], None, False, i))
                pieces.append(Piece(match.group(0), match.group(1), in_string, match.end()))
                i = literal_start = match.end()
                continue
        i += 1
    pieces.append(Piece(template[literal_start:], None, False, len(template)))
    return pieces


def _is_object_key(template: str, piece: Piece) -> bool:
    """Whether a placeholder of a JSON template stands where an object key goes (alone or inside
    the key's string literal): the next thing after it (after its string closes) is a ``:``."""
    i = piece.end
    if piece.in_string:
        while i < len(template) and template[i] != '"':
            i += 2 if template[i] == "\\" else 1
        i += 1
    return template[i:].lstrip().startswith(":")


def minify(text: str) -> str:
    """Valid JSON without insignificant whitespace (number and string text kept exactly);
    anything that is not valid JSON comes back unchanged."""
    try:
        json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text
    out: list[str] = []
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif ch not in " \t\n\r":
            out.append(ch)
    return "".join(out)


# --- validation (PutTargets) --------------------------------------------------------------------


def path_problem(path: Any) -> str | None:
    """Why ``path`` is not a JSONPath EventBridge evaluates, or None.

    EventBridge supports dot notation (names with dashes, underscores, slashes), array indices
    and wildcards; filters, deep scan, slices and unions are rejected rather than half-supported.
    """
    if not isinstance(path, str) or not path:
        return "must be a non-empty string"
    if len(path) > MAX_PATH_LENGTH:
        return f"must be at most {MAX_PATH_LENGTH} characters"
    try:
        parsed = parse(path)
    except JsonPathError as exc:
        return str(exc)
    if parsed.context:
        return "must start with '$', not '$$'"
    if not all(isinstance(s, Child | Index | Wildcard) for s in parsed.segments):
        return "uses JSONPath syntax EventBridge does not support (filters, '..', slices, unions)"
    return None


def validate_input(spec: dict[str, Any]) -> str | None:
    """Problems with a Target's ``InputPath`` and ``InputTransformer`` (``Input`` being valid JSON
    and the three being exclusive is checked by the service)."""
    input_path = spec.get("InputPath")
    if input_path is not None:
        problem = path_problem(input_path)
        if problem is not None:
            return f"InputPath {input_path!r} for target {spec.get('Id')} is not valid: {problem}."
    if spec.get("InputTransformer") is not None:
        return validate_transformer(spec)
    return None


def validate_transformer(spec: dict[str, Any]) -> str | None:
    """An AWS-like ValidationException message for a Target's ``InputTransformer``, or None."""
    target = spec.get("Id")
    transformer = spec.get("InputTransformer")
    if not isinstance(transformer, dict):
        return f"InputTransformer for target {target} must be an object."
    template = transformer.get("InputTemplate")
    if not isinstance(template, str):
        return (
            "1 validation error detected: Value null at 'inputTransformer.inputTemplate' failed "
            "to satisfy constraint: Member must not be null"
        )
    if not 1 <= len(template) <= MAX_TEMPLATE_LENGTH:
        return (
            "1 validation error detected: Value at 'inputTransformer.inputTemplate' failed to "
            f"satisfy constraint: Member must have length between 1 and {MAX_TEMPLATE_LENGTH}"
        )
    paths = transformer.get("InputPathsMap") or {}
    if not isinstance(paths, dict):
        return f"InputPathsMap for target {target} must be a map of names to JSON paths."
    if len(paths) > MAX_VARIABLES:
        return (
            "1 validation error detected: Value at 'inputTransformer.inputPathsMap' failed to "
            f"satisfy constraint: Member must have length less than or equal to {MAX_VARIABLES}"
        )
    for name, path in paths.items():
        if not name or PLACEHOLDER.fullmatch(f"<{name}>") is None or name != name.strip():
            return f"InputPathsMap for target {target} contains invalid key {name!r}."
        if name in RESERVED or name.lower().startswith("aws."):
            return (
                f"InputPathsMap for target {target} contains reserved key {name}: "
                "keys can't start with 'aws.'."
            )
        problem = path_problem(path)
        if problem is not None:
            return f"InputPathsMap[{name}] for target {target} is not a valid JSON path: {problem}."
    json_template = is_json_template(template)
    for piece in _scan(template, json_template):
        name = piece.name
        if name is None:
            continue
        if name not in paths and name not in RESERVED:
            return f"InputTemplate for target {target} contains invalid placeholder {name}."
        if json_template and _is_object_key(template, piece):
            return (
                f"InputTemplate for target {target} uses placeholder {name} as an object "
                "key; a placeholder can't be used as an object key."
            )
    return None
