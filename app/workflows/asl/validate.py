"""Definition validation, in the shape of ``ValidateStateMachineDefinition``.

``validate_definition`` returns every diagnostic (``severity``, ``code``, ``message``,
``location``); ``ensure_valid`` raises :class:`~app.workflows.asl.errors.InvalidDefinition`
with the message ``CreateStateMachine`` would return, e.g.::

    Invalid State Machine Definition: 'MISSING_TRANSITION_TARGET: Missing 'Next' target: Bar at
    /States/Foo/Next'

Codes and wording follow what Step Functions returns where it is known: ``These fields are
required: [States, StartAt]`` at ``/``; ``Field 'Catch' is not supported`` at the state;
``Missing 'Next' target: X`` (``MISSING_TRANSITION_TARGET``) at the field; an unreachable state
is ``MISSING_TRANSITION_TARGET: State "X" is not reachable.``; ``MISSING_END_STATE: Workflow has
no terminal state`` (top level only, and it suppresses the reachability walk there);
``DUPLICATE_STATE_NAME: Duplicate State name: X``; ``INVALID_JSON_DESCRIPTION``; and the
warnings ``NO_DOLLAR``, ``NO_PATH``, ``PASS_RESULT_IS_STATIC``.

Both query languages are checked: a JSONata state may not use JSONPath-only fields
(``InputPath``, ``Parameters``, ``ResultPath``, ``*Path``, ...) nor a JSONPath state JSONata-only
ones (``Arguments``, ``Output``, ``Items``); JSONata expressions must parse; ``Assign`` names
must match ``^[A-Za-z_][A-Za-z0-9_]*$`` (``states`` is reserved). A distributed Map
(``ProcessorConfig.Mode: DISTRIBUTED``: ItemReader, ItemBatcher, ResultWriter, failure
thresholds, Label) is checked in full; its fields in an inline Map are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Final

from app.common.jsonpath import JsonPathError
from app.workflows.asl import distributed as dist
from app.workflows.asl import errors
from app.workflows.asl.choice import OPERATORS, parse_timestamp
from app.workflows.asl.errors import Diagnostic, InvalidDefinition
from app.workflows.asl.intrinsics import (
    IntrinsicSyntaxError,
    looks_like_intrinsic,
    parse_intrinsic,
)
from app.workflows.asl.jsonata import JsonataSyntaxError
from app.workflows.asl.paths import TemplateError, compile_template
from app.workflows.asl.query import compile_query, expression_text
from app.workflows.asl.retry import (
    MAX_ATTEMPTS_LIMIT,
    MAX_DELAY_SECONDS_LIMIT,
    MAX_INTERVAL_SECONDS,
)
from app.workflows.asl.varpath import NAME, RESERVED, parse_path

MAX_SECONDS: Final = 99999999
MAX_STATE_NAME_LENGTH: Final = 80
STATE_TYPES: Final = ("Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")

_IO: Final = ("InputPath", "OutputPath")
_COMMON: Final = ("Type", "Comment", "QueryLanguage", "Output", "Assign")
_FLOW: Final = ("Next", "End")
FIELDS: Final[dict[str, frozenset[str]]] = {
    "Pass": frozenset((*_COMMON, *_FLOW, *_IO, "ResultPath", "Parameters", "Result")),
    # (Arguments: Task and Parallel; Items: Map; Assign/Output are refused where AWS has none)
    "Task": frozenset(
        (
            *_COMMON,
            *_FLOW,
            *_IO,
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Resource",
            "Arguments",
            "Retry",
            "Catch",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
        )
    ),
    "Choice": frozenset((*_COMMON, *_IO, "Choices", "Default")),
    "Wait": frozenset(
        (*_COMMON, *_FLOW, *_IO, "Seconds", "SecondsPath", "Timestamp", "TimestampPath")
    ),
    "Succeed": frozenset((*_COMMON, *_IO)),
    "Fail": frozenset((*_COMMON, "Error", "ErrorPath", "Cause", "CausePath")),
    "Parallel": frozenset(
        (
            *_COMMON,
            *_FLOW,
            *_IO,
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Branches",
            "Arguments",
            "Retry",
            "Catch",
        )
    ),
    "Map": frozenset(
        (
            *_COMMON,
            *_FLOW,
            *_IO,
            "ResultPath",
            "Parameters",
            "ItemSelector",
            "ResultSelector",
            "ItemsPath",
            "Items",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "Iterator",
            "ItemProcessor",
            "Retry",
            "Catch",
            # distributed Map only
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "Label",
        )
    ),
}
_DISTRIBUTED_ONLY: Final = (
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
    "ToleratedFailurePercentage",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCount",
    "ToleratedFailureCountPath",
    "Label",
)
#: ``ReaderConfig.CSVDelimiter`` values.
CSV_DELIMITERS: Final = ("COMMA", "PIPE", "SEMICOLON", "SPACE", "TAB")
_BAD_LABEL: Final = re.compile(r"[\s?*<>{}\[\]:;,\\|^~$#%&`\"\x00-\x1f\x7f-\x9f]")
_TOP_FIELDS: Final = frozenset(
    ("Comment", "StartAt", "States", "TimeoutSeconds", "Version", "QueryLanguage")
)
_WORKFLOW_FIELDS: Final = frozenset(("Comment", "StartAt", "States"))
_RETRIER_FIELDS: Final = frozenset(
    (
        "ErrorEquals",
        "IntervalSeconds",
        "MaxAttempts",
        "BackoffRate",
        "MaxDelaySeconds",
        "JitterStrategy",
        "Comment",
    )
)
_CATCHER_FIELDS: Final = frozenset(
    ("ErrorEquals", "Next", "ResultPath", "Comment", "Assign", "Output")
)
_RULE_FIELDS: Final = frozenset(
    ("Variable", "Next", "Comment", "And", "Or", "Not", "Assign", *OPERATORS)
)
_JSONATA_RULE_FIELDS: Final = frozenset(("Condition", "Next", "Comment", "Assign", "Output"))
#: Fields only JSONPath states have (refused in a JSONata state) and the reverse.
JSONPATH_ONLY: Final = (
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "ItemsPath",
    "Iterator",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "SecondsPath",
    "TimestampPath",
    "ErrorPath",
    "CausePath",
    "MaxConcurrencyPath",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCountPath",
    "Result",
)
JSONATA_ONLY: Final = ("Arguments", "Output", "Items")
_NO_ASSIGN: Final = ("Succeed", "Fail")

#: The HTTP Task's per-status errors, e.g. ``States.Http.StatusCode.404`` (AWS accepts any).
HTTP_STATUS_ERROR = re.compile(r"States\.Http\.StatusCode\.\d{3}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_TYPE_NAMES: Final = {
    str: "STRING",
    int: "INTEGER",
    float: "NUMBER",
    bool: "BOOLEAN",
    dict: "OBJECT",
    list: "ARRAY",
}


class _DuplicateKeys:
    def __init__(self) -> None:
        self.keys: list[str] = []

    def hook(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                self.keys.append(key)
            out[key] = value
        return out


def load_definition(definition: dict[str, Any] | str) -> Any:
    """The parsed definition (a string is parsed as JSON; raises ``ValueError`` if it is not)."""
    if isinstance(definition, str):
        return json.loads(definition)
    return definition


class _Validator:
    def __init__(self) -> None:
        self.diags: list[Diagnostic] = []
        self.late: list[Diagnostic] = []
        self.top_jsonata = False  # the machine's QueryLanguage
        self.jsonata = False  # the state being validated
        self.names: dict[str, str] = {}

    # reporting
    def error(self, code: str, message: str, location: str | None) -> None:
        self.diags.append(Diagnostic("ERROR", code, message, location))

    def schema(self, message: str, location: str | None) -> None:
        self.error("SCHEMA_VALIDATION_FAILED", message, location)

    def warn(self, code: str, message: str, location: str) -> None:
        self.diags.append(Diagnostic("WARNING", code, message, location))

    def expect_type(self, value: Any, kind: type, location: str) -> bool:
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float:
            ok = _is_number(value)
        if not ok:
            self.schema(f"Expected value of type [{_TYPE_NAMES[kind]}]", location)
        return ok

    def unknown_fields(self, obj: dict[str, Any], allowed: Iterable[str], location: str) -> None:
        allowed_set = frozenset(allowed)
        for key in obj:
            if key not in allowed_set:
                self.schema(f"Field '{key}' is not supported", location)

    def required(self, obj: dict[str, Any], fields: Iterable[str], location: str) -> bool:
        missing = [f for f in fields if f not in obj]
        if missing:
            self.schema(f"These fields are required: [{', '.join(missing)}]", location)
        return not missing

    def integer(self, obj: dict[str, Any], key: str, low: int, high: int, location: str) -> None:
        if key not in obj:
            return
        value = obj[key]
        where = f"{location}/{key}"
        if not _is_int(value):
            self.schema("Expected value of type [INTEGER]", where)
        elif not low <= value <= high:
            self.schema(f"The value for the field '{key}' must be between {low} and {high}", where)

    def path_field(
        self, obj: dict[str, Any], key: str, location: str, *, nullable: bool, reference: bool
    ) -> None:
        if key not in obj:
            return
        value = obj[key]
        where = f"{location}/{key}"
        if value is None:
            if not nullable:
                self.schema("Expected value of type [STRING]", where)
            return
        if not isinstance(value, str):
            self.schema("Expected value of type [STRING]", where)
            return
        try:
            path = parse_path(value)
        except JsonPathError:
            kind = "Reference Path" if reference else "JSONPath"
            self.schema(f"The value for the field '{key}' must be a valid {kind}", where)
            return
        if reference and not path.is_reference_path:
            self.schema(f"The value for the field '{key}' must be a valid Reference Path", where)

    # structure
    def machine(self, d: Any) -> None:
        if not isinstance(d, dict):
            self.schema("Definition must be a valid JSON object", None)
            return
        self.unknown_fields(d, _TOP_FIELDS, "/")
        missing = [f for f in ("States", "StartAt") if f not in d]
        if missing:
            self.schema(f"These fields are required: [{', '.join(missing)}]", "/")
        if "Comment" in d:
            self.expect_type(d["Comment"], str, "/Comment")
        if "Version" in d:
            self.expect_type(d["Version"], str, "/Version")
        self.query_language(d, "/QueryLanguage")
        self.top_jsonata = d.get("QueryLanguage") == "JSONata"
        self.integer(d, "TimeoutSeconds", 1, MAX_SECONDS, "")
        self.workflow(d, "", top=True)
        self.diags.extend(self.late)

    def query_language(self, d: dict[str, Any], location: str) -> None:
        if "QueryLanguage" not in d:
            return
        value = d["QueryLanguage"]
        if not isinstance(value, str):
            self.schema("Expected value of type [STRING]", location)
        elif value not in ("JSONPath", "JSONata"):
            self.schema("Value should be one of the following: [JSONPath, JSONata]", location)

    def workflow(self, d: dict[str, Any], base: str, *, top: bool) -> None:
        states = d.get("States")
        start = d.get("StartAt")
        if "StartAt" in d:
            self.expect_type(start, str, f"{base}/StartAt")
        if "States" not in d:
            return
        if not isinstance(states, dict):
            self.schema("Expected value of type [OBJECT]", f"{base}/States")
            return
        if not states:
            self.schema("The field 'States' must not be empty", f"{base}/States")
            return
        names = frozenset(states)
        for name, sd in states.items():
            self.state(name, sd, f"{base}/States/{name}", names)
        if isinstance(start, str) and start not in states:
            self.error(
                "MISSING_TRANSITION_TARGET", f"Missing 'Next' target: {start}", f"{base}/StartAt"
            )
            return
        if not isinstance(start, str):
            return
        if top and not any(_is_terminal(sd) for sd in states.values()):
            self.late.append(
                Diagnostic("ERROR", "MISSING_END_STATE", "Workflow has no terminal state", None)
            )
            return
        reachable = {start}
        todo = [start]
        while todo:
            for target in _targets(states.get(todo.pop())):
                if target in states and target not in reachable:
                    reachable.add(target)
                    todo.append(target)
        for name in states:
            if name not in reachable:
                self.error(
                    "MISSING_TRANSITION_TARGET",
                    f'State "{name}" is not reachable.',
                    f"{base}/States/{name}",
                )

    def target(self, value: Any, names: frozenset[str], location: str) -> None:
        if not isinstance(value, str):
            self.schema("Expected value of type [STRING]", location)
        elif value not in names:
            self.error("MISSING_TRANSITION_TARGET", f"Missing 'Next' target: {value}", location)

    def state(self, name: str, sd: Any, loc: str, names: frozenset[str]) -> None:
        if name in self.names:
            self.error("DUPLICATE_STATE_NAME", f"Duplicate State name: {name}", loc)
        else:
            self.names[name] = loc
        if not name or len(name) > MAX_STATE_NAME_LENGTH or any(ord(c) < 0x20 for c in name):
            self.error(
                "INVALID_STATE_NAME",
                f"The state name '{name}' must be 1 to {MAX_STATE_NAME_LENGTH} characters "
                "without control characters",
                loc,
            )
        if not isinstance(sd, dict):
            self.schema("Expected value of type [OBJECT]", loc)
            return
        kind = sd.get("Type")
        if "Type" not in sd:
            self.schema("These fields are required: [Type]", loc)
            return
        if kind not in STATE_TYPES:
            self.schema(
                f"Value should be one of the following: [{', '.join(STATE_TYPES)}]", f"{loc}/Type"
            )
            return
        self.unknown_fields(sd, FIELDS[kind], loc)
        if "Comment" in sd:
            self.expect_type(sd["Comment"], str, f"{loc}/Comment")
        self.query_language(sd, f"{loc}/QueryLanguage")
        language = sd.get("QueryLanguage")
        if self.top_jsonata and language == "JSONPath":
            self.schema(
                "The QueryLanguage of a state cannot be 'JSONPath' in a state machine whose "
                "QueryLanguage is 'JSONata'",
                f"{loc}/QueryLanguage",
            )
        self.jsonata = language == "JSONata" or (self.top_jsonata and language is None)
        self.language_fields(sd, kind, loc)
        if kind not in ("Choice", "Succeed", "Fail"):
            has_next = "Next" in sd
            if "End" in sd and not isinstance(sd["End"], bool):
                self.schema("Expected value of type [BOOLEAN]", f"{loc}/End")
            has_end = sd.get("End") is True
            if not has_next and not has_end:
                self.schema('The field "Next" is required but was missing', loc)
            elif has_next and has_end:
                self.schema("The fields 'Next' and 'End' cannot both be specified", loc)
        if "Next" in sd and kind in FIELDS and "Next" in FIELDS[kind]:
            self.target(sd["Next"], names, f"{loc}/Next")
        if not self.jsonata:
            for key in _IO:
                self.path_field(sd, key, loc, nullable=True, reference=False)
            self.path_field(sd, "ResultPath", loc, nullable=True, reference=True)
            for key in ("Parameters", "ResultSelector", "ItemSelector"):
                if key in sd:
                    self.template(sd[key], f"{loc}/{key}", key, require_object=True)
        jsonata = self.jsonata
        getattr(self, f"state_{kind.lower()}")(sd, loc, names)
        self.jsonata = jsonata  # a Map/Parallel's inner states may have changed it
        if "Retry" in sd:
            self.retriers(sd["Retry"], f"{loc}/Retry")
        if "Catch" in sd:
            self.catchers(sd["Catch"], f"{loc}/Catch", names)

    def language_fields(self, sd: dict[str, Any], kind: str, loc: str) -> None:
        """Fields of the other query language, ``Assign`` names, and JSONata templates."""
        if self.jsonata:
            for key in JSONPATH_ONLY:
                if key in sd:
                    self.schema(
                        f"The field '{key}' is not supported when the QueryLanguage is JSONata",
                        f"{loc}/{key}",
                    )
            for key in (*JSONATA_ONLY, "ItemSelector", "Seconds", "Timestamp", "Error"):
                if key in sd:
                    self.jsonata_template(sd[key], key, f"{loc}/{key}")
            for key in ("Cause", "TimeoutSeconds", "HeartbeatSeconds", "MaxConcurrency"):
                if key in sd:
                    self.jsonata_template(sd[key], key, f"{loc}/{key}")
        else:
            for key in JSONATA_ONLY:
                if key in sd:
                    self.schema(
                        f"The field '{key}' is not supported when the QueryLanguage is JSONPath",
                        f"{loc}/{key}",
                    )
        if kind in _NO_ASSIGN and "Assign" in sd:
            self.schema("Field 'Assign' is not supported", loc)
        if kind == "Fail" and "Output" in sd:
            self.schema("Field 'Output' is not supported", loc)
        if "Assign" in sd:
            self.assign(sd["Assign"], f"{loc}/Assign")

    def assign(self, value: Any, loc: str) -> None:
        if not isinstance(value, dict):
            self.schema("Expected value of type [OBJECT]", loc)
            return
        for key in value:
            name = key[:-2] if not self.jsonata and key.endswith(".$") else key
            if not NAME.fullmatch(name):
                self.schema(
                    f"The variable name '{name}' is not valid: it must match "
                    "^[A-Za-z_][A-Za-z0-9_]*$",
                    f"{loc}/{key}",
                )
            elif name in RESERVED:
                self.schema(f"The variable name '{name}' is reserved", f"{loc}/{key}")
        if self.jsonata:
            self.jsonata_template(value, "Assign", loc)
        else:
            self.template(value, loc, "Assign", require_object=True)

    def jsonata_template(self, value: Any, field: str, loc: str) -> None:
        try:
            compile_query(value, field)
        except JsonataSyntaxError as exc:
            self.schema(f"The JSONata expression in the field '{field}' is not valid: {exc}", loc)

    def template(self, value: Any, loc: str, key: str, *, require_object: bool) -> None:
        if require_object and not isinstance(value, dict):
            self.schema("Expected value of type [OBJECT]", loc)
            return
        try:
            compile_template(value)
        except TemplateError as exc:
            self.schema(str(exc), f"{loc}{exc.pointer}")
            return
        self.no_dollar(value, loc)

    def no_dollar(self, value: Any, loc: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k.endswith(".$"):
                    continue
                if isinstance(v, str) and (
                    v.startswith(("$.", "$$.")) or v == "$" or looks_like_intrinsic(v)
                ):
                    self.warn(
                        "NO_DOLLAR",
                        f"The value of the field '{k}' looks like a JSONPath or an intrinsic "
                        "function, but the field name does not end with '.$'",
                        f"{loc}/{k}",
                    )
                else:
                    self.no_dollar(v, f"{loc}/{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.no_dollar(v, f"{loc}[{i}]")

    def no_path(self, sd: dict[str, Any], keys: Iterable[str], loc: str) -> None:
        for key in keys:
            value = sd.get(key)
            if isinstance(value, str) and value.startswith("$"):
                self.warn(
                    "NO_PATH",
                    f"The value of the field '{key}' looks like a JSONPath, but the field name "
                    "does not end with 'Path'",
                    f"{loc}/{key}",
                )

    # per state type
    def state_pass(self, sd: dict[str, Any], loc: str, names: frozenset[str]) -> None:
        result = sd.get("Result")
        if isinstance(result, dict) and any(
            isinstance(k, str) and k.endswith(".$") for k in result
        ):
            self.warn(
                "PASS_RESULT_IS_STATIC",
                "The Result of a Pass state is static: its fields ending in '.$' are not evaluated",
                f"{loc}/Result",
            )

    def state_task(self, sd: dict[str, Any], loc: str, names: frozenset[str]) -> None:
        if self.required(sd, ["Resource"], loc):
            resource = sd["Resource"]
            if not isinstance(resource, str) or not resource.strip():
                self.error(
                    "INVALID_RESOURCE", "The resource must be a non-empty string", f"{loc}/Resource"
                )
        for key in ("TimeoutSeconds", "HeartbeatSeconds"):
            if expression_text(sd.get(key)) is None:
                self.integer(sd, key, 1, MAX_SECONDS, loc)
            self.path_field(sd, f"{key}Path", loc, nullable=False, reference=False)
            if key in sd and f"{key}Path" in sd:
                self.schema(
                    f"A Task state cannot include both field '{key}' and '{key}Path'",
                    f"{loc}/{key}",
                )
        timeout, heartbeat = sd.get("TimeoutSeconds"), sd.get("HeartbeatSeconds")
        if isinstance(timeout, int) and isinstance(heartbeat, int) and heartbeat >= timeout:
            self.schema(
                "The value for the field 'HeartbeatSeconds' must be smaller than the value for "
                "the field 'TimeoutSeconds'",
                f"{loc}/HeartbeatSeconds",
            )
        self.no_path(sd, ("TimeoutSeconds", "HeartbeatSeconds"), loc)
        if "Credentials" in sd:
            self.expect_type(sd["Credentials"], dict, f"{loc}/Credentials")

    def state_choice(self, sd: dict[str, Any], loc: str, names: frozenset[str]) -> None:
        if not self.required(sd, ["Choices"], loc):
            return
        choices = sd["Choices"]
        if not isinstance(choices, list):
            self.schema("Expected value of type [ARRAY]", f"{loc}/Choices")
            return
        if not choices:
            self.schema("The field 'Choices' must not be empty", f"{loc}/Choices")
        for i, rule in enumerate(choices):
            rule_loc = f"{loc}/Choices[{i}]"
            if self.jsonata:
                self.jsonata_rule(rule, rule_loc)
            else:
                self.rule(rule, rule_loc, top=True)
                if isinstance(rule, dict) and "Assign" in rule:
                    self.assign(rule["Assign"], f"{rule_loc}/Assign")
            if isinstance(rule, dict):
                if "Next" not in rule:
                    self.schema('The field "Next" is required but was missing', rule_loc)
                else:
                    self.target(rule["Next"], names, f"{rule_loc}/Next")
        if "Default" in sd:
            self.target(sd["Default"], names, f"{loc}/Default")

    def jsonata_rule(self, rule: Any, loc: str) -> None:
        if not isinstance(rule, dict):
            self.schema("Expected value of type [OBJECT]", loc)
            return
        self.unknown_fields(rule, _JSONATA_RULE_FIELDS, loc)
        if "Condition" not in rule:
            self.schema("These fields are required: [Condition]", loc)
        else:
            condition = rule["Condition"]
            if not isinstance(condition, bool) and expression_text(condition) is None:
                self.schema(
                    "The value for the field 'Condition' must be a JSONata expression or a boolean",
                    f"{loc}/Condition",
                )
            self.jsonata_template(condition, "Condition", f"{loc}/Condition")
        for key in ("Output", "Assign"):
            if key in rule:
                if key == "Assign":
                    self.assign(rule[key], f"{loc}/Assign")
                else:
                    self.jsonata_template(rule[key], key, f"{loc}/{key}")

    def rule(self, rule: Any, loc: str, *, top: bool) -> None:
        if not isinstance(rule, dict):
            self.schema("Expected value of type [OBJECT]", loc)
            return
        self.unknown_fields(rule, _RULE_FIELDS, loc)
        if not top and "Next" in rule:
            self.schema("Field 'Next' is not supported", loc)
        logical = [k for k in ("And", "Or", "Not") if k in rule]
        operators = [k for k in rule if k in OPERATORS]
        if len(logical) + len(operators) != 1:
            self.schema(
                "A Choice Rule must contain exactly one comparison operator, or one of 'And', "
                "'Or', 'Not'",
                loc,
            )
            return
        if logical:
            key = logical[0]
            if "Variable" in rule:
                self.schema("Field 'Variable' is not supported", loc)
            value = rule[key]
            if key == "Not":
                self.rule(value, f"{loc}/Not", top=False)
            elif not isinstance(value, list) or not value:
                self.schema("Expected a non-empty value of type [ARRAY]", f"{loc}/{key}")
            else:
                for i, sub in enumerate(value):
                    self.rule(sub, f"{loc}/{key}[{i}]", top=False)
            return
        op = operators[0]
        if "Variable" not in rule:
            self.schema("These fields are required: [Variable]", loc)
        else:
            self.path_field(rule, "Variable", loc, nullable=False, reference=False)
        operand = rule[op]
        kind = OPERATORS[op]
        where = f"{loc}/{op}"
        if kind == "string":
            self.expect_type(operand, str, where)
        elif kind == "number":
            self.expect_type(operand, float, where)
        elif kind in ("boolean", "flag"):
            self.expect_type(operand, bool, where)
        elif kind == "timestamp":
            if parse_timestamp(operand) is None:
                self.schema(
                    "The value must be a timestamp in RFC 3339 format (for example "
                    "2016-03-14T01:59:00Z)",
                    where,
                )
        else:
            self.path_field(rule, op, loc, nullable=False, reference=False)

    def state_wait(self, sd: dict[str, Any], loc: str, names: frozenset[str]) -> None:
        given = [k for k in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if k in sd]
        if len(given) != 1:
            self.schema(
                "A Wait state must include exactly one of 'Seconds', 'SecondsPath', "
                "'Timestamp' or 'TimestampPath'",
                loc,
            )
        if expression_text(sd.get("Seconds")) is None:
            self.integer(sd, "Seconds", 0, MAX_SECONDS, loc)
        if (
            "Timestamp" in sd
            and expression_text(sd["Timestamp"]) is None
            and parse_timestamp(sd["Timestamp"]) is None
        ):
            self.schema(
                "The value for the field 'Timestamp' must be a timestamp in RFC 3339 format",
                f"{loc}/Timestamp",
            )
        for key in ("SecondsPath", "TimestampPath"):
            self.path_field(sd, key, loc, nullable=False, reference=False)
        self.no_path(sd, ("Seconds", "Timestamp"), loc)

    def state_succeed(self, sd: dict[str, Any], loc: str, names: frozenset[str]) -> None:
        return

    def state_fail(self, sd: dict[str, Any], loc: str, names: frozenset[str]) -> None:
        for key in ("Error", "Cause"):
            if key in sd and f"{key}Path" in sd:
                self.schema(f"A Fail state cannot include both field '{key}' and '{key}Path'", loc)
            if key in sd:
                self.expect_type(sd[key], str, f"{loc}/{key}")
            path_key = f"{key}Path"
            if path_key in sd:
                value = sd[path_key]
                where = f"{loc}/{path_key}"
                if not isinstance(value, str):
                    self.schema("Expected value of type [STRING]", where)
                elif looks_like_intrinsic(value):
                    try:
                        parse_intrinsic(value)
                    except IntrinsicSyntaxError:
                        self.schema(
                            f"The value for the field '{path_key}' must be a valid intrinsic "
                            "function call",
                            where,
                        )
                else:
                    self.path_field(sd, path_key, loc, nullable=False, reference=False)
        self.no_path(sd, ("Error", "Cause"), loc)

    def state_parallel(self, sd: dict[str, Any], loc: str, names: frozenset[str]) -> None:
        if not self.required(sd, ["Branches"], loc):
            return
        branches = sd["Branches"]
        if not isinstance(branches, list) or not branches:
            self.schema("Expected a non-empty value of type [ARRAY]", f"{loc}/Branches")
            return
        for i, branch in enumerate(branches):
            self.sub_workflow(branch, f"{loc}/Branches[{i}]", _WORKFLOW_FIELDS)

    def state_map(self, sd: dict[str, Any], loc: str, names: frozenset[str]) -> None:
        processors = [k for k in ("ItemProcessor", "Iterator") if k in sd]
        if not processors:
            self.schema("These fields are required: [ItemProcessor]", loc)
        elif len(processors) == 2:
            self.schema("A Map state cannot include both field 'ItemProcessor' and 'Iterator'", loc)
        if "ItemSelector" in sd and "Parameters" in sd:
            self.schema(
                "A Map state cannot include both field 'ItemSelector' and 'Parameters'", loc
            )
        self.path_field(sd, "ItemsPath", loc, nullable=False, reference=False)
        if expression_text(sd.get("MaxConcurrency")) is None:
            self.integer(sd, "MaxConcurrency", 0, 2**63 - 1, loc)
        self.path_field(sd, "MaxConcurrencyPath", loc, nullable=False, reference=True)
        if "MaxConcurrency" in sd and "MaxConcurrencyPath" in sd:
            self.schema(
                "A Map state cannot include both field 'MaxConcurrency' and 'MaxConcurrencyPath'",
                f"{loc}/MaxConcurrency",
            )
        distributed = False
        jsonata = self.jsonata  # the inner states may change it
        for key in processors:
            proc = sd[key]
            allowed = (
                _WORKFLOW_FIELDS | {"ProcessorConfig"}
                if key == "ItemProcessor"
                else (_WORKFLOW_FIELDS)
            )
            self.sub_workflow(proc, f"{loc}/{key}", allowed)
            if key == "ItemProcessor" and isinstance(proc, dict) and "ProcessorConfig" in proc:
                distributed = self.processor_config(proc["ProcessorConfig"], f"{loc}/{key}")
        self.jsonata = jsonata
        if distributed:
            self.distributed_map(sd, loc)
        else:
            for name in _DISTRIBUTED_ONLY:
                if name in sd:
                    self.schema(
                        f"Field '{name}' is only supported when the ProcessorConfig Mode is "
                        "DISTRIBUTED",
                        f"{loc}/{name}",
                    )

    def processor_config(self, config: Any, loc: str) -> bool:
        """Validate ``ProcessorConfig``; whether it asks for distributed mode."""
        where = f"{loc}/ProcessorConfig"
        if not isinstance(config, dict):
            self.schema("Expected value of type [OBJECT]", where)
            return False
        self.unknown_fields(config, ("Mode", "ExecutionType"), where)
        mode = config.get("Mode", "INLINE")
        if mode not in ("INLINE", "DISTRIBUTED"):
            self.schema(
                "Value should be one of the following: [INLINE, DISTRIBUTED]", f"{where}/Mode"
            )
            return False
        if mode == "INLINE":
            if "ExecutionType" in config:
                self.schema(
                    "Field 'ExecutionType' is only supported when the Mode is DISTRIBUTED",
                    f"{where}/ExecutionType",
                )
            return False
        if "ExecutionType" not in config:
            self.schema("These fields are required: [ExecutionType]", where)
        elif config["ExecutionType"] not in ("STANDARD", "EXPRESS"):
            self.schema(
                "Value should be one of the following: [STANDARD, EXPRESS]",
                f"{where}/ExecutionType",
            )
        return True

    def number_or_path(
        self, obj: dict[str, Any], key: str, low: float, high: float, loc: str, *, integer: bool
    ) -> None:
        """``<key>`` (a literal, or a JSONata expression in a JSONata state) or ``<key>Path``
        (a reference path in a JSONPath state), not both."""
        path_key = f"{key}Path"
        if key in obj and path_key in obj:
            self.schema(f"The fields '{key}' and '{path_key}' cannot both be specified", loc)
        if key in obj:
            value = obj[key]
            if self.jsonata and expression_text(value) is not None:
                self.jsonata_template(value, key, f"{loc}/{key}")
            elif integer:
                self.integer(obj, key, int(low), int(high), loc)
            elif not _is_number(value):
                self.schema("Expected value of type [NUMBER]", f"{loc}/{key}")
            elif not low <= value <= high:
                self.schema(
                    f"The value for the field '{key}' must be between {low:g} and {high:g}",
                    f"{loc}/{key}",
                )
        if path_key in obj:
            if self.jsonata:
                self.schema(
                    f"The field '{path_key}' is not supported when the QueryLanguage is JSONata",
                    f"{loc}/{path_key}",
                )
            else:
                self.path_field(obj, path_key, loc, nullable=False, reference=True)

    def s3_call(self, block: dict[str, Any], loc: str, resources: frozenset[str]) -> None:
        """``Resource`` and ``Parameters`` (JSONPath) / ``Arguments`` (JSONata) of an
        ItemReader or ResultWriter."""
        resource = block.get("Resource")
        if "Resource" in block and resource not in resources:
            self.schema(
                f"The resource '{resource}' is not supported here; use one of: "
                f"{', '.join(sorted(resources))}",
                f"{loc}/Resource",
            )
        params, other = ("Arguments", "Parameters") if self.jsonata else ("Parameters", "Arguments")
        if other in block:
            language = "JSONata" if self.jsonata else "JSONPath"
            self.schema(
                f"The field '{other}' is not supported when the QueryLanguage is {language}",
                f"{loc}/{other}",
            )
        if params in block:
            if self.jsonata:
                self.jsonata_template(block[params], params, f"{loc}/{params}")
            else:
                self.template(block[params], f"{loc}/{params}", params, require_object=True)

    def distributed_map(self, sd: dict[str, Any], loc: str) -> None:
        """ItemReader, ItemBatcher, ResultWriter, the failure thresholds and Label."""
        if "Label" in sd:
            label = sd["Label"]
            if not isinstance(label, str):
                self.schema("Expected value of type [STRING]", f"{loc}/Label")
            elif not 0 < len(label) <= dist.MAX_LABEL_LENGTH or _BAD_LABEL.search(label):
                self.schema(
                    f"The value for the field 'Label' must be 1 to {dist.MAX_LABEL_LENGTH} "
                    "characters without whitespace or any of ? * < > { } [ ] : ; , \\ | ^ ~ $ # % "
                    '& ` "',
                    f"{loc}/Label",
                )
        self.number_or_path(sd, "ToleratedFailurePercentage", 0, 100, loc, integer=False)
        self.number_or_path(sd, "ToleratedFailureCount", 0, 2**31 - 1, loc, integer=True)
        reader = sd.get("ItemReader")
        if reader is not None:
            where = f"{loc}/ItemReader"
            if not isinstance(reader, dict):
                self.schema("Expected value of type [OBJECT]", where)
            else:
                self.unknown_fields(
                    reader, ("Resource", "Parameters", "Arguments", "ReaderConfig"), where
                )
                self.required(
                    reader, ["Resource", "Arguments" if self.jsonata else "Parameters"], where
                )
                self.s3_call(reader, where, dist.READER_RESOURCES)
                self.reader_config(reader, where)
        batcher = sd.get("ItemBatcher")
        if batcher is not None:
            where = f"{loc}/ItemBatcher"
            if not isinstance(batcher, dict):
                self.schema("Expected value of type [OBJECT]", where)
            else:
                self.unknown_fields(
                    batcher,
                    (
                        "MaxItemsPerBatch",
                        "MaxItemsPerBatchPath",
                        "MaxInputBytesPerBatch",
                        "MaxInputBytesPerBatchPath",
                        "BatchInput",
                    ),
                    where,
                )
                if not any(k.startswith("Max") for k in batcher):
                    self.schema(
                        "At least one of the fields 'MaxItemsPerBatch', 'MaxItemsPerBatchPath', "
                        "'MaxInputBytesPerBatch' or 'MaxInputBytesPerBatchPath' is required",
                        where,
                    )
                self.number_or_path(
                    batcher,
                    "MaxItemsPerBatch",
                    1,
                    dist.MAX_ITEMS_PER_BATCH_LIMIT,
                    where,
                    integer=True,
                )
                self.number_or_path(
                    batcher,
                    "MaxInputBytesPerBatch",
                    1,
                    dist.MAX_INPUT_BYTES_PER_BATCH_LIMIT,
                    where,
                    integer=True,
                )
                if "BatchInput" in batcher:
                    if self.jsonata:
                        self.jsonata_template(
                            batcher["BatchInput"], "BatchInput", f"{where}/BatchInput"
                        )
                    else:
                        self.template(
                            batcher["BatchInput"],
                            f"{where}/BatchInput",
                            "BatchInput",
                            require_object=True,
                        )
        writer = sd.get("ResultWriter")
        if writer is not None:
            where = f"{loc}/ResultWriter"
            if not isinstance(writer, dict) or not writer:
                self.schema("Expected a non-empty value of type [OBJECT]", where)
            else:
                self.unknown_fields(
                    writer, ("Resource", "Parameters", "Arguments", "WriterConfig"), where
                )
                has_target = "Resource" in writer
                params = "Arguments" if self.jsonata else "Parameters"
                if has_target != (params in writer):
                    self.schema(f"The fields 'Resource' and '{params}' go together", where)
                self.s3_call(writer, where, dist.WRITER_RESOURCES)
                config = writer.get("WriterConfig")
                if config is not None:
                    self.writer_config(config, f"{where}/WriterConfig")

    def reader_config(self, reader: dict[str, Any], loc: str) -> None:
        config = reader.get("ReaderConfig", {})
        where = f"{loc}/ReaderConfig"
        if not isinstance(config, dict):
            self.schema("Expected value of type [OBJECT]", where)
            return
        self.unknown_fields(
            config,
            (
                "InputType",
                "CSVHeaderLocation",
                "CSVHeaders",
                "CSVDelimiter",
                "MaxItems",
                "MaxItemsPath",
            ),
            where,
        )
        get_object = reader.get("Resource") == "arn:aws:states:::s3:getObject"
        kind = config.get("InputType")
        if get_object and kind is None:
            self.schema("These fields are required: [InputType]", where)
        elif kind is not None and kind not in dist.INPUT_TYPES:
            self.schema(
                f"Value should be one of the following: [{', '.join(dist.INPUT_TYPES)}]",
                f"{where}/InputType",
            )
        elif kind is not None and not get_object:
            self.schema(
                "Field 'InputType' is only supported with arn:aws:states:::s3:getObject",
                f"{where}/InputType",
            )
        csv_fields = [k for k in ("CSVHeaderLocation", "CSVHeaders", "CSVDelimiter") if k in config]
        if csv_fields and kind != "CSV":
            self.schema(
                f"Field '{csv_fields[0]}' is only supported when the InputType is CSV",
                f"{where}/{csv_fields[0]}",
            )
        if kind == "CSV":
            location = config.get("CSVHeaderLocation", "FIRST_ROW")
            if location not in ("FIRST_ROW", "GIVEN"):
                self.schema(
                    "Value should be one of the following: [FIRST_ROW, GIVEN]",
                    f"{where}/CSVHeaderLocation",
                )
            headers = config.get("CSVHeaders")
            if location == "GIVEN" and headers is None:
                self.schema("These fields are required: [CSVHeaders]", where)
            if headers is not None and (
                not isinstance(headers, list)
                or not headers
                or not all(isinstance(h, str) for h in headers)
            ):
                self.schema("Expected a non-empty array of strings", f"{where}/CSVHeaders")
            if "CSVDelimiter" in config and config["CSVDelimiter"] not in CSV_DELIMITERS:
                self.schema(
                    f"Value should be one of the following: [{', '.join(CSV_DELIMITERS)}]",
                    f"{where}/CSVDelimiter",
                )
        self.number_or_path(
            config, "MaxItems", 0, dist.MAX_ITEMS_PER_BATCH_LIMIT, where, integer=True
        )

    def writer_config(self, config: Any, loc: str) -> None:
        if not isinstance(config, dict):
            self.schema("Expected value of type [OBJECT]", loc)
            return
        self.unknown_fields(config, ("Transformation", "OutputType"), loc)
        if config.get("Transformation", "NONE") not in ("NONE", "COMPACT", "FLATTEN"):
            self.schema(
                "Value should be one of the following: [NONE, COMPACT, FLATTEN]",
                f"{loc}/Transformation",
            )
        if config.get("OutputType", "JSON") not in ("JSON", "JSONL"):
            self.schema("Value should be one of the following: [JSON, JSONL]", f"{loc}/OutputType")

    def sub_workflow(self, d: Any, loc: str, allowed: frozenset[str]) -> None:
        if not isinstance(d, dict):
            self.schema("Expected value of type [OBJECT]", loc)
            return
        self.unknown_fields(d, allowed, loc)
        self.required(d, ["StartAt", "States"], loc)
        self.workflow(d, loc, top=False)

    def error_equals(self, entry: dict[str, Any], loc: str) -> bool:
        """Validate ``ErrorEquals``; returns whether it holds ``States.ALL``."""
        if "ErrorEquals" not in entry:
            return False
        names = entry["ErrorEquals"]
        where = f"{loc}/ErrorEquals"
        if not isinstance(names, list) or not names:
            self.schema("Expected a non-empty value of type [ARRAY]", where)
            return False
        for i, name in enumerate(names):
            if not isinstance(name, str):
                self.schema("Expected value of type [STRING]", f"{where}[{i}]")
            elif (
                name.startswith("States.")
                and name not in errors.KNOWN_ERROR_NAMES
                and not HTTP_STATUS_ERROR.fullmatch(name)
            ):
                self.schema(f"'{name}' is not a predefined error name", f"{where}[{i}]")
        if errors.ALL in names and len(names) > 1:
            self.schema("'States.ALL' must appear alone in the 'ErrorEquals' array", where)
        return errors.ALL in names

    def retriers(self, retry: Any, loc: str) -> None:
        if not isinstance(retry, list):
            self.schema("Expected value of type [ARRAY]", loc)
            return
        for i, retrier in enumerate(retry):
            where = f"{loc}[{i}]"
            if not isinstance(retrier, dict):
                self.schema("Expected value of type [OBJECT]", where)
                continue
            self.unknown_fields(retrier, _RETRIER_FIELDS, where)
            self.required(retrier, ["ErrorEquals"], where)
            if self.error_equals(retrier, where) and i != len(retry) - 1:
                self.schema("'States.ALL' must appear in the last retrier", where)
            self.integer(retrier, "IntervalSeconds", 1, MAX_INTERVAL_SECONDS, where)
            self.integer(retrier, "MaxAttempts", 0, MAX_ATTEMPTS_LIMIT, where)
            self.integer(retrier, "MaxDelaySeconds", 1, MAX_DELAY_SECONDS_LIMIT, where)
            if "BackoffRate" in retrier:
                rate = retrier["BackoffRate"]
                if not _is_number(rate):
                    self.schema("Expected value of type [NUMBER]", f"{where}/BackoffRate")
                elif rate < 1.0:
                    self.schema(
                        "The value for the field 'BackoffRate' must be greater than or equal "
                        "to 1.0",
                        f"{where}/BackoffRate",
                    )
            if "JitterStrategy" in retrier and retrier["JitterStrategy"] not in ("FULL", "NONE"):
                self.schema(
                    "Value should be one of the following: [FULL, NONE]",
                    f"{where}/JitterStrategy",
                )

    def catchers(self, catch: Any, loc: str, names: frozenset[str]) -> None:
        if not isinstance(catch, list):
            self.schema("Expected value of type [ARRAY]", loc)
            return
        for i, catcher in enumerate(catch):
            where = f"{loc}[{i}]"
            if not isinstance(catcher, dict):
                self.schema("Expected value of type [OBJECT]", where)
                continue
            self.unknown_fields(catcher, _CATCHER_FIELDS, where)
            self.required(catcher, ["ErrorEquals", "Next"], where)
            if self.error_equals(catcher, where) and i != len(catch) - 1:
                self.schema("'States.ALL' must appear in the last catcher", where)
            if "Next" in catcher:
                self.target(catcher["Next"], names, f"{where}/Next")
            if self.jsonata:
                if "ResultPath" in catcher:
                    self.schema(
                        "The field 'ResultPath' is not supported when the QueryLanguage is JSONata",
                        f"{where}/ResultPath",
                    )
                if "Output" in catcher:
                    self.jsonata_template(catcher["Output"], "Output", f"{where}/Output")
            else:
                if "Output" in catcher:
                    self.schema(
                        "The field 'Output' is not supported when the QueryLanguage is JSONPath",
                        f"{where}/Output",
                    )
                self.path_field(catcher, "ResultPath", where, nullable=True, reference=True)
            if "Assign" in catcher:
                self.assign(catcher["Assign"], f"{where}/Assign")


def _is_terminal(sd: Any) -> bool:
    return isinstance(sd, dict) and (sd.get("Type") in ("Succeed", "Fail") or sd.get("End") is True)


def _targets(sd: Any) -> list[str]:
    if not isinstance(sd, dict):
        return []
    out = [sd[k] for k in ("Next", "Default") if isinstance(sd.get(k), str)]
    for key in ("Choices", "Catch"):
        entries = sd.get(key)
        if isinstance(entries, list):
            out.extend(
                e["Next"] for e in entries if isinstance(e, dict) and isinstance(e.get("Next"), str)
            )
    return out


def validate_definition(definition: dict[str, Any] | str) -> list[Diagnostic]:
    """Every diagnostic for ``definition`` (a dict, or the JSON text of one)."""
    duplicates = _DuplicateKeys()
    if isinstance(definition, str):
        if not definition.strip():
            return [Diagnostic("ERROR", "MISSING_DESCRIPTION", "The definition is empty")]
        try:
            raw = json.loads(definition, object_pairs_hook=duplicates.hook)
        except ValueError as exc:
            return [Diagnostic("ERROR", "INVALID_JSON_DESCRIPTION", str(exc))]
    else:
        raw = definition
    validator = _Validator()
    validator.machine(raw)
    for key in duplicates.keys:
        if key in validator.names:
            validator.error(
                "DUPLICATE_STATE_NAME", f"Duplicate State name: {key}", validator.names[key]
            )
        else:
            validator.schema(f"Duplicate field '{key}'", None)
    return validator.diags


def validation_result(definition: dict[str, Any] | str) -> dict[str, Any]:
    """``ValidateStateMachineDefinition``'s response body: ``result``, ``diagnostics``,
    ``truncated``."""
    diags = validate_definition(definition)
    failed = any(d.severity == "ERROR" for d in diags)
    return {
        "result": "FAIL" if failed else "OK",
        "diagnostics": [d.to_dict() for d in diags],
        "truncated": False,
    }


def ensure_valid(definition: dict[str, Any] | str) -> dict[str, Any]:
    """The parsed definition; raises :class:`InvalidDefinition` on any ERROR diagnostic."""
    problems = [d for d in validate_definition(definition) if d.severity == "ERROR"]
    if problems:
        raise InvalidDefinition(problems)
    raw = load_definition(definition)
    assert isinstance(raw, dict)
    return raw
