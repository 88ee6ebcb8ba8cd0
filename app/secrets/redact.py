"""Redaction, the second line of defence: every secret this process stored or resolved is
remembered, and text about to be logged, recorded in workflow history or answered to a caller
has those strings (and anything that looks like a GitLab runner token) replaced by ``****``.

Cheap by design: one compiled alternation, rebuilt only when a new secret is remembered."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

MASK = "****"
#: GitLab runner authentication tokens (``glrt-`` + 20 or more characters).
LOOKS_SECRET = r"glrt-[0-9A-Za-z_\-]{8,}"
MIN_LENGTH = 8  # shorter values are not remembered: masking them would garble ordinary text
LIMIT = 10_000  # the set is bounded; the oldest are forgotten first

_known: dict[str, None] = {}
_lock = threading.Lock()
_pattern: re.Pattern[str] = re.compile(LOOKS_SECRET)


def remember(value: str) -> None:
    global _pattern
    if len(value) < MIN_LENGTH or value in _known:
        return
    with _lock:
        _known[value] = None
        while len(_known) > LIMIT:
            del _known[next(iter(_known))]
        parts = sorted(_known, key=len, reverse=True)
        _pattern = re.compile("|".join([LOOKS_SECRET, *map(re.escape, parts)]))


def forget_all() -> None:
    """Tests only."""
    global _pattern
    with _lock:
        _known.clear()
        _pattern = re.compile(LOOKS_SECRET)


def redact(text: str) -> str:
    return _pattern.sub(MASK, text)


def redact_value(value: Any) -> Any:
    """A JSON-like value with secrets masked in every string (keys included)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    return value


def redact_json(value: Any, dumps: Callable[[Any], str]) -> str:
    """``dumps(value)`` with secrets masked; one regex search when there is none (the usual
    case), so history and outputs pay almost nothing for it."""
    text = dumps(value)
    if _pattern.search(text) is None:
        return text
    return dumps(redact_value(value))


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message (and its formatted exception) before any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if redact(text) != text:
                record.exc_text, record.exc_info = redact(text), None
        return True
