"""What a target receives: every documented EventBridge example, with its documented output.

Sources: the EventBridge user guide "Transforming target input" (awsdocs/amazon-eventbridge-user-
guide, doc_source/eb-transform-target-input.md: the example event, InputPathsMap and the table of
templates and outputs), the API reference for InputTransformer (its three examples), and output
recorded against real AWS in LocalStack's AWS-validated snapshots
(tests/aws/services/events/test_events_inputs.snapshot.json): missing paths, predefined variables,
InputPath selections and the invalid-placeholder error message.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.bus.transform import (
    MAX_VARIABLES,
    minify,
    render_input,
    validate_input,
    validate_transformer,
)

RULE_ARN = "arn:aws:events:us-east-2:123456789012:rule/example"
INGESTED = datetime(2015, 11, 11, 21, 29, 55, tzinfo=UTC)

# The user guide's example event.
EC2_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2015-11-11T21:29:54Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
    "detail": {"instance-id": "i-0123456789", "state": "RUNNING"},
}
# The user guide's Input Path (InputPathsMap).
GUIDE_PATHS = {
    "timestamp": "$.time",
    "instance": "$.detail.instance-id",
    "state": "$.detail.state",
    "resource": "$.resources[0]",
}


def render(
    template: str,
    paths: dict[str, str] | None = None,
    event: dict[str, Any] | None = None,
    rule_name: str = "example",
) -> str:
    spec = {
        "Id": "t1",
        "Arn": "arn:smokehouse:handler:x",
        "InputTransformer": {"InputPathsMap": paths or {}, "InputTemplate": template},
    }
    return render_input(
        spec,
        EC2_EVENT if event is None else event,
        rule_arn=RULE_ARN,
        rule_name=rule_name,
        ingestion_time=INGESTED,
    )


def is_minified(text: str) -> bool:
    return text == json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


# --- the user guide's table ------------------------------------------------------------------


def test_simple_string() -> None:
    assert (
        render('"instance <instance> is in <state>"', GUIDE_PATHS)
        == '"instance i-0123456789 is in RUNNING"'
    )


def test_string_with_escaped_quotes() -> None:
    assert (
        render(r'"instance \"<instance>\" is in <state>"', GUIDE_PATHS)
        == r'"instance \"i-0123456789\" is in RUNNING"'
    )


def test_simple_json() -> None:
    out = render('{\n  "instance" : <instance>,\n  "state": <state>\n}', GUIDE_PATHS)
    assert json.loads(out) == {"instance": "i-0123456789", "state": "RUNNING"}
    assert is_minified(out)  # "The JSON that is passed to the target is minified"


def test_json_with_strings_and_variables() -> None:
    template = (
        '{\n "instance" : <instance>,\n "state": "<state>",\n'
        ' "instanceStatus": "instance \\"<instance>\\" is in <state>"\n}'
    )
    assert json.loads(render(template, GUIDE_PATHS)) == {
        "instance": "i-0123456789",
        "state": "RUNNING",
        "instanceStatus": 'instance "i-0123456789" is in RUNNING',
    }


def test_json_with_a_mix_of_variables_and_static_information() -> None:
    template = (
        '{\n  "instance" : <instance>,\n  "state": [ 9, <state>, true ],\n'
        '  "Transformed" : "Yes"\n}\n'
    )
    assert json.loads(render(template, GUIDE_PATHS)) == {
        "instance": "i-0123456789",
        "state": [9, "RUNNING", True],
        "Transformed": "Yes",
    }


def test_including_reserved_variables_in_json() -> None:
    template = (
        '{\n  "instance" : <instance>,\n  "state": <state>,\n'
        '  "ruleArn" : <aws.events.rule-arn>,\n  "ruleName" : <aws.events.rule-name>,\n'
        '  "originalEvent" : <aws.events.event>\n}'
    )
    out = json.loads(render(template, GUIDE_PATHS))
    assert out["instance"] == "i-0123456789"
    assert out["state"] == "RUNNING"
    assert out["ruleArn"] == "arn:aws:events:us-east-2:123456789012:rule/example"
    assert out["ruleName"] == "example"
    assert out["originalEvent"]["id"] == EC2_EVENT["id"]


def test_including_reserved_variables_in_a_string() -> None:
    assert render('"<aws.events.rule-name> triggered"') == '"example triggered"'


def test_cloudwatch_log_group_example_renders_valid_json() -> None:
    """The guide shows what CloudWatch Logs displays for this template (not JSON: unquoted
    timestamp, unescaped quotes); the input EventBridge renders for it is this JSON."""
    template = (
        '{\n  "timestamp" : <timestamp>,\n  "message": "instance \\"<instance>\\" is in <state>"\n}'
    )
    assert render(template, GUIDE_PATHS) == (
        '{"timestamp":"2015-11-11T21:29:54Z","message":"instance \\"i-0123456789\\" is in RUNNING"}'
    )


# --- the API reference's InputTransformer examples ---------------------------------------------

API_EVENT = {**EC2_EVENT, "detail": {"instance": "i-0123456789", "status": "RUNNING"}}
API_PATHS = {"instance": "$.detail.instance", "status": "$.detail.status"}


def test_api_reference_plain_text_template() -> None:
    out = render("<instance> is in state <status>", API_PATHS, API_EVENT)
    assert out == "i-0123456789 is in state RUNNING"


def test_api_reference_text_template_with_quotes() -> None:
    out = render('<instance> is in state "<status>"', API_PATHS, API_EVENT)
    assert out == 'i-0123456789 is in state "RUNNING"'


def test_api_reference_json_with_variables_in_quotes_or_out() -> None:
    template = '{"myInstance": <instance>,"myStatus": "<instance> is in state \\"<status>\\""}'
    assert json.loads(render(template, API_PATHS, API_EVENT)) == {
        "myInstance": "i-0123456789",
        "myStatus": 'i-0123456789 is in state "RUNNING"',
    }


# --- behaviour recorded on AWS (LocalStack's validated snapshots) ------------------------------

SNAPSHOT_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "11111111-2222-4333-8444-555555555555",
    "detail-type": "core.update-account-command",
    "source": "core.update-account-command",
    "account": "111111111111",
    "time": "2024-06-11T08:33:10Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {"command": "update-account", "payload": {"acc_id": "0a787ecb-4015", "sf_id": "baz"}},
}
SNAPSHOT_PATHS = {
    "detail-type": "$.detail-type",
    "timestamp": "$.time",
    "command": "$.detail.command",
}
MISSING_PATHS = {**SNAPSHOT_PATHS, "command": "$.detail.notinmessage"}
SNAPSHOT_TEXT = (
    '"Event of <detail-type> type, at time <timestamp>, info extracted from detail <command>"'
)


def test_text_template_recorded_on_aws() -> None:
    assert render(SNAPSHOT_TEXT, SNAPSHOT_PATHS, SNAPSHOT_EVENT) == (
        '"Event of core.update-account-command type, at time 2024-06-11T08:33:10Z, '
        'info extracted from detail update-account"'
    )


def test_missing_path_in_text_is_empty() -> None:
    assert render(SNAPSHOT_TEXT, MISSING_PATHS, SNAPSHOT_EVENT) == (
        '"Event of core.update-account-command type, at time 2024-06-11T08:33:10Z, '
        'info extracted from detail "'
    )


def test_missing_path_unquoted_in_json_is_an_empty_string() -> None:
    template = '{"detailType": <detail-type>,  "time": <timestamp>, "command": <command>}'
    assert json.loads(render(template, MISSING_PATHS, SNAPSHOT_EVENT)) == {
        "detailType": "core.update-account-command",
        "time": "2024-06-11T08:33:10Z",
        "command": "",
    }


def test_text_starting_with_brackets_inside_quotes_is_not_json() -> None:
    template = '"{[/Check with special starting characters for event of <detail-type> type"'
    assert render(template, SNAPSHOT_PATHS, SNAPSHOT_EVENT) == (
        '"{[/Check with special starting characters for event of core.update-account-command type"'
    )


def test_predefined_variables_in_a_string() -> None:
    template = (
        '"Message containing all pre defined variables <aws.events.rule-arn> '
        '<aws.events.rule-name> <aws.events.event.ingestion-time>"'
    )
    arn = "arn:aws:events:us-east-1:111111111111:rule/bus/rule"
    spec = {"InputTransformer": {"InputTemplate": template}}
    out = render_input(
        spec, SNAPSHOT_EVENT, rule_arn=arn, rule_name="rule", ingestion_time=INGESTED
    )
    assert out == (
        f'"Message containing all pre defined variables {arn} rule 2015-11-11T21:29:55Z"'
    )


def test_predefined_event_variables_in_json() -> None:
    template = '{"originalEvent": <aws.events.event>, "originalEventJson": <aws.events.event.json>}'
    out = json.loads(render(template, event=SNAPSHOT_EVENT))
    # <aws.events.event> is the event without detail, detail-type written detailType (AWS order).
    assert list(out["originalEvent"]) == [
        "id",
        "account",
        "detailType",
        "time",
        "source",
        "region",
        "resources",
        "version",
    ]
    assert out["originalEvent"]["detailType"] == "core.update-account-command"
    assert out["originalEventJson"] == SNAPSHOT_EVENT


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "$.detail",
            '{"command":"update-account","payload":{"acc_id":"0a787ecb-4015","sf_id":"baz"}}',
        ),
        ("$.detail.payload", '{"acc_id":"0a787ecb-4015","sf_id":"baz"}'),
        ("$.detail.payload.sf_id", '"baz"'),
    ],
)
def test_input_path_recorded_on_aws(path: str, expected: str) -> None:
    spec = {"InputPath": path}
    out = render_input(
        spec, SNAPSHOT_EVENT, rule_arn=RULE_ARN, rule_name="r", ingestion_time=INGESTED
    )
    assert out == expected


def test_invalid_placeholder_message_is_aws_s() -> None:
    spec = {
        "Id": "target-1",
        "InputTransformer": {
            "InputPathsMap": SNAPSHOT_PATHS,
            "InputTemplate": '"Event of <detail-type> type, with not defined key <notdefinedkey>"',
        },
    }
    assert validate_transformer(spec) == (
        "InputTemplate for target target-1 contains invalid placeholder notdefinedkey."
    )


# --- no Input*, Input, other value kinds ------------------------------------------------------


def test_no_input_sends_the_whole_event_as_compact_json() -> None:
    out = render_input({}, EC2_EVENT, rule_arn=RULE_ARN, rule_name="r", ingestion_time=INGESTED)
    assert json.loads(out) == EC2_EVENT
    assert is_minified(out)


def test_input_is_sent_verbatim() -> None:
    text = '{ "fixed" : [1, 2.50, "x"] }'
    spec = {"Input": text}
    assert (
        render_input(spec, EC2_EVENT, rule_arn=RULE_ARN, rule_name="r", ingestion_time=INGESTED)
        == text
    )


def test_object_in_a_string_loses_its_quotes() -> None:
    """User guide (current): a variable holding an object, used inside a string, has its
    internal quotes removed."""
    assert render('"Detail is <detail>"', {"detail": "$.detail"}) == (
        '"Detail is {instance-id:i-0123456789,state:RUNNING}"'
    )


def test_object_as_a_json_value_is_inserted_as_json() -> None:
    assert json.loads(render('{"detail": <detail>}', {"detail": "$.detail"})) == {
        "detail": EC2_EVENT["detail"]
    }


def test_numbers_booleans_and_null() -> None:
    event = {**EC2_EVENT, "detail": {"n": 1.5, "b": False, "z": None, "i": 42}}
    paths = {k: f"$.detail.{k}" for k in "nbzi"}
    assert json.loads(render('{"n": <n>, "b": <b>, "z": <z>, "i": <i>}', paths, event)) == {
        "n": 1.5,
        "b": False,
        "z": None,
        "i": 42,
    }
    assert render('"<n> <b> <z> <i>"', paths, event) == '"1.5 false null 42"'


def test_wildcards_and_indices() -> None:
    event = {**EC2_EVENT, "detail": {"probes": [{"t": 1}, {"t": 2}]}}
    paths = {"all": "$.detail.probes[*].t", "first": "$.detail.probes[0].t"}
    assert json.loads(render('{"all": <all>, "first": <first>}', paths, event)) == {
        "all": [1, 2],
        "first": 1,
    }


def test_unescaped_raw_insertion_is_sent_as_is() -> None:
    """EventBridge doesn't escape values inserted inside quotes: a quote in the value breaks the
    JSON, and the text goes out unchanged (not minified, not "fixed")."""
    event = {**EC2_EVENT, "detail": {"s": 'say "hi"'}}
    out = render('{ "s": "<s>" }', {"s": "$.detail.s"}, event)
    assert out == '{ "s": "say "hi"" }'


def test_unquoted_string_is_escaped_into_valid_json() -> None:
    event = {**EC2_EVENT, "detail": {"s": 'say "hi"\n'}}
    assert json.loads(render('{"s": <s>}', {"s": "$.detail.s"}, event)) == {"s": 'say "hi"\n'}


def test_minify_keeps_number_and_string_text() -> None:
    assert minify('{ "a" : 1.50 , "b" : "x  y\\" z" }') == '{"a":1.50,"b":"x  y\\" z"}'


# --- validation ----------------------------------------------------------------------------


def transformer_spec(paths: Any = None, template: Any = '"x"') -> dict[str, Any]:
    return {"Id": "t1", "InputTransformer": {"InputPathsMap": paths, "InputTemplate": template}}


def test_a_valid_transformer_passes() -> None:
    spec = transformer_spec(GUIDE_PATHS, '{"i": <instance>, "r": <aws.events.rule-name>}')
    assert validate_transformer(spec) is None
    assert validate_input(spec) is None


def test_at_most_100_variables() -> None:
    paths = {f"v{i}": "$.detail" for i in range(MAX_VARIABLES)}
    assert validate_transformer(transformer_spec(paths)) is None
    paths["one-more"] = "$.detail"
    problem = validate_transformer(transformer_spec(paths))
    assert problem is not None
    assert "less than or equal to 100" in problem


@pytest.mark.parametrize("key", ["aws.events.rule-name", "aws.events.event", "AWS.mine"])
def test_reserved_keys_are_rejected(key: str) -> None:
    problem = validate_transformer(transformer_spec({key: "$.detail"}))
    assert problem is not None
    assert "reserved" in problem


@pytest.mark.parametrize("path", ["detail", "$$.detail", "$.a[?(@.b)]", "$..a", "$.a[0:2]", "$.["])
def test_bad_json_paths_are_rejected(path: str) -> None:
    problem = validate_transformer(transformer_spec({"v": path}, "<v>"))
    assert problem is not None
    assert "InputPathsMap[v]" in problem
    input_path_problem = validate_input({"Id": "t1", "InputPath": path})
    assert input_path_problem is not None
    assert "InputPath" in input_path_problem


@pytest.mark.parametrize(
    "path", ["$", "$.detail.instance-id", "$.resources[0]", "$.detail.*", "$.detail.a/b"]
)
def test_supported_json_paths_are_accepted(path: str) -> None:
    assert validate_input({"Id": "t1", "InputPath": path}) is None


@pytest.mark.parametrize(
    "template", ["{<instance>: 1}", '{"<instance>": 1}', '{"a<instance>" : 1}']
)
def test_a_placeholder_cannot_be_an_object_key(template: str) -> None:
    problem = validate_transformer(transformer_spec(GUIDE_PATHS, template))
    assert problem is not None
    assert "object key" in problem


def test_placeholder_in_a_value_string_is_not_a_key() -> None:
    assert validate_transformer(transformer_spec(GUIDE_PATHS, '{"a": "<instance>: up"}')) is None


@pytest.mark.parametrize("template", [None, "", "x" * 8193])
def test_template_required_and_bounded(template: Any) -> None:
    assert validate_transformer(transformer_spec(GUIDE_PATHS, template)) is not None


# --- properties ----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_an_unquoted_variable_round_trips_any_json_value(value: Any) -> None:
    event = {**EC2_EVENT, "detail": {"x": value}}
    out = render('{ "v" : <v> }', {"v": "$.detail.x"}, event)
    assert json.loads(out) == {"v": value}
    assert is_minified(out)


@given(st.text().filter(lambda s: "<" not in s and ">" not in s), st.text())
def test_a_string_variable_in_text_is_inserted_verbatim(literal: str, value: str) -> None:
    """In a text template (one not starting with { or [) a string goes in raw, unescaped."""
    event = {**EC2_EVENT, "detail": {"x": value}}
    template = f"text{literal}<v>{literal}"
    assert render(template, {"v": "$.detail.x"}, event) == f"text{literal}{value}{literal}"


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_without_input_the_target_gets_the_event(detail: dict[str, Any]) -> None:
    event = {**EC2_EVENT, "detail": detail}
    out = render_input({}, event, rule_arn=RULE_ARN, rule_name="r", ingestion_time=INGESTED)
    assert json.loads(out) == event


@given(json_values)
def test_minify_equals_compact_serialisation(value: Any) -> None:
    pretty = json.dumps(value, indent=2, ensure_ascii=False)
    assert minify(pretty) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
