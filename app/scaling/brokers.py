"""Which broker a Celery URL names, and the key layout kombu uses for it.

Kept in one place because both the depth probes and message recovery must agree with kombu
byte for byte: Redis lists ``<queue>`` plus one list per priority step ``<queue>\\x06\\x16<n>``
(steps 3, 6, 9; priority 0 is the bare queue), the ``unacked`` hash (delivery tag →
``[payload, exchange, routing_key]``) and its ``unacked_index`` sorted set; the SQLite broker's
``kombu_queue`` / ``kombu_message`` tables.
"""

from __future__ import annotations

from bisect import bisect
from typing import Any, Literal
from urllib.parse import urlsplit

BrokerKind = Literal["redis", "amqp", "sqlite"]

SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
BINDING = "_kombu.binding.%s"


def broker_kind(url: str) -> BrokerKind:
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss"):
        return "redis"
    if scheme in ("amqp", "amqps", "pyamqp"):
        return "amqp"
    if scheme in ("smokehouse+sqlite", "sqla+sqlite"):
        return "sqlite"
    raise ValueError(f"no depth probe for broker scheme {scheme!r}")


def sqlite_path_url(url: str) -> str:
    """``smokehouse+sqlite:///x.db`` → ``sqlite:///x.db`` (what SQLAlchemy understands)."""
    return "sqlite" + url[url.index(":") :]


def priority_step(priority: int) -> int:
    """kombu's Redis ``Channel.priority``: the step a 0-9 priority lands in."""
    return PRIORITY_STEPS[bisect(PRIORITY_STEPS, priority) - 1]


def redis_queue_keys(queue: str) -> list[str]:
    """Every list holding ``queue``'s ready messages, highest priority list last."""
    return [queue if step == 0 else f"{queue}{SEP}{step}" for step in PRIORITY_STEPS]


def redis_key_for(queue: str, payload: dict[str, Any]) -> str:
    """The list a message goes back to, by its priority (kombu's ``_q_for_pri``)."""
    try:
        priority = max(0, min(int(payload["properties"]["priority"]), 9))
    except (KeyError, TypeError, ValueError):
        priority = 0
    step = priority_step(priority)
    return queue if step == 0 else f"{queue}{SEP}{step}"
