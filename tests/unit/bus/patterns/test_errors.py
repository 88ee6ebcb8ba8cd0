"""errors.py: the InvalidEventPattern exception and Jackson-style locations."""

from __future__ import annotations

import pickle

from app.bus.patterns.errors import InvalidEventPattern, location_text, source_description


def test_message_has_prefix_reason_and_location() -> None:
    e = InvalidEventPattern(
        "x", location='[Source: (String)"{}"; line: 1, column: 2]', line=1, column=2
    )
    assert (
        e.message
        == 'Event pattern is not valid. Reason: x\n at [Source: (String)"{}"; line: 1, column: 2]'
    )
    assert str(e) == e.message
    assert (e.reason, e.line, e.column) == ("x", 1, 2)
    assert e.code == "InvalidEventPatternException"


def test_message_without_location() -> None:
    e = InvalidEventPattern("Malformed CIDR, one '/' required")
    assert e.message == "Event pattern is not valid. Reason: Malformed CIDR, one '/' required"
    assert e.line is None
    assert e.column is None


def test_pickles() -> None:
    e = InvalidEventPattern("why", location="here", line=3, column=4)
    copy = pickle.loads(pickle.dumps(e))
    assert (copy.message, copy.reason, copy.line, copy.column) == (e.message, "why", 3, 4)


def test_source_description_truncates_like_jackson() -> None:
    assert source_description("abc") == '(String)"abc"'
    long = "x" * 600
    assert source_description(long) == f'(String)"{"x" * 500}"[truncated 100 chars]'


def test_source_description_counts_utf16_units() -> None:
    text = "\U0001f600" * 300  # 600 UTF-16 code units
    assert source_description(text).endswith("[truncated 100 chars]")


def test_location_text() -> None:
    assert location_text("{}", 1, 2) == '[Source: (String)"{}"; line: 1, column: 2]'
