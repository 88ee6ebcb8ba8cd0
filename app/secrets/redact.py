"""Redaction, the second line of defence: every secret this process stored or resolved is
remembered, and text about to be logged, recorded in workflow history or answered to a caller
has those strings (and anything that looks like a GitLab runner token) replaced by ``****``.

Cheap by design. Token-like secrets (letters, digits, ``_-.~+``: runner tokens, API keys) are
found by one scan of the text's token-like runs and a set lookup per run, so the cost does not
grow with how many are known; the few others (passwords with spaces or punctuation) go into one
regex alternation. A token-like secret glued to other token characters (``abcSECRET``) is not
found: this layer backs up the secret store, it does not replace it."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

MASK = "****"
#: GitLab runner authentication tokens (``glrt-`` and at least 8 more characters).
LOOKS_SECRET = r"glrt-[0-9A-Za-z_\-]{8,}"
MIN_LENGTH = 8  # shorter values are not remembered: masking them would garble ordinary text
LIMIT = 5_000  # each kind is bounded; the oldest are forgotten first
_TOKEN_CHARS = r"[A-Za-z0-9_\-.~+]"
_TOKENISH = re.compile(f"{_TOKEN_CHARS}+")
_RUNS = re.compile(f"{_TOKEN_CHARS}{{{MIN_LENGTH},}}")

_tokens: dict[str, None] = {}  # token-like secrets (insertion-ordered: oldest first)
_others: dict[str, None] = {}
_lock = threading.Lock()
_pattern: re.Pattern[str] = re.compile(LOOKS_SECRET)


def _bounded(known: dict[str, None], value: str) -> None:
    known[value] = None
    while len(known) > LIMIT:
        del known[next(iter(known))]


def remember(value: str) -> None:
    global _pattern
    if len(value) < MIN_LENGTH or value in _tokens or value in _others:
        return
    with _lock:
        if _TOKENISH.fullmatch(value):
            _bounded(_tokens, value)
            return
        _bounded(_others, value)
        parts = sorted(_others, key=len, reverse=True)
        _pattern = re.compile("|".join([LOOKS_SECRET, *map(re.escape, parts)]))


def forget_all() -> None:
    """Tests only."""
    global _pattern
    with _lock:
        _tokens.clear()
        _others.clear()
        _pattern = re.compile(LOOKS_SECRET)


def _token(match: re.Match[str]) -> str:
    run = match.group()
    return MASK if run in _tokens else run


def redact(text: str) -> str:
    text = _pattern.sub(MASK, text)
    return _RUNS.sub(_token, text) if _tokens else text


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
    """``dumps(value)`` with secrets masked (masked value by value, so the JSON stays valid)."""
    text = dumps(value)
    if redact(text) == text:
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
