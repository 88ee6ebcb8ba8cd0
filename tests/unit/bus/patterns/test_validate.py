"""validate.py: event-ruler's compile-time checks with AWS's messages, plus the limits.

The ``AWS`` cases are the exact messages AWS returned for these patterns (recorded by
LocalStack's snapshot tests against ``TestEventPattern``), including the Jackson location.
"""

from __future__ import annotations

import pytest

from app.bus.patterns import InvalidEventPattern, PatternLimits, parse_pattern
from app.bus.patterns.validate import check_number, check_range, combinations, parse_cidr

P = "Event pattern is not valid. Reason: "


def loc(text: str, column: int) -> str:
    return f'\n at [Source: (String)"{text}"; line: 1, column: {column}]'


AWS: list[tuple[str, str, int | None, bool]] = [
    # (pattern, reason, column or None, location doubled)
    ('{"int": 42}', '"int" must be an object or an array', 11, False),
    ('{"string": "my-value"}', '"string" must be an object or an array', 13, False),
    ('{"resources": []}', "Empty arrays are not allowed", 17, False),
    ('{"my_key": [{"EXISTS": true}]}', "Unrecognized match type EXISTS", 28, False),
    (
        '{"detail": {"equal": [{"NUMERIC": ["=", 5]}]}}',
        "Unrecognized match type NUMERIC",
        36,
        False,
    ),
    (
        '{"detail": {"c-count": [{"numeric": [">", 0, ">", 0]}]}}',
        "Bad numeric range operator: >",
        49,
        False,
    ),
    (
        '{"detail": {"c-count": [{"numeric": [">", 0, "<"]}]}}',
        "Value of < must be numeric",
        50,
        False,
    ),
    (
        '{"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:**:event-bus/*"}]}',
        "Consecutive wildcard characters at pos 26",
        72,
        False,
    ),
    (
        '{"detail-type": [{"equals-ignore-case": ["ec2 instance state-change notification"]}]}',
        "equals-ignore-case match pattern must be a string",
        42,
        False,
    ),
    (
        '{"detail-type": [{"equals-ignore-case": {"prefix": "ec2"}}]}',
        "equals-ignore-case match pattern must be a string",
        42,
        False,
    ),
    (
        '{"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0"}]}}',
        "Malformed CIDR, one '/' required",
        None,
        False,
    ),
    (
        '{"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/abc"}]}}',
        "Malformed CIDR, mask bits must be an integer",
        None,
        False,
    ),
    (
        '{"detail": {"sourceIPAddress": [{"cidr": "xx.11.xx/24"}]}}',
        "Nonstandard IP address: xx.11.xx",
        None,
        False,
    ),
    (
        '{"detail": {"sourceIPAddress": [{"cidr": "xxxx:db8:1234:1a00::/64"}]}}',
        "Nonstandard IP address: xxxx:db8:1234:1a00::",
        None,
        False,
    ),
    (
        '{"detail": {"sourceIPAddress": [{"cidr": ["bad-type"]}]}}',
        "prefix match pattern must be a string",
        43,
        False,
    ),
    (
        '{"detail": {"state": [{"anything-but": {"equals-ignore-case": 123}}]}}',
        "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported.",
        66,
        False,
    ),
    (
        '{"detail": {"state": [{"anything-but": {"equals-ignore-case": [123, 456]}}]}}',
        "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported.",
        67,
        True,
    ),
    ('{"EventBusArn": [{"wildcard": 123}]}', "wildcard match pattern must be a string", 34, False),
    (
        '{"EventBusArn": [{"wildcard": ["arn:aws:events:us-east-1:**:event-bus/*"]}]}',
        "wildcard match pattern must be a string",
        32,
        False,
    ),
    (
        '{"detail": {"state": [{"anything-but": {"wildcard": [123, "*/dir/*"]}}]}}',
        "wildcard match pattern must be a string",
        57,
        True,
    ),
    (
        '{"detail": {"FilePath": [{"anything-but": {"wildcard": 123}}]}}',
        "wildcard match pattern must be a string",
        59,
        False,
    ),
    (
        '{"detail": {"FileName": [{"anything-but": {"suffix": [123, ".txt"]}}]}}',
        "prefix/suffix match pattern must be a string",
        58,
        True,
    ),
    (
        '{"detail": {"FileName": [{"anything-but": {"suffix": 123}}]}}',
        "prefix/suffix match pattern must be a string",
        57,
        False,
    ),
    (
        '{"detail": {"state": [{"anything-but": {"prefix": [123, "test"]}}]}}',
        "prefix/suffix match pattern must be a string",
        55,
        True,
    ),
    (
        '{"detail": {"state": [{"anything-but": {"prefix": 123}}]}}',
        "prefix/suffix match pattern must be a string",
        54,
        False,
    ),
    ('{"time": [{"prefix": ["2022-07-13"]}]}', "prefix match pattern must be a string", 23, False),
    ('{"time": [{"prefix": 123}]}', "prefix match pattern must be a string", 25, False),
    ('{"FileName": [{"suffix": 123}]}', "suffix match pattern must be a string", 29, False),
    ('{"FileName": [{"suffix": [".png"]}]}', "suffix match pattern must be a string", 27, False),
    (
        '{"detail": {"FileName": [{"anything-but": {"prefix": {"equals-ignore-case": "file"}}}]}}',
        "Value of anything-but must be an array or single string/number value.",
        55,
        False,
    ),
    (
        '{"detail": {"FileName": [{"anything-but": {"suffix": {"equals-ignore-case": ".png"}}}]}}',
        "Value of anything-but must be an array or single string/number value.",
        55,
        False,
    ),
    (
        '{"EventBusArn": [{"wildcard": "*:*:*:*:*:event-bus/*"}]}',
        "Rule is too complex - try using fewer wildcard characters or fewer repeating "
        "character sequences after a wildcard character",
        None,
        False,
    ),
    ('["not", "a", "dict", "but valid json"]', "Filter is not an object", 2, False),
    (
        '{"source":["test.event-pattern"],"detail":{"lenderId":"LenderA"}}',
        '"lenderId" must be an object or an array',
        56,
        False,
    ),
]


@pytest.mark.parametrize(("text", "reason", "column", "doubled"), AWS, ids=[a[1][:40] for a in AWS])
def test_messages_match_aws(text: str, reason: str, column: int | None, doubled: bool) -> None:
    with pytest.raises(InvalidEventPattern) as info:
        parse_pattern(text)
    expected = P + reason
    if column is not None:
        expected += loc(text, column) * (2 if doubled else 1)
    assert info.value.message == expected
    assert info.value.column == column


MIXED = (
    "Inside anything but list, either all values are number or string, mixed type is not supported"
)
RESERVED = " is Ruler reserved fieldName which cannot be used inside $or."

RULER: list[tuple[str, str]] = [
    ("{}", "Empty objects are not allowed"),
    ('{"a": {}}', "Empty objects are not allowed"),
    ('{"a": [[1]]}', "Match value must be String, number, true, false, or null"),
    ('{"a": [{}]}', "Match expression name not found"),
    ('{"a": [{"prefix": "x", "suffix": "y"}]}', "Only one key allowed in match expression"),
    ('{"a": [{"exists": "yes"}]}', "exists match pattern must be either true or false."),
    ('{"a": [{"exactly": 1}]}', "exact match pattern must be a string"),
    ('{"a": [{"numeric": 5}]}', "Value of numeric must be an array."),
    ('{"a": [{"numeric": []}]}', "Invalid member in numeric match: ]"),
    ('{"a": [{"numeric": [5]}]}', "Invalid member in numeric match: 5"),
    ('{"a": [{"numeric": ["!=", 5]}]}', "Unrecognized numeric range operator: !="),
    ('{"a": [{"numeric": ["=", "5"]}]}', "Value of equals must be numeric"),
    ('{"a": [{"numeric": ["=", 5, 6]}]}', "Too many elements in numeric expression"),
    ('{"a": [{"numeric": [">", 5, 6]}]}', "Bad value in numeric range: 6"),
    ('{"a": [{"numeric": [">", 5, "<", 6, 7]}]}', "Too many terms in numeric range expression"),
    ('{"a": [{"numeric": [">", 5], "x": 1}]}', "Too many elements in numeric expression"),
    ('{"a": [{"numeric": [">", 6, "<", 5]}]}', "Bottom must be less than top"),
    ('{"a": [{"numeric": [">", 5e9]}]}', "Bottom must be less than top"),
    ('{"a": [{"numeric": ["<=", 6e9]}]}', "Value must be between -5.0E9 and 5.0E9, inclusive"),
    ('{"a": [{"numeric": ["=", 0.0000001]}]}', "Only values upto 6 decimals are supported"),
    ('{"a": [{"anything-but": {}}]}', "Anything-But expression name not found"),
    ('{"a": [{"anything-but": {"numeric": [1]}}]}', "Unsupported anything-but pattern: numeric"),
    ('{"a": [{"anything-but": null}]}', "Value of anything-but must be an array or single"),
    ('{"a": [{"anything-but": [1, "x"]}]}', MIXED),
    ('{"a": [{"anything-but": []}]}', MIXED),
    ('{"a": [{"anything-but": "x", "b": 1}]}', "Too many elements in numeric expression"),
    ('{"a": [{"anything-but": {"prefix": ""}}]}', "Null prefix/suffix not allowed"),
    ('{"a": [{"prefix": {"x": "y"}}]}', "Unsupported prefix pattern: x"),
    ('{"a": [{"suffix": {}}]}', "Suffix expression name not found"),
    ('{"a": [{"wildcard": "a\\\\q"}]}', "Invalid escape character at pos 2"),
    ('{"$or": {"a": ["x"]}}', "It must be an Array followed with $or."),
    ('{"$or": [{"a": ["x"]}]}', "There must have at least 2 Objects in $or relationship."),
    ('{"$or": [{"a": ["x"]}, ["b"]]}', "Only JSON object is allowed in array of $or relationship."),
    ('{"$or": [{"prefix": ["x"]}, {"b": ["y"]}]}', "prefix" + RESERVED),
    ('{"$or": [{"a": {"numeric": ["x"]}}, {"b": ["y"]}]}', "numeric" + RESERVED),
]  # fmt: skip


@pytest.mark.parametrize(("text", "reason"), RULER, ids=[r[1][:40] for r in RULER])
def test_event_ruler_reasons(text: str, reason: str) -> None:
    with pytest.raises(InvalidEventPattern) as info:
        parse_pattern(text)
    assert info.value.reason.startswith(reason)


def test_anything_but_number_out_of_range_has_no_location() -> None:
    with pytest.raises(InvalidEventPattern) as info:
        parse_pattern('{"a": [{"anything-but": 6e9}]}')
    assert info.value.message == P + "Value must be between -5.0E9 and 5.0E9, inclusive"
    with pytest.raises(InvalidEventPattern) as info:
        parse_pattern('{"a": [{"anything-but": [1, 6e9]}]}')
    assert info.value.column == 32


@pytest.mark.parametrize(
    ("cidr", "reason"),
    [
        ("10.0.0.0/24/", None),  # Java's split drops the trailing empty string
        ("10.0.0.0/-1", "Malformed CIDR, mask bits must not be negative"),
        ("10.0.0.0/32", "IPv4 mask bits must be < 32"),
        ("::/128", "IPv6 mask bits must be < 128"),
        ("10.0.0.256/8", "Invalid IP address: 10.0.0.256"),
        ("010.0.0.1/8", "Invalid IP address: 010.0.0.1"),
        ("1:2:3:4:5:6:7:8:9/64", "Invalid IP address: 1:2:3:4:5:6:7:8:9"),
        ("a/b/c", "Malformed CIDR, one '/' required"),
    ],
)
def test_cidr_checks(cidr: str, reason: str | None) -> None:
    if reason is None:
        parse_pattern({"ip": [{"cidr": cidr}]})
        return
    with pytest.raises(InvalidEventPattern) as info:
        parse_pattern({"ip": [{"cidr": cidr}]})
    assert info.value.reason == reason


def test_parse_cidr_range_starts_at_the_written_address() -> None:
    assert parse_cidr("10.0.0.5/24") == (32, 0x0A000005, 0x0A0000FF)
    assert parse_cidr("::ffff:a00:1/24") == (32, 0x0A000001, 0x0A0000FF)  # mapped: IPv4
    with pytest.raises(ValueError, match="IPv4 mask bits must be < 32"):
        parse_cidr("::ffff:a00:1/120")
    bits, lo, hi = parse_cidr("2001:db8::/32")
    assert bits == 128
    assert hi - lo == 2**96 - 1


def test_numbers() -> None:
    assert check_number("5e9") == 5_000_000_000
    assert check_number("-5000000000") == -5_000_000_000
    assert check_number("1.123456")
    assert check_number("1.1234560000")
    with pytest.raises(ValueError, match="between"):
        check_number("5000000000.000001")
    with pytest.raises(ValueError, match="6 decimals"):
        check_number("1.1234567")
    check_range("0", "5")
    with pytest.raises(ValueError, match="Bottom"):
        check_range("5", "5")


def test_accepted_patterns() -> None:
    for text in [
        '{"a": ["x", 1, 1.5, true, false, null]}',
        '{"a": [{"prefix": ""}, {"suffix": ""}, {"wildcard": ""}, {"equals-ignore-case": ""}]}',
        '{"a": [{"numeric": [">=", -5e9, "<=", 4999999999.999999]}]}',
        '{"a": [{"numeric": ["<", 5e9]}]}',
        '{"a": [{"anything-but": {"prefix": ["a", "b"]}}, {"anything-but": {"wildcard": []}}]}',
        '{"a": [{"exactly": "x"}, {"cidr": "::/0"}, {"exists": false}]}',
        '{"$or": [{"a": ["x"]}, {"b": ["y"]}], "c": {"$or": [{"d": [1]}, {"e": [2]}]}}',
        '{"prefix": ["x"], "numeric": {"exists": [1]}}',  # reserved names are fine outside $or
        '{"a": ["x"]} trailing text is never read',
        '  \n{"a": ["x"]}',
    ]:
        parse_pattern(text)


def test_length_limit() -> None:
    text = '{"a": ["' + "x" * 2038 + '"]}'
    assert len(text) == 2049
    parse_pattern(text.replace("x", "", 1))  # 2048 characters: fine
    with pytest.raises(InvalidEventPattern, match="2049 characters long, the maximum is 2048"):
        parse_pattern(text)
    parse_pattern(text, limits=PatternLimits(max_length=4096))


def test_depth_limit() -> None:
    text = '{"a": ' * 5 + '["x"]' + "}" * 5
    parse_pattern(text)
    with pytest.raises(InvalidEventPattern, match="nesting depth"):
        parse_pattern(text, limits=PatternLimits(max_depth=4))


def test_combination_limit() -> None:
    alternatives = [{"k": [i]} for i in range(2)]
    obj = {f"f{i}": {"$or": alternatives} for i in range(11)}  # 2 ** 11 = 2048
    assert combinations(obj, 10_000) == 2048
    with pytest.raises(InvalidEventPattern, match="Rule is too complex"):
        parse_pattern(obj)
    assert len(parse_pattern(obj, limits=PatternLimits(max_combinations=4096)).branches) == 2048


def test_wildcard_limit_is_configurable() -> None:
    pattern = {"a": [{"wildcard": "*a*b*c*d*e*"}]}
    with pytest.raises(InvalidEventPattern):
        parse_pattern(pattern)
    parse_pattern(pattern, limits=PatternLimits(max_wildcards=6))


def test_syntax_errors_are_invalid_patterns() -> None:
    with pytest.raises(InvalidEventPattern) as info:
        parse_pattern("{'bad': 'quotation'}")
    assert info.value.column == 2
    assert "was expecting double-quote to start field name" in info.value.message
