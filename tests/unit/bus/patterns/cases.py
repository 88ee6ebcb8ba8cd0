"""Pattern/event pairs with the result EventBridge gives, from public sources.

``docs``: the EventBridge user guide (content filtering, arrays, null values, exists);
``ruler``: aws/event-ruler's README; ``ls``: LocalStack's event pattern templates, which are
recorded against AWS's ``TestEventPattern`` (the name is the template's, ``_NEG`` = no match).
"""

from __future__ import annotations

from typing import Any

EC2_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "012345679012",
    "time": "2017-10-02T16:24:49Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
    "detail": {
        "c-count": 5,
        "d-count": 3,
        "x-limit": 301.8,
        "source-ip": "10.0.0.33",
        "instance-id": "i-000000aaaaaa00000",
        "state": "running",
    },
}

NULL_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
    "detail-type": "EC2 Instance Launch Successful",
    "source": "aws.autoscaling",
    "account": "123456789012",
    "time": "2015-11-11T21:31:47Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {"eventVersion": "", "responseElements": None},
}

EMPLOYEES: dict[str, Any] = {
    "employees": [
        {"firstName": "John", "lastName": "Doe"},
        {"firstName": "Anna", "lastName": "Smith"},
        {"firstName": "Peter", "lastName": "Jones"},
    ]
}


def _d(**detail: Any) -> dict[str, Any]:
    return {"detail": detail}


CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # -- ruler README / docs: the EC2 example ----------------------------------------------
    (
        "ruler-simple",
        {
            "detail-type": ["EC2 Instance State-change Notification"],
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
            "detail": {"state": ["initializing", "running"]},
        },
        EC2_EVENT,
        True,
    ),
    ("docs-prefix", {"time": [{"prefix": "2017-10-02"}]}, EC2_EVENT, True),
    ("docs-prefix-miss", {"time": [{"prefix": "2017-10-03"}]}, EC2_EVENT, False),
    ("ruler-suffix", {"source": [{"suffix": "ec2"}]}, EC2_EVENT, True),
    ("ruler-equals-ignore-case", {"source": [{"equals-ignore-case": "AWS.EC2"}]}, EC2_EVENT, True),
    ("ruler-wildcard", {"source": [{"wildcard": "aws.*"}]}, EC2_EVENT, True),
    (
        "ruler-numeric",
        {
            "detail": {
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"numeric": ["=", 3.018e2]}],
            }
        },
        EC2_EVENT,
        True,
    ),
    ("ruler-numeric-miss", {"detail": {"c-count": [{"numeric": [">", 5]}]}}, EC2_EVENT, False),
    ("ruler-cidr", {"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}, EC2_EVENT, True),
    ("ruler-cidr-miss", {"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}, EC2_EVENT, False),
    ("ruler-exists", {"detail": {"c-count": [{"exists": True}]}}, EC2_EVENT, True),
    ("ruler-exists-false", {"detail": {"c-count": [{"exists": False}]}}, EC2_EVENT, False),
    ("ruler-absent", {"detail": {"nope": [{"exists": False}]}}, EC2_EVENT, True),
    (
        "ruler-complex",
        {
            "time": [{"prefix": "2017-10-02"}],
            "detail": {
                "state": [{"anything-but": "initializing"}],
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"anything-but": [100, 200, 300]}],
                "source-ip": [{"cidr": "10.0.0.0/8"}],
            },
        },
        EC2_EVENT,
        True,
    ),
    (
        "ruler-or",
        {"source": ["aws.ec2"], "$or": [{"detail": {"state": ["x"]}}, {"region": ["us-east-1"]}]},
        EC2_EVENT,
        True,
    ),
    (
        "ruler-or-miss",
        {"source": ["aws.ec2"], "$or": [{"detail": {"state": ["x"]}}, {"region": ["eu-west-1"]}]},
        EC2_EVENT,
        False,
    ),
    # -- exists only works on leaves (docs) ------------------------------------------------
    (
        "docs-exists-false-on-object",
        {"detail": {"c-count": [{"exists": False}]}},
        {"detail": {"state": ["initializing", "running"], "c-count": {"c1": 100}}},
        True,
    ),
    (
        "exists-true-on-object",
        {"detail": {"c-count": [{"exists": True}]}},
        {"detail": {"c-count": {"c1": 100}}},
        False,
    ),
    ("ls-exists_list_empty_NEG", {"resources": [{"exists": True}]}, NULL_EVENT, False),
    ("exists-false-on-empty-array", {"resources": [{"exists": False}]}, NULL_EVENT, True),
    ("exists-true-on-null", {"detail": {"responseElements": [{"exists": True}]}}, NULL_EVENT, True),
    (
        "ls-exists_dynamodb_NEG",
        {"dynamodb": {"presentKey": [{"exists": True}]}},
        {"dynamodb": {"id": {"S": "test1234"}, "presentKey": {"S": "test123"}}},
        False,
    ),
    (
        "ls-list_within_dict",
        {"detail": {"automations": {"id": [{"exists": True}]}}},
        _d(automations=[{"key1": "value1"}, {"id": "match-does-exist"}, {"key2": "value2"}]),
        True,
    ),
    # -- null and empty strings (docs) -----------------------------------------------------
    ("docs-empty-string", {"detail": {"eventVersion": [""]}}, NULL_EVENT, True),
    ("docs-null", {"detail": {"responseElements": [None]}}, NULL_EVENT, True),
    ("null-is-not-empty", {"detail": {"responseElements": [""]}}, NULL_EVENT, False),
    ("empty-is-not-null", {"detail": {"eventVersion": [None]}}, NULL_EVENT, False),
    ("null-is-not-missing", {"detail": {"missing": [None]}}, NULL_EVENT, False),
    ("ls-arrays_empty_null_NEG", {"resources": [None]}, NULL_EVENT, False),
    # -- arrays (docs, ruler) --------------------------------------------------------------
    (
        "ls-arrays",
        {
            "resources": [
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
                "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
            ]
        },
        {
            "resources": [
                "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x",
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
            ]
        },
        True,
    ),
    (
        "ls-arrays_NEG",
        {"resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"]},
        {"resources": ["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x"]},
        False,
    ),
    ("ruler-array-objects", {"employees": {"firstName": ["Anna"]}}, EMPLOYEES, True),
    (
        "ruler-array-consistency",
        {"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}},
        EMPLOYEES,
        False,
    ),
    (
        "ruler-array-consistent",
        {"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}},
        EMPLOYEES,
        True,
    ),
    (
        "ruler-nested-arrays",
        {"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}},
        {
            "employees": [
                [
                    {"firstName": "John", "lastName": "Doe"},
                    {"firstName": "Anna", "lastName": "Smith"},
                ],
                [{"firstName": "Peter", "lastName": "Jones"}],
            ]
        },
        True,
    ),
    (
        "ruler-nested-arrays-inconsistent",
        {"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}},
        {
            "employees": [
                [
                    {"firstName": "John", "lastName": "Doe"},
                    {"firstName": "Anna", "lastName": "Smith"},
                ],
                [{"firstName": "Peter", "lastName": "Jones"}],
            ]
        },
        False,
    ),
    (
        "array-absent-in-same-element",
        {"employees": {"firstName": ["Anna"], "zz": [{"exists": False}]}},
        {"employees": [{"firstName": "Anna"}, {"zz": 1}]},
        True,
    ),
    (
        "array-present-in-same-element",
        {"employees": {"firstName": ["Anna"], "zz": [{"exists": False}]}},
        {"employees": [{"firstName": "Anna", "zz": 1}, {"firstName": "Bob"}]},
        False,
    ),
    # -- anything-but (docs, LocalStack) ---------------------------------------------------
    (
        "ls-anything_but_string_null",
        _d(state=[{"anything-but": "initializing"}]),
        _d(state=None),
        True,
    ),
    ("ls-anything_but_string_missing_NEG", _d(state=[{"anything-but": "x"}]), _d(other=1), False),
    ("ls-anything_but_number_zero", _d(x=[{"anything-but": 0}]), _d(x=789), True),
    ("anything-but-number", _d(x=[{"anything-but": [100, 200]}]), _d(x=200.0), False),
    ("anything-but-number-vs-string", _d(x=[{"anything-but": [100]}]), _d(x="100"), True),
    ("anything-but-array-some-other", _d(x=[{"anything-but": ["a"]}]), _d(x=["a", "b"]), True),
    (
        "anything-but-array-all-excluded",
        _d(x=[{"anything-but": ["a", "b"]}]),
        _d(x=["a", "b"]),
        False,
    ),
    ("anything-but-empty-array", _d(x=[{"anything-but": ["a"]}]), _d(x=[]), False),
    (
        "ls-anything_prefix_int_value",
        _d(state=[{"anything-but": {"prefix": "init"}}]),
        _d(state=12),
        True,
    ),
    (
        "anything-but-prefix",
        _d(state=[{"anything-but": {"prefix": "init"}}]),
        _d(state="initial"),
        False,
    ),
    ("anything-but-suffix", _d(f=[{"anything-but": {"suffix": ".png"}}]), _d(f="a.jpg"), True),
    (
        "anything-but-suffix-list",
        _d(f=[{"anything-but": {"suffix": [".png", ".jpg"]}}]),
        _d(f="a.jpg"),
        False,
    ),
    (
        "ls-anything_wildcard_int",
        _d(p=[{"anything-but": {"wildcard": "*/dir/*"}}]),
        _d(p=123),
        True,
    ),
    (
        "anything-but-wildcard",
        _d(p=[{"anything-but": {"wildcard": "*/lib/*"}}]),
        _d(p="/usr/lib/x"),
        False,
    ),
    (
        "ls-anything_wildcard_empty",
        _d(p=[{"anything-but": {"wildcard": ""}}]),
        _d(p="dir/init/file"),
        True,
    ),
    (
        "ls-anything_but_ignorecase_list_null",
        _d(state=[{"anything-but": {"equals-ignore-case": ["initializing", "stopped"]}}]),
        _d(state=None),
        True,
    ),
    (
        "anything-but-ignorecase",
        _d(state=[{"anything-but": {"equals-ignore-case": "initializing"}}]),
        _d(state="INITIALIZING"),
        False,
    ),
    (
        "ls-or-anything-but",
        {
            "dynamodb": {
                "NewImage": {"homemade": {"S": [{"anything-but": ["roses"]}, {"exists": False}]}}
            }
        },
        {"dynamodb": {"NewImage": {"homemade": {"S": "ABCD", "N": "1234"}}}},
        True,
    ),
    (
        "ls-or-exists-parent",
        {
            "dynamodb": {
                "NewImage": {"homemade": {"S": [{"anything-but": ["roses"]}, {"exists": False}]}}
            }
        },
        {"dynamodb": {"NewImage": {"purchased": {"N": "789"}}}},
        True,
    ),
    # -- numbers ---------------------------------------------------------------------------
    ("ls-numeric-int-float", {"number": [{"numeric": [">", 100]}]}, {"number": 101.0}, True),
    ("ls-numeric-string_NEG", {"number": [{"numeric": [">", 100]}]}, {"number": "101"}, False),
    ("ls-numeric-null_NEG", {"number": [{"numeric": [">", 100]}]}, {"number": None}, False),
    ("numeric-equality-300", {"n": [300]}, {"n": 3e2}, True),
    ("numeric-equality-300.0", {"n": [300.0]}, {"n": 300}, True),
    ("number-is-not-string", {"n": [300]}, {"n": "300"}, False),
    ("string-is-not-number", {"n": ["300"]}, {"n": 300}, False),
    ("boolean", {"b": [True]}, {"b": True}, True),
    ("boolean-is-not-number", {"b": [True]}, {"b": 1}, False),
    ("number-is-not-boolean", {"b": [1]}, {"b": True}, False),
    ("numeric-on-array", {"n": [{"numeric": [">=", 10]}]}, {"n": [1, 2, 30]}, True),
    # -- strings ---------------------------------------------------------------------------
    (
        "ls-ignorecase_empty_NEG",
        _d(value=[{"equals-ignore-case": ""}]),
        _d(value="test-value"),
        False,
    ),
    (
        "prefix-ignore-case",
        _d(s=[{"prefix": {"equals-ignore-case": "EventB"}}]),
        _d(s="eventbridge"),
        True,
    ),
    ("suffix-ignore-case", _d(f=[{"suffix": {"equals-ignore-case": ".PNG"}}]), _d(f="x.png"), True),
    ("prefix-not-on-number", _d(s=[{"prefix": "1"}]), _d(s=12), False),
    (
        "ls-wildcard-repeating",
        {"FileName": [{"wildcard": "/Users/*/dir/dir/dir/dir/dir/doc.txt"}]},
        {"FileName": "/Users/ls_user/dir/dir/dir/dir/dir/doc.txt"},
        True,
    ),
    ("wildcard-escaped-star", {"f": [{"wildcard": "a\\*b"}]}, {"f": "a*b"}, True),
    ("wildcard-escaped-star-miss", {"f": [{"wildcard": "a\\*b"}]}, {"f": "axb"}, False),
    ("wildcard-empty-run", {"f": [{"wildcard": "a*b*c"}]}, {"f": "abc"}, True),
    (
        "ls-nested_json_NEG",
        {"detail": {"my-key": ["my-value"]}},
        {"detail": '{"my-key": "my-value"}'},
        False,
    ),
    ("ls-key_case_sensitive_NEG", {"my_key": ["x"]}, {"My_key": "x"}, False),
    # -- IP addresses ----------------------------------------------------------------------
    ("cidr-v6", {"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8:1234::1"}, True),
    ("cidr-v6-miss", {"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db9::1"}, False),
    ("cidr-on-number", {"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": 123}, False),
    ("ip-literal-equivalence", {"ip": ["::1"]}, {"ip": "0:0:0:0:0:0:0:1"}, True),
    # -- dots join keys (docs: considerations) ---------------------------------------------
    (
        "ls-dot_joining_pattern",
        _d(**{"state.status": ["running"]}),
        _d(state={"status": "running"}),
        True,
    ),
    (
        "dot-joining-event",
        _d(state={"status": ["running"]}),
        _d(**{"state.status": "running"}),
        True,
    ),
]
