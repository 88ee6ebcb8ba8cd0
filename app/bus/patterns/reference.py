"""A deliberately plain matcher, one pattern at a time, used to check the compiled machine.

It shares nothing with the compiler but the validator: it reads the pattern's JSON directly,
flattens the event its own way, and interprets every operator with ordinary Python. The rules
it encodes (from event-ruler, the engine behind EventBridge):

1. the pattern is expanded into alternatives: every ``$or`` multiplies them, a field set twice in
   one alternative keeps its later value, paths are dot-joined keys;
2. the event is flattened into (path, value, array membership) leaves: an array contributes each
   element; a leaf inside an *object or array element* of an array remembers (array, index);
3. an alternative matches if its fields, taken in Java string order of their paths, can each be
   satisfied: by a leaf that one of the field's values/operators accepts and whose membership
   agrees with the leaves already chosen, or - for ``{"exists": false}`` - by there being no
   leaf on that path that agrees with the leaves already chosen.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from app.bus.patterns.pattern import Pattern


def reference_matches(pattern: Pattern | str | Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    if isinstance(pattern, Pattern):
        obj = pattern.to_dict()
    elif isinstance(pattern, str):
        obj = json.loads(pattern)
    else:
        obj = dict(pattern)
    leaves: list[tuple[str, Any, dict[int, int]]] = []
    _flatten(event, [], {}, leaves, [0])
    for alternative in _alternatives(obj, []):
        order = sorted(alternative, key=lambda p: p.encode("utf-16-be", "surrogatepass"))
        if _satisfy(order, alternative, leaves, {}):
            return True
    return False


# -- the pattern ----------------------------------------------------------------------------
def _alternatives(obj: Mapping[str, Any], path: list[str]) -> list[dict[str, list[Any]]]:
    result: list[dict[str, list[Any]]] = []
    for key, value in obj.items():
        if key == "$or":
            before = result
            result = []
            for sub in value:
                starts = [dict(a) for a in before] or [{}]
                for start in starts:
                    for alt in _alternatives(sub, path):
                        merged = dict(start)
                        for k, v in alt.items():
                            merged.pop(k, None)
                            merged[k] = v
                        result.append(merged)
        elif isinstance(value, dict):
            nested = _alternatives(value, [*path, key])
            result = _combine(result, nested)
        else:
            name = ".".join([*path, key])
            result = [dict(a) for a in result] or [{}]
            for a in result:
                a[name] = value
    return result


def _combine(
    left: list[dict[str, list[Any]]], right: list[dict[str, list[Any]]]
) -> list[dict[str, list[Any]]]:
    if not left:
        return right
    out = []
    for a in left:
        for b in right:
            merged = dict(a)
            merged.update(b)
            out.append(merged)
    return out


# -- the event ------------------------------------------------------------------------------
def _flatten(
    value: Any,
    path: list[str],
    membership: dict[int, int],
    out: list[tuple[str, Any, dict[int, int]]],
    arrays: list[int],
) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            _flatten(child, [*path, str(key)], membership, out, arrays)
    elif isinstance(value, list | tuple):
        array = arrays[0]
        arrays[0] += 1
        for index, child in enumerate(value):
            if isinstance(child, Mapping | list | tuple):
                _flatten(child, path, {**membership, array: index}, out, arrays)
            else:
                _flatten(child, path, membership, out, arrays)
    else:
        out.append((".".join(path), value, membership))


# -- matching -------------------------------------------------------------------------------
def _agrees(a: dict[int, int], b: dict[int, int]) -> bool:
    return all(a[k] == v for k, v in b.items() if k in a)


def _satisfy(
    order: list[str],
    alternative: dict[str, list[Any]],
    leaves: list[tuple[str, Any, dict[int, int]]],
    chosen: dict[int, int],
) -> bool:
    if not order:
        return True
    path, rest = order[0], order[1:]
    specs = alternative[path]
    candidates = [(v, m) for p, v, m in leaves if p == path]
    for value, membership in candidates:
        accepted = any(_accepts(spec, value) for spec in specs)
        if (
            accepted
            and _agrees(chosen, membership)
            and _satisfy(rest, alternative, leaves, {**chosen, **membership})
        ):
            return True
    if {"exists": False} in specs and not any(_agrees(chosen, m) for _, m in candidates):
        return _satisfy(rest, alternative, leaves, chosen)
    return False


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not _is_nan(v)


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _same_number(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except OverflowError:
        return isinstance(a, int) and isinstance(b, int) and a == b


def _ip(text: Any) -> tuple[int, int] | None:
    """(bits, value) of an IP literal as event-ruler accepts it, else None."""
    if not isinstance(text, str):
        return None
    if re.fullmatch(r"[0-9]+(\.[0-9]+){3}", text, re.ASCII):
        octets = text.split(".")
        if any(o != "0" and o.startswith("0") for o in octets):
            return None
        if any(int(o) > 255 for o in octets):
            return None
        return 32, int(ipaddress.IPv4Address(".".join(str(int(o)) for o in octets)))
    if re.fullmatch(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*", text, re.ASCII):
        try:
            v6 = ipaddress.IPv6Address(text)
        except ValueError:
            return None
        if v6.ipv4_mapped is not None:
            return 32, int(v6.ipv4_mapped)
        return 128, int(v6)
    return None


def _glob(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else [x]


def _accepts(spec: Any, value: Any) -> bool:
    if isinstance(spec, bool):
        return isinstance(value, bool) and value == spec
    if spec is None:
        return value is None
    if isinstance(spec, str):
        if not isinstance(value, str):
            return False
        ip = _ip(spec)
        return value == spec or (ip is not None and _ip(value) == ip)
    if isinstance(spec, int | float):
        return _is_number(value) and _same_number(value, spec)
    ((op, arg),) = spec.items()
    is_str = isinstance(value, str)
    if op == "exists":
        return bool(arg)  # a leaf exists; exists:false is handled by _satisfy
    if op == "exactly":
        return is_str and value == arg
    if op in ("prefix", "suffix"):
        if not is_str:
            return False
        if isinstance(arg, dict):
            subject, wanted = value.lower(), arg["equals-ignore-case"].lower()
        else:
            subject, wanted = value, arg
        return bool(subject.startswith(wanted) if op == "prefix" else subject.endswith(wanted))
    if op == "equals-ignore-case":
        return is_str and value.lower() == arg.lower()
    if op == "wildcard":
        return is_str and _glob(arg).fullmatch(value) is not None
    if op == "numeric":
        if not _is_number(value):
            return False
        try:
            x = float(value)
        except OverflowError:
            return False
        for i in range(0, len(arg), 2):
            operator, bound = arg[i], float(arg[i + 1])
            if not {
                "=": x == bound,
                "<": x < bound,
                "<=": x <= bound,
                ">": x > bound,
                ">=": x >= bound,
            }[operator]:
                return False
        return True
    if op == "cidr":
        ip = _ip(value) if is_str else None
        address, mask = arg.split("/")[:2]
        base = _ip(address)
        if ip is None or base is None or ip[0] != base[0]:
            return False
        host_bits = base[0] - int(mask)
        return base[1] <= ip[1] <= base[1] | ((1 << host_bits) - 1)
    if op == "anything-but":
        if isinstance(arg, dict):
            ((kind, inner),) = arg.items()
            if not is_str:
                return True
            if kind == "equals-ignore-case":
                return value.lower() not in [s.lower() for s in _as_list(inner)]
            if kind == "prefix":
                return not any(value.startswith(s) for s in _as_list(inner))
            if kind == "suffix":
                return not any(value.endswith(s) for s in _as_list(inner))
            return not any(_glob(s).fullmatch(value) for s in _as_list(inner))
        excluded = _as_list(arg)
        if is_str:
            return value not in [s for s in excluded if isinstance(s, str)]
        if _is_number(value):
            return not any(_same_number(value, n) for n in excluded if not isinstance(n, str))
        return True
    raise ValueError(f"unknown operator {op}")
