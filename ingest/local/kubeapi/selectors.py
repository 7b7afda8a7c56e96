"""Label and field selectors, parsed once per request into predicates.

The grammar is the one ``kubectl -l`` and client-go accept: ``a=b``, ``a==b``, ``a!=b``,
``a in (x,y)``, ``a notin (x)``, ``a`` (exists) and ``!a`` (does not exist), comma-joined.
Field selectors support ``=``, ``==`` and ``!=`` on the labels a resource declares selectable
(``metadata.name`` and ``metadata.namespace`` always; events add ``involvedObject.*``, pods
``status.phase`` and ``spec.nodeName``, ...). An unsupported field label is a 400, as on a real
server, so a test cannot pass here with a selector a cluster would refuse.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection
from typing import Any

from .errors import bad_request

Predicate = Callable[[dict[str, Any]], bool]

_LABEL_KEY = re.compile(r"^([a-z0-9A-Z.\-]+/)?[A-Za-z0-9]([A-Za-z0-9_.\-]*[A-Za-z0-9])?$")


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ_RE = re.compile(r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")


def _check_key(key: str, selector: str) -> None:
    if not _LABEL_KEY.match(key):
        raise bad_request(f"unable to parse requirement: invalid label key \"{key}\" in \"{selector}\"")


# One requirement each, bound to its key and values with functools.partial (typed, unlike a lambda
# with default arguments).
def _label_in(key: str, values: Collection[str], labels: dict[str, str]) -> bool:
    return labels.get(key) in values


def _label_not_in(key: str, values: Collection[str], labels: dict[str, str]) -> bool:
    return labels.get(key) not in values


def _label_is(key: str, value: str, labels: dict[str, str]) -> bool:
    return labels.get(key) == value


def _label_is_not(key: str, value: str, labels: dict[str, str]) -> bool:
    return labels.get(key) != value


def _label_exists(key: str, labels: dict[str, str]) -> bool:
    return key in labels


def _label_absent(key: str, labels: dict[str, str]) -> bool:
    return key not in labels


def _field_is(path: str, value: str, obj: dict[str, Any]) -> bool:
    return field_value(obj, path) == value


def _field_is_not(path: str, value: str, obj: dict[str, Any]) -> bool:
    return field_value(obj, path) != value


def parse_labels(selector: str | None) -> Predicate | None:
    if not selector:
        return None
    tests: list[Callable[[dict[str, str]], bool]] = []
    for req in _split_top(selector):
        if m := _SET_RE.match(req):
            key, op = m["key"], m["op"]
            _check_key(key, selector)
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            if op == "in":
                tests.append(functools.partial(_label_in, key, values))
            else:
                tests.append(functools.partial(_label_not_in, key, values))
        elif m := _EQ_RE.match(req):
            key, op, value = m["key"], m["op"], m["value"]
            _check_key(key, selector)
            if op == "!=":
                tests.append(functools.partial(_label_is_not, key, value))
            else:
                tests.append(functools.partial(_label_is, key, value))
        elif req.startswith("!"):
            key = req[1:].strip()
            _check_key(key, selector)
            tests.append(functools.partial(_label_absent, key))
        else:
            _check_key(req, selector)
            tests.append(functools.partial(_label_exists, req))

    def predicate(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(test(labels) for test in tests)

    return predicate


def field_value(obj: dict[str, Any], path: str) -> str:
    """The string form of a dotted field, as the server's field-label conversion yields it."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if path == "source" and isinstance(node, dict):  # events: source means source.component
        return str(node.get("component", ""))
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def parse_fields(selector: str | None, supported: tuple[str, ...]) -> Predicate | None:
    if not selector:
        return None
    allowed = {"metadata.name", "metadata.namespace", *supported}
    tests: list[Predicate] = []
    for req in _split_top(selector):
        m = re.match(r"^([^!=]+?)\s*(==|=|!=)\s*(.*)$", req)
        if not m:
            raise bad_request(f'invalid selector: \'{selector}\'; can\'t understand \'{req}\'')
        field, op, value = m[1].strip(), m[2], m[3].strip()
        if field not in allowed:
            raise bad_request(f'field label not supported: {field}')
        if op == "!=":
            tests.append(functools.partial(_field_is_not, field, value))
        else:
            tests.append(functools.partial(_field_is, field, value))

    def predicate(obj: dict[str, Any]) -> bool:
        return all(test(obj) for test in tests)

    return predicate


def combine(*predicates: Predicate | None) -> Predicate:
    active = [p for p in predicates if p is not None]
    if not active:
        return lambda obj: True
    if len(active) == 1:
        return active[0]
    return lambda obj: all(p(obj) for p in active)
