"""Shared pieces of the fuzz tests (``tests/security/test_fuzz_*.py``).

* :func:`valid_value` / :func:`invalid_params`: hypothesis strategies built from botocore's model
  of an operation's input shape -- generic code over the model (structure, list, map, string with
  min/max/pattern/enum, integer/long/float/double/boolean/timestamp/blob), never per operation.
* :data:`EXAMPLES` and :data:`FUZZ_SETTINGS`: how many examples each fuzz test runs
  (``SMOKEHOUSE_FUZZ_EXAMPLES``, default small enough for ``make test``; ``make fuzz`` raises it)
  and reproducible settings (derandomized, no example database, no deadline).
* :class:`Tally`: examples and 5xx seen per operation; each test hands its figures to the
  controller through ``user_properties`` and ``tests/security/conftest.py`` prints them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
from botocore.model import ListShape, MapShape, Shape, StructureShape
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from app.aws.validate import _compiled
from app.config import Settings, load_settings
from app.main import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.services import migrated_sqlite, postgres_database, service_port

EXAMPLES: Final = int(os.environ.get("SMOKEHOUSE_FUZZ_EXAMPLES", "5"))

#: Reproducible in CI: the same examples every run, nothing read from or written to a database.
FUZZ_SETTINGS: Final = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)

#: Cap on generated sizes: the model allows 10k-item lists and 256 KiB strings; valid examples
#: stay small, the over-long invalid ones go just past the model's maximum.
_MAX_ITEMS: Final = 3
_MAX_TEXT: Final = 40
_MAX_DEPTH: Final = 4
_INT_RANGE: Final = {"integer": 2**31 - 1, "long": 2**63 - 1}

#: Text a fuzzer should try: NUL and other control characters, surrogate-free astral characters,
#: quotes and JSON/SQL/regex metacharacters, besides ordinary letters.
_NASTY_TEXT: Final = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(string.printable + "\x00\x7f\u2028\ufeff'\"\\%_*{}[]$")),
        st.characters(codec="utf-8"),
    ),
    max_size=_MAX_TEXT,
)


def _bounded(shape: Shape, default_max: int) -> tuple[int, int]:
    low = int(shape.metadata.get("min", 0))
    high = int(shape.metadata.get("max", default_max))
    high = max(low, min(high, low + default_max))
    return low, high


def _string(shape: Shape) -> st.SearchStrategy[str]:
    enum = shape.metadata.get("enum")
    if enum:
        return st.sampled_from(list(enum))
    low, high = _bounded(shape, _MAX_TEXT)
    pattern = shape.metadata.get("pattern")
    compiled = _compiled(pattern) if pattern else None
    if compiled is not None:
        # Values of the pattern, cut to the model's length: mostly valid; a cut that breaks the
        # pattern is one more invalid value, which the endpoint must refuse just as cleanly.
        return st.from_regex(compiled, fullmatch=True).map(lambda text: text[:high]).filter(
            lambda text: len(text) >= low
        ) | st.text(string.ascii_letters + string.digits, min_size=max(low, 1), max_size=high)
    return st.text(min_size=low, max_size=high) | _NASTY_TEXT.filter(
        lambda t: low <= len(t) <= high
    )


def _number(shape: Shape) -> st.SearchStrategy[Any]:
    kind = shape.type_name
    if kind in ("float", "double"):
        return st.floats(
            min_value=shape.metadata.get("min"),
            max_value=shape.metadata.get("max"),
            allow_nan=False,
            allow_infinity=False,
        )
    bound = _INT_RANGE[kind]
    return st.integers(
        min_value=int(shape.metadata.get("min", -bound)),
        max_value=int(shape.metadata.get("max", bound)),
    )


def valid_value(shape: Shape, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of ``shape`` within the model's constraints (best effort for patterns)."""
    kind = shape.type_name
    if isinstance(shape, StructureShape):
        required = set(shape.required_members)
        deep = depth >= _MAX_DEPTH
        return st.fixed_dictionaries(
            {
                name: valid_value(m, depth + 1)
                for name, m in shape.members.items()
                if name in required
            },
            optional={}
            if deep
            else {
                name: valid_value(m, depth + 1)
                for name, m in shape.members.items()
                if name not in required
            },
        )
    if isinstance(shape, ListShape):
        low, high = _bounded(shape, _MAX_ITEMS)
        return st.lists(valid_value(shape.member, depth + 1), min_size=low, max_size=high)
    if isinstance(shape, MapShape):
        low, high = _bounded(shape, _MAX_ITEMS)
        return st.dictionaries(
            valid_value(shape.key, depth + 1),
            valid_value(shape.value, depth + 1),
            min_size=low,
            max_size=high,
        )
    if kind == "string":
        return _string(shape)
    if kind in ("integer", "long", "float", "double"):
        return _number(shape)
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return st.integers(0, 4_102_444_800) | st.floats(0, 4_102_444_800, allow_nan=False)
    if kind == "blob":
        return st.binary(max_size=_MAX_TEXT).map(lambda b: base64.b64encode(b).decode())
    return st.none()


#: A JSON value of another type than each shape type: the body cannot be read as the shape.
_WRONG_TYPE: Final[dict[str, st.SearchStrategy[Any]]] = {
    "string": st.integers() | st.booleans() | st.lists(st.text(max_size=3), max_size=2),
    "blob": st.integers() | st.booleans() | st.dictionaries(st.text(max_size=3), st.none()),
    "integer": st.text(max_size=5)
    | st.booleans()
    | st.floats(allow_nan=False).filter(lambda f: not f.is_integer()),
    "long": st.text(max_size=5) | st.booleans() | st.lists(st.integers(), max_size=2),
    "float": st.text(max_size=5) | st.booleans() | st.lists(st.integers(), max_size=2),
    "double": st.text(max_size=5) | st.booleans() | st.dictionaries(st.text(max_size=3), st.none()),
    "boolean": st.integers() | st.text(max_size=5) | st.lists(st.booleans(), max_size=2),
    "timestamp": st.booleans() | st.lists(st.integers(), max_size=2) | st.just("not a date"),
    "structure": st.integers() | st.text(max_size=5) | st.lists(st.integers(), max_size=2),
    "map": st.integers() | st.text(max_size=5) | st.lists(st.integers(), max_size=2),
    "list": st.integers() | st.text(max_size=5) | st.dictionaries(st.text(max_size=3), st.none()),
}


def _out_of_range(shape: Shape) -> st.SearchStrategy[Any] | None:
    """A value of the right type just outside the model's min/max; ``None`` if unconstrained."""
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    kind = shape.type_name
    options: list[st.SearchStrategy[Any]] = []
    if kind == "string" and "enum" not in shape.metadata:
        if high is not None and high < 300_000:
            options.append(st.integers(high + 1, high + 50).map(lambda n: "a" * n))
        if low:
            options.append(st.integers(0, low - 1).map(lambda n: "a" * n))
    elif kind == "string":
        options.append(st.text(min_size=1, max_size=10).filter(lambda t: t not in shape.enum))
    elif kind in ("integer", "long"):
        if high is not None:
            options.append(st.integers(high + 1, high + 2**40))
        if low is not None:
            options.append(st.integers(low - 2**40, low - 1))
    elif kind in ("float", "double"):
        if high is not None:
            options.append(st.floats(high + 1, high + 1e9))
        if low is not None:
            options.append(st.floats(low - 1e9, low - 1))
    elif kind == "list" and isinstance(shape, ListShape):
        if high is not None and high < 1000:
            options.append(st.just([None] * 0).map(lambda _: _filler(shape.member, high + 1)))
        if low:
            options.append(st.just([]))
    if not options:
        return None
    return st.one_of(options)


def _filler(shape: Shape, count: int) -> list[Any]:
    """``count`` copies of the smallest plausible value of ``shape`` (for over-long lists)."""
    simple = {"string": "a", "integer": 1, "long": 1, "boolean": True, "float": 1.0}
    return [simple.get(shape.type_name, {})] * count


@dataclass(frozen=True)
class Mutation:
    """What makes an invalid request invalid (shown in failures and counted in the summary)."""

    kind: str
    where: str


def invalid_params(shape: StructureShape | None) -> st.SearchStrategy[tuple[Mutation, Any]]:
    """Parameters the endpoint must refuse with a 4xx: valid ones with one member made wrong.

    Members of the wrong type at any depth, required members left out, values just outside the
    model's ranges and lengths, and bodies that are not a JSON object. (Unknown members are not
    here: AWS ignores them, so they belong with the valid requests.)"""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[Mutation, Any]:
        base: dict[str, Any] = draw(valid_value(shape)) if shape is not None else {}
        choices: list[str] = ["not-an-object"]
        if shape is not None and shape.members:
            choices.append("wrong-type")
            if shape.required_members:
                choices.append("missing-required")
            if any(_out_of_range(m) is not None for m in shape.members.values()):
                choices.append("out-of-range")
        kind = draw(st.sampled_from(choices))
        if kind == "not-an-object":
            body = draw(st.lists(st.integers(), max_size=2) | st.text(max_size=5) | st.none())
            return Mutation(kind, "$"), body
        assert shape is not None
        if kind == "missing-required":
            name = draw(st.sampled_from(sorted(shape.required_members)))
            base.pop(name, None)
            if draw(st.booleans()):
                base[name] = None  # JSON null counts as missing, as AWS reads it
            return Mutation(kind, name), base
        if kind == "out-of-range":
            names = sorted(n for n, m in shape.members.items() if _out_of_range(m) is not None)
            name = draw(st.sampled_from(names))
            strategy = _out_of_range(shape.members[name])
            assert strategy is not None
            base[name] = draw(strategy)
            return Mutation(kind, name), base
        path = draw(_member_path(shape, base))
        _set_path(base, path, draw(_WRONG_TYPE[path[-1][1].type_name]))
        return Mutation(kind, ".".join(str(step) for step, _ in path)), base

    return build()


def _member_path(shape: StructureShape, value: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """A path to a member to break: a top-level member, or one inside a structure present in
    ``value`` (so the broken member is certainly read)."""

    @st.composite
    def walk(draw: st.DrawFn) -> list[tuple[str, Shape]]:
        path: list[tuple[str, Shape]] = []
        current: Shape = shape
        node: Any = value
        while True:
            assert isinstance(current, StructureShape)
            name = draw(st.sampled_from(sorted(current.members)))
            member = current.members[name]
            path.append((name, member))
            inner = node.get(name) if isinstance(node, dict) else None
            if (
                isinstance(member, StructureShape)
                and isinstance(inner, dict)
                and member.members
                and draw(st.booleans())
            ):
                current, node = member, inner
                continue
            return path

    return walk()


def _set_path(params: dict[str, Any], path: list[tuple[str, Shape]], value: Any) -> None:
    node = params
    for name, _ in path[:-1]:
        node = node[name]
    node[path[-1][0]] = value


@dataclass
class Tally:
    """Examples sent and 5xx answers seen, per operation, for the summary."""

    name: str
    examples: int = 0
    server_errors: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def count(self, status: int, kind: str = "") -> None:
        self.examples += 1
        if status >= 500:
            self.server_errors += 1
        if kind:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def report(self, request: pytest.FixtureRequest) -> None:
        """Hand the figures to the controller (works under pytest-xdist)."""
        request.node.user_properties.append(
            (
                "fuzz",
                {
                    "operation": self.name,
                    "examples": self.examples,
                    "5xx": self.server_errors,
                    "kinds": self.kinds,
                },
            )
        )


@contextlib.contextmanager
def fuzzed_app(
    database: str, home: Path, access_keys: str
) -> Iterator[tuple[TestClient, Settings]]:
    """The real app on a fresh migrated SQLite or PostgreSQL database, isolated from the
    developer's environment, for a module of fuzz tests (server errors answered, not raised)."""
    with pytest.MonkeyPatch.context() as patch, contextlib.ExitStack() as stack:
        for name in list(os.environ):
            if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
                patch.delenv(name)
        patch.chdir(home)
        if database == "sqlite":
            database_url = migrated_sqlite(home / "fuzz.db")
        else:
            database_url = stack.enter_context(postgres_database(migrated=True))
        settings = load_settings(
            data_dir=home / "data",
            database_url=database_url,
            access_keys=access_keys,
            log_format="console",
            http_port=service_port(),
            embedded_mqtt_port=service_port(),
            auto_migrate=False,
            secret_key=TEST_SECRET_KEY,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client, settings
