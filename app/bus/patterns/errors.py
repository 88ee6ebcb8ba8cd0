"""The one error type of the pattern package.

EventBridge reports a bad pattern as ``InvalidEventPatternException`` with a message of the form::

    Event pattern is not valid. Reason: "source" must be an object or an array
     at [Source: (String)"{"source": "aws.ec2"}"; line: 1, column: 13]

The reason is event-ruler's (``JsonRuleCompiler``) and the trailing location is the one Jackson's
parser reports for the position it had reached when the rule compiler gave up. Some reasons (for
example a malformed CIDR) come from code outside the parser and carry no location at all.
"""

from __future__ import annotations

PREFIX = "Event pattern is not valid. Reason: "

# Jackson includes at most this many characters of the source text in a location.
_MAX_SNIPPET = 500


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def source_description(text: str) -> str:
    """Jackson's ``(String)"..."`` source description, truncated like Jackson does."""
    total = _utf16_len(text)
    if total <= _MAX_SNIPPET:
        return f'(String)"{text}"'
    snippet = text.encode("utf-16-le")[: _MAX_SNIPPET * 2].decode("utf-16-le", errors="ignore")
    return f'(String)"{snippet}"[truncated {total - _MAX_SNIPPET} chars]'


def location_text(text: str, line: int, column: int) -> str:
    """Jackson's ``JsonLocation.toString()``."""
    return f"[Source: {source_description(text)}; line: {line}, column: {column}]"


class InvalidEventPattern(Exception):
    """A pattern that EventBridge would reject with ``InvalidEventPatternException``.

    ``message`` is the full text (what AWS returns), ``reason`` the part after ``Reason:`` without
    the location, ``line``/``column`` the 1-based position (``None`` when there is none).
    """

    code = "InvalidEventPatternException"

    def __init__(
        self,
        reason: str,
        *,
        location: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        self.location = location
        self.message = PREFIX + reason + (f"\n at {location}" if location else "")
        super().__init__(self.message)

    def __reduce__(self) -> tuple[object, ...]:  # keep it picklable (Celery, multiprocessing)
        return (_rebuild, (self.reason, self.location, self.line, self.column))


def _rebuild(
    reason: str, location: str | None, line: int | None, column: int | None
) -> InvalidEventPattern:
    return InvalidEventPattern(reason, location=location, line=line, column=column)
