"""TestEventPattern and PutRule through boto3 agree with EventBridge's documented pattern semantics.

Every case names its source. "Guide" is the Amazon EventBridge User Guide:
  [values]   "Event pattern syntax" / "Matching event values" (eb-create-pattern, eb-event-patterns)
  [arrays]   "Arrays in Amazon EventBridge event patterns" (eb-event-patterns-arrays)
  [null]     "Matching events on null values and empty strings" (eb-event-patterns-null-values)
  [content]  "Content filtering in Amazon EventBridge event patterns" / "Comparison operators for
             use in event patterns" (eb-event-patterns-content-based-filtering,
             eb-create-pattern-operators): prefix, suffix, equals-ignore-case, wildcard,
             anything-but (+ prefix/suffix/equals-ignore-case/wildcard), numeric, cidr, exists, $or
"Ruler" is the README of aws/event-ruler, the matching engine behind EventBridge (JSON text
matching, JSON array matching, wildcard escaping, "$or"). "LocalStack" marks cases from LocalStack's
event_pattern_templates that its suite records as validated against AWS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from app.bus.models import Delivery, Event
from tests.integration.bus.conftest import Live

pytestmark = pytest.mark.integration

# The guide's example EC2 event ([values]); cases override parts of it.
EC2_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-12-22T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated"},
}


def event(detail: Mapping[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """The example event with ``detail`` replaced and top-level fields set (``detail_type`` ->
    ``detail-type``)."""
    result = {**EC2_EVENT, "detail": dict(detail) if detail is not None else EC2_EVENT["detail"]}
    for key, value in top.items():
        result[key.replace("_", "-")] = value
    return result


CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # -- exact values [values] ---------------------------------------------------------------
    (
        "values: the guide's EC2 termination pattern",
        {
            "source": ["aws.ec2"],
            "detail-type": ["EC2 Instance State-change Notification"],
            "detail": {"state": ["terminated"]},
        },
        event(),
        True,
    ),
    (
        "values: another state",
        {"detail": {"state": ["terminated"]}},
        event({"state": "running"}),
        False,
    ),
    (
        "values: any of several values",
        {"source": ["aws.ec2", "aws.fargate"]},
        event(source="aws.fargate"),
        True,
    ),
    ("values: a field the event lacks", {"detail": {"state": ["terminated"]}}, event({}), False),
    ("values: matching is case-sensitive", {"detail": {"state": ["Terminated"]}}, event(), False),
    ("values: same nesting required", {"state": ["terminated"]}, event(), False),
    ("values: a number", {"detail": {"count": [5]}}, event({"count": 5}), True),
    # Ruler "JSON text matching": values are JSON, so 5 is not "5" and true is not "true".
    ("ruler: number is not a string", {"detail": {"count": [5]}}, event({"count": "5"}), False),
    ("ruler: string is not a number", {"detail": {"count": ["5"]}}, event({"count": 5}), False),
    ("values: boolean true", {"detail": {"on": [True]}}, event({"on": True}), True),
    ('ruler: true is not "true"', {"detail": {"on": [True]}}, event({"on": "true"}), False),
    ("values: boolean false", {"detail": {"on": [False]}}, event({"on": False}), True),
    # -- null and empty [null]: the guide's example detail ------------------------------------
    (
        "null: empty string",
        {"detail": {"eventVersion": [""]}},
        event({"eventVersion": "", "responseElements": None}),
        True,
    ),
    (
        "null: null",
        {"detail": {"responseElements": [None]}},
        event({"eventVersion": "", "responseElements": None}),
        True,
    ),
    (
        'null: "" does not match null',
        {"detail": {"responseElements": [""]}},
        event({"eventVersion": "", "responseElements": None}),
        False,
    ),
    (
        'null: null does not match ""',
        {"detail": {"eventVersion": [None]}},
        event({"eventVersion": "", "responseElements": None}),
        False,
    ),
    (
        "null: null does not match a missing field",
        {"detail": {"responseElements": [None]}},
        event({}),
        False,
    ),
    # LocalStack arrays_empty_null_NEG: an empty array holds no null.
    ("null: null does not match []", {"resources": [None]}, event(resources=[]), False),
    # -- arrays [arrays] ---------------------------------------------------------------------
    (
        "arrays: the guide's example, intersection non-empty",
        {
            "resources": [
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
                "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
                "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f",
            ]
        },
        event(
            resources=[
                "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-"
                "b893-d5978ed4a025:autoScalingGroupName/ASGTerminate",
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
            ]
        ),
        True,
    ),
    (
        "arrays: intersection empty",
        {"resources": ["arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f"]},
        event(resources=["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"]),
        False,
    ),
    (
        "arrays: any element of a detail array",
        {"detail": {"state": ["running"]}},
        event({"state": ["initializing", "running"]}),
        True,
    ),
    (
        "arrays: an empty array matches no value",
        {"detail": {"state": ["running"]}},
        event({"state": []}),
        False,
    ),
    # Ruler "JSON Array Matching": fields of objects in different elements never combine.
    (
        "ruler: object fields inside an array element",
        {"detail": {"employees": {"firstName": ["Anna"]}}},
        event(
            {
                "employees": [
                    {"firstName": "John", "lastName": "Doe"},
                    {"firstName": "Anna", "lastName": "Smith"},
                    {"firstName": "Peter", "lastName": "Jones"},
                ]
            }
        ),
        True,
    ),
    (
        "ruler: values from different elements never combine",
        {"detail": {"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}},
        event(
            {
                "employees": [
                    {"firstName": "John", "lastName": "Doe"},
                    {"firstName": "Anna", "lastName": "Smith"},
                    {"firstName": "Peter", "lastName": "Jones"},
                ]
            }
        ),
        False,
    ),
    (
        "ruler: values from the same element combine",
        {"detail": {"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}}},
        event(
            {
                "employees": [
                    {"firstName": "John", "lastName": "Doe"},
                    {"firstName": "Anna", "lastName": "Smith"},
                ]
            }
        ),
        True,
    ),
    # -- prefix / suffix [content] -----------------------------------------------------------
    (
        "prefix: the guide's time prefix",
        {"time": [{"prefix": "2017-10-02"}]},
        event(time="2017-10-02T18:43:48Z"),
        True,
    ),
    (
        "prefix: other day",
        {"time": [{"prefix": "2017-10-02"}]},
        event(time="2017-10-03T18:43:48Z"),
        False,
    ),
    ("prefix: only string values", {"detail": {"n": [{"prefix": "12"}]}}, event({"n": 123}), False),
    ("prefix: region is in the US", {"region": [{"prefix": "us-"}]}, event(), True),
    (
        "prefix ignore case: EventB",
        {"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}},
        event({"service": "EVENTBRIDGE"}),
        True,
    ),
    (
        "prefix ignore case: not a prefix",
        {"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}},
        event({"service": "Amazon EventBridge"}),
        False,
    ),
    (
        "suffix: .png",
        {"detail": {"FileName": [{"suffix": ".png"}]}},
        event({"FileName": "photo.png"}),
        True,
    ),
    (
        "suffix: is case-sensitive",
        {"detail": {"FileName": [{"suffix": ".png"}]}},
        event({"FileName": "photo.PNG"}),
        False,
    ),
    (
        "suffix: must end there",
        {"detail": {"FileName": [{"suffix": ".png"}]}},
        event({"FileName": "photo.png.txt"}),
        False,
    ),
    (
        "suffix ignore case: .PNG",
        {"detail": {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}},
        event({"FileName": "photo.PNG"}),
        True,
    ),
    # -- equals-ignore-case, wildcard [content], Ruler ----------------------------------------
    (
        "equals-ignore-case: alice",
        {"detail": {"Name": [{"equals-ignore-case": "alice"}]}},
        event({"Name": "ALICE"}),
        True,
    ),
    (
        "equals-ignore-case: whole value",
        {"detail": {"Name": [{"equals-ignore-case": "alice"}]}},
        event({"Name": "Alicia"}),
        False,
    ),
    (
        "wildcard: Simple*Service",
        {"source": [{"wildcard": "Simple*Service"}]},
        event(source="SimpleQueueService"),
        True,
    ),
    (
        "wildcard: * matches nothing too",
        {"source": [{"wildcard": "Simple*Service"}]},
        event(source="SimpleService"),
        True,
    ),
    (
        "wildcard: anchored at both ends",
        {"source": [{"wildcard": "Simple*Service"}]},
        event(source="SimpleQueueServices"),
        False,
    ),
    (
        "wildcard: * spans /",
        {"detail": {"path": [{"wildcard": "dir/*.png"}]}},
        event({"path": "dir/a/b.png"}),
        True,
    ),
    (
        "ruler: \\* is a literal asterisk",
        {"detail": {"x": [{"wildcard": "a\\*b"}]}},
        event({"x": "a*b"}),
        True,
    ),
    (
        "ruler: \\* matches only an asterisk",
        {"detail": {"x": [{"wildcard": "a\\*b"}]}},
        event({"x": "axb"}),
        False,
    ),
    # -- anything-but [content] --------------------------------------------------------------
    (
        "anything-but: other string",
        {"detail": {"state": [{"anything-but": "initializing"}]}},
        event({"state": "running"}),
        True,
    ),
    (
        "anything-but: that string",
        {"detail": {"state": [{"anything-but": "initializing"}]}},
        event({"state": "initializing"}),
        False,
    ),
    (
        "anything-but: number",
        {"detail": {"x-limit": [{"anything-but": 123}]}},
        event({"x-limit": 124}),
        True,
    ),
    (
        "anything-but: that number",
        {"detail": {"x-limit": [{"anything-but": 123}]}},
        event({"x-limit": 123}),
        False,
    ),
    (
        "anything-but: list of strings",
        {"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}},
        event({"state": "overloaded"}),
        False,
    ),
    (
        "anything-but: not in the list",
        {"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}},
        event({"state": "running"}),
        True,
    ),
    (
        "anything-but: list of numbers",
        {"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}},
        event({"x-limit": 200}),
        False,
    ),
    (
        "anything-but: not in the numbers",
        {"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}},
        event({"x-limit": 201}),
        True,
    ),
    # LocalStack content_anything_but_string_missing_NEG / _null: needs the field; null is "other".
    (
        "anything-but: a missing field",
        {"detail": {"state": [{"anything-but": "initializing"}]}},
        event({}),
        False,
    ),
    (
        "anything-but: null is anything but",
        {"detail": {"state": [{"anything-but": "initializing"}]}},
        event({"state": None}),
        True,
    ),
    # [arrays] + anything-but: an array field matches when any element does.
    (
        "anything-but: array with another element",
        {"detail": {"state": [{"anything-but": "a"}]}},
        event({"state": ["a", "b"]}),
        True,
    ),
    (
        "anything-but: array of only that value",
        {"detail": {"state": [{"anything-but": "a"}]}},
        event({"state": ["a", "a"]}),
        False,
    ),
    (
        "anything-but prefix: init",
        {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}},
        event({"state": "initializing"}),
        False,
    ),
    (
        "anything-but prefix: other",
        {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}},
        event({"state": "running"}),
        True,
    ),
    (
        "anything-but prefix list",
        {"region": [{"anything-but": {"prefix": ["us-", "eu-"]}}]},
        event(region="eu-west-1"),
        False,
    ),
    (
        "anything-but suffix: .png",
        {"detail": {"FileName": [{"anything-but": {"suffix": ".png"}}]}},
        event({"FileName": "a.png"}),
        False,
    ),
    (
        "anything-but suffix: other",
        {"detail": {"FileName": [{"anything-but": {"suffix": ".png"}}]}},
        event({"FileName": "a.txt"}),
        True,
    ),
    (
        "anything-but ignore case",
        {"detail": {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]}},
        event({"state": "INITIALIZING"}),
        False,
    ),
    (
        "anything-but ignore case: other",
        {"detail": {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]}},
        event({"state": "running"}),
        True,
    ),
    (
        "anything-but ignore case list",
        {
            "detail": {
                "state": [{"anything-but": {"equals-ignore-case": ["Stopped", "OVERLOADED"]}}]
            }
        },
        event({"state": "overloaded"}),
        False,
    ),
    (
        "anything-but wildcard: */lib/*",
        {"detail": {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}},
        event({"FilePath": "/usr/lib/x.so"}),
        False,
    ),
    (
        "anything-but wildcard: other",
        {"detail": {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}},
        event({"FilePath": "/usr/bin/x"}),
        True,
    ),
    # -- numeric [content]: the guide's example event values c-count 5, d-count 7, x-limit 301.8
    (
        "numeric: the guide's ranges",
        {
            "detail": {
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"numeric": ["=", 3.018e2]}],
            }
        },
        event({"c-count": 5, "d-count": 7, "x-limit": 301.8}),
        True,
    ),
    (
        "numeric: > 0 excludes 0",
        {"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}},
        event({"c-count": 0}),
        False,
    ),
    (
        "numeric: <= 5 excludes 6",
        {"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}},
        event({"c-count": 6}),
        False,
    ),
    (
        "numeric: < 10 excludes 10",
        {"detail": {"d-count": [{"numeric": ["<", 10]}]}},
        event({"d-count": 10}),
        False,
    ),
    (
        "numeric: >= includes the bound",
        {"detail": {"n": [{"numeric": [">=", 0, "<", 1]}]}},
        event({"n": 0}),
        True,
    ),
    (
        "numeric: fractions",
        {"detail": {"n": [{"numeric": [">=", 0, "<", 1]}]}},
        event({"n": 0.999999}),
        True,
    ),
    (
        "numeric: = compares values",
        {"detail": {"x-limit": [{"numeric": ["=", 3.018e2]}]}},
        event({"x-limit": 301.80}),
        True,
    ),
    (
        "numeric: only JSON numbers",
        {"detail": {"c-count": [{"numeric": [">", 0]}]}},
        event({"c-count": "5"}),
        False,
    ),
    (
        "numeric: any element of an array",
        {"detail": {"n": [{"numeric": [">", 10]}]}},
        event({"n": [1, 20]}),
        True,
    ),
    # -- cidr [content]; IPv6 from LocalStack content_ip_address_v6 ----------------------------
    (
        "cidr: 10.0.0.0/24 contains .255",
        {"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}},
        event({"sourceIPAddress": "10.0.0.255"}),
        True,
    ),
    (
        "cidr: 10.0.0.0/24 excludes 10.0.1.1",
        {"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}},
        event({"sourceIPAddress": "10.0.1.1"}),
        False,
    ),
    (
        "cidr: IPv6 /64",
        {"detail": {"sourceIPAddress": [{"cidr": "2001:db8:1234:1a00::/64"}]}},
        event({"sourceIPAddress": "2001:0db8:1234:1a00:0000:0000:0000:0000"}),
        True,
    ),
    (
        "cidr: IPv6 outside",
        {"detail": {"sourceIPAddress": [{"cidr": "2001:db8:1234:1a00::/64"}]}},
        event({"sourceIPAddress": "2001:db8:1234:1b00::1"}),
        False,
    ),
    (
        "cidr: not an address",
        {"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}},
        event({"sourceIPAddress": "bad-ip"}),
        False,
    ),
    # -- exists [content]: only leaves count ---------------------------------------------------
    (
        "exists false: field absent",
        {"detail": {"c-count": [{"exists": False}]}},
        event({"state": ["initializing", "running"]}),
        True,
    ),
    (
        "exists false: field present",
        {"detail": {"c-count": [{"exists": False}]}},
        event({"c-count": 5}),
        False,
    ),
    (
        "exists false: an object is not a leaf",
        {"detail": {"c-count": [{"exists": False}]}},
        event({"state": ["initializing", "running"], "c-count": {"c1": 100}}),
        True,
    ),
    (
        "exists true: field present",
        {"detail": {"description": [{"exists": True}]}},
        event({"description": "x"}),
        True,
    ),
    (
        "exists true: field absent",
        {"detail": {"description": [{"exists": True}]}},
        event({}),
        False,
    ),
    (
        "exists true: an object is not a leaf",
        {"detail": {"c-count": [{"exists": True}]}},
        event({"c-count": {"c1": 100}}),
        False,
    ),
    (
        "exists true: an empty array has no leaf",
        {"detail": {"tags": [{"exists": True}]}},
        event({"tags": []}),
        False,
    ),
    (
        "exists false: an empty array has no leaf",
        {"detail": {"tags": [{"exists": False}]}},
        event({"tags": []}),
        True,
    ),
    (
        "exists true: a non-empty array",
        {"detail": {"tags": [{"exists": True}]}},
        event({"tags": ["a"]}),
        True,
    ),
    # -- $or [content], Ruler "The $or Primitive" ------------------------------------------------
    (
        "$or: the guide's numeric alternatives (one holds)",
        {
            "detail": {
                "$or": [
                    {"c-count": [{"numeric": [">", 0, "<=", 5]}]},
                    {"d-count": [{"numeric": ["<", 10]}]},
                    {"x-limit": [{"numeric": ["=", 3.018e2]}]},
                ]
            }
        },
        event({"c-count": 50, "d-count": 50, "x-limit": 301.8}),
        True,
    ),
    (
        "$or: none holds",
        {
            "detail": {
                "$or": [
                    {"c-count": [{"numeric": [">", 0, "<=", 5]}]},
                    {"d-count": [{"numeric": ["<", 10]}]},
                ]
            }
        },
        event({"c-count": 50, "d-count": 50}),
        False,
    ),
    (
        "ruler $or: source && (metricName || namespace)",
        {
            "source": ["aws.cloudwatch"],
            "$or": [
                {"metricName": ["CPUUtilization", "ReadLatency"]},
                {"namespace": ["AWS/EC2", "AWS/ES"]},
            ],
        },
        event(source="aws.cloudwatch", namespace="AWS/ES"),
        True,
    ),
    (
        "ruler $or: the And outside still applies",
        {
            "source": ["aws.cloudwatch"],
            "$or": [
                {"metricName": ["CPUUtilization", "ReadLatency"]},
                {"namespace": ["AWS/EC2", "AWS/ES"]},
            ],
        },
        event(source="aws.ec2", namespace="AWS/ES"),
        False,
    ),
    (
        "ruler $or: an And inside an alternative",
        {
            "source": ["aws.cloudwatch"],
            "$or": [
                {"metricName": ["CPUUtilization"]},
                {"metricType": ["MetricType"], "namespace": ["AWS/EC2"]},
            ],
        },
        event(source="aws.cloudwatch", metricType="MetricType", namespace="AWS/ES"),
        False,
    ),
]


@pytest.mark.parametrize(
    ("pattern", "candidate", "expected"),
    [pytest.param(p, e, x, id=name) for name, p, e, x in CASES],
)
def test_test_event_pattern_semantics(
    events: Any, pattern: dict[str, Any], candidate: dict[str, Any], expected: bool
) -> None:
    answer = events.test_event_pattern(
        EventPattern=json.dumps(pattern), Event=json.dumps(candidate)
    )
    assert answer["Result"] is expected


@pytest.mark.parametrize(
    ("pattern", "reason", "where"),
    [
        # Messages as EventBridge words them (LocalStack records these against AWS).
        ('{"source": "aws.ec2"}', '"source" must be an object or an array', "line: 1, column: 13"),
        ('{"resources": []}', "Empty arrays are not allowed", "line: 1, column: 17"),
        (
            '{"detail": {"c-count": [{"numeric": [">", 0, ">", 0]}]}}',
            "Bad numeric range operator: >",
            "line: 1, column: 49",
        ),
        ('{"my_key": [{"EXISTS": true}]}', "Unrecognized match type EXISTS", "line: 1, column: 28"),
        (
            '{"time": [{"prefix": ["2022-07-13"]}]}',
            "prefix match pattern must be a string",
            "column: 23",
        ),
        ('{"ip": [{"cidr": "xx.11.xx/24"}]}', "Nonstandard IP address: xx.11.xx", None),
        ('{"source": [', "Unexpected end-of-input", "line: 1"),
    ],
)
def test_bad_patterns_say_what_and_where(
    events: Any, pattern: str, reason: str, where: str | None
) -> None:
    with pytest.raises(events.exceptions.InvalidEventPatternException) as caught:
        events.test_event_pattern(EventPattern=pattern, Event=json.dumps(EC2_EVENT))
    message = caught.value.response["Error"]["Message"]
    assert message.startswith(f"Event pattern is not valid. Reason: {reason}")
    if where is not None:
        assert where in message


@pytest.mark.parametrize(
    "candidate",
    [
        "not json",
        "[]",
        json.dumps({k: v for k, v in EC2_EVENT.items() if k != "detail-type"}),
        json.dumps({k: v for k, v in EC2_EVENT.items() if k != "id"}),
    ],
)
def test_event_must_be_a_complete_event(events: Any, candidate: str) -> None:
    with pytest.raises(ClientError) as caught:
        events.test_event_pattern(EventPattern='{"source": ["aws.ec2"]}', Event=candidate)
    assert caught.value.response["Error"] == {
        "Code": "ValidationException",
        "Message": "Parameter Event is not valid.",
    }


def test_resources_may_be_left_out_of_the_event(events: Any) -> None:
    # Documented as required, accepted by EventBridge without it (LocalStack, against AWS).
    candidate = {k: v for k, v in EC2_EVENT.items() if k != "resources"}
    answer = events.test_event_pattern(
        EventPattern='{"source": ["aws.ec2"]}', Event=json.dumps(candidate)
    )
    assert answer["Result"] is True


# One rule per operator; the comment says whether EVENT below must match it.
OPERATOR_RULES: dict[str, dict[str, Any]] = {
    "exact": {"detail": {"state": ["running"]}},  # match
    "number": {"detail": {"count": [5]}},  # match
    "null": {"detail": {"gone": [None]}},  # match
    "prefix": {"detail": {"state": [{"prefix": "run"}]}},  # match
    "prefix-ic": {"detail": {"state": [{"prefix": {"equals-ignore-case": "RUN"}}]}},  # match
    "suffix": {"detail": {"file": [{"suffix": ".png"}]}},  # match
    "suffix-ic": {"detail": {"file": [{"suffix": {"equals-ignore-case": ".PNG"}}]}},  # match
    "equals-ic": {"detail": {"state": [{"equals-ignore-case": "RUNNING"}]}},  # match
    "wildcard": {"detail": {"file": [{"wildcard": "dir/*.png"}]}},  # match
    "anything-but": {"detail": {"state": [{"anything-but": ["stopped", "pending"]}]}},  # match
    "anything-but-prefix": {"detail": {"state": [{"anything-but": {"prefix": "run"}}]}},  # no
    "anything-but-suffix": {"detail": {"file": [{"anything-but": {"suffix": ".jpg"}}]}},  # match
    "anything-but-ic": {
        "detail": {"state": [{"anything-but": {"equals-ignore-case": "RUNNING"}}]}
    },  # no
    "anything-but-wildcard": {"detail": {"file": [{"anything-but": {"wildcard": "*.png"}}]}},  # no
    "numeric": {"detail": {"count": [{"numeric": [">", 0, "<=", 5]}]}},  # match
    "numeric-miss": {"detail": {"count": [{"numeric": [">", 5]}]}},  # no
    "cidr": {"detail": {"ip": [{"cidr": "10.0.0.0/24"}]}},  # match
    "cidr-v6": {"detail": {"ip6": [{"cidr": "2001:db8::/32"}]}},  # match
    "exists": {"detail": {"count": [{"exists": True}]}},  # match
    "not-exists": {"detail": {"missing": [{"exists": False}]}},  # match
    "exists-miss": {"detail": {"missing": [{"exists": True}]}},  # no
    "or": {"$or": [{"detail": {"state": ["stopped"]}}, {"detail": {"count": [5]}}]},  # match
    "or-miss": {"$or": [{"detail": {"state": ["stopped"]}}, {"detail": {"count": [6]}}]},  # no
    "array-elements": {"detail": {"people": {"first": ["Anna"], "last": ["Smith"]}}},  # match
    "array-cross": {"detail": {"people": {"first": ["Anna"], "last": ["Doe"]}}},  # no
}
NOT_MATCHING = {
    "anything-but-prefix",
    "anything-but-ic",
    "anything-but-wildcard",
    "numeric-miss",
    "exists-miss",
    "or-miss",
    "array-cross",
}
EVENT_DETAIL = {
    "state": "running",
    "count": 5,
    "gone": None,
    "file": "dir/a.png",
    "ip": "10.0.0.7",
    "ip6": "2001:db8:1::1",
    "people": [{"first": "John", "last": "Doe"}, {"first": "Anna", "last": "Smith"}],
}


def test_rules_with_every_operator_route_put_events(events: Any, live: Live, uid: str) -> None:
    """PutRule accepts each operator, DescribeRule returns the pattern as given, and PutEvents
    routes through the compiled matcher to exactly the rules TestEventPattern says match."""
    bus = f"ops-{uid}"
    events.create_event_bus(Name=bus)
    for name, pattern in OPERATOR_RULES.items():
        text = json.dumps(pattern)
        events.put_rule(Name=name, EventBusName=bus, EventPattern=text)
        assert events.describe_rule(Name=name, EventBusName=bus)["EventPattern"] == text
        events.put_targets(
            Rule=name,
            EventBusName=bus,
            Targets=[{"Id": "log", "Arn": "arn:smokehouse:handler:log"}],
        )
    entry = {"Source": "test", "DetailType": "ops", "Detail": json.dumps(EVENT_DETAIL)}
    answer = events.put_events(Entries=[{**entry, "EventBusName": bus}])
    assert answer["FailedEntryCount"] == 0
    event_id = answer["Entries"][0]["EventId"]
    with live.session() as session:
        routed = set(
            session.scalars(select(Delivery.rule_name).where(Delivery.event_id == event_id))
        )
        stored = session.get(Event, event_id)
        assert stored is not None
        envelope = stored.envelope
    assert routed == set(OPERATOR_RULES) - NOT_MATCHING
    for name, pattern in OPERATOR_RULES.items():  # the two paths agree
        result = events.test_event_pattern(
            EventPattern=json.dumps(pattern), Event=json.dumps(envelope)
        )
        assert result["Result"] is (name not in NOT_MATCHING), name


def test_a_bad_pattern_creates_nothing_and_changes_nothing(events: Any, uid: str) -> None:
    name = f"bad-{uid}"
    with pytest.raises(events.exceptions.InvalidEventPatternException) as caught:
        events.put_rule(Name=name, EventPattern='{"detail": {"n": [{"numeric": [">", "x"]}]}}')
    assert caught.value.response["Error"]["Message"].startswith(
        "Event pattern is not valid. Reason: "
    )
    assert "line: 1, column: " in caught.value.response["Error"]["Message"]
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_rule(Name=name)
    assert events.list_rules(NamePrefix=name)["Rules"] == []

    events.put_rule(Name=name, EventPattern='{"source": ["good"]}')
    with pytest.raises(events.exceptions.InvalidEventPatternException):
        events.put_rule(Name=name, EventPattern='{"source": "bad"}', State="DISABLED")
    rule = events.describe_rule(Name=name)
    assert (rule["EventPattern"], rule["State"]) == ('{"source": ["good"]}', "ENABLED")
