"""Structural-schema admission for custom resources: prune, default, validate.

A real API server runs every custom object through its CRD's ``openAPIV3Schema`` in this order:
fields the schema does not name are dropped (unless under ``x-kubernetes-preserve-unknown-fields``;
``apiVersion``, ``kind`` and ``metadata`` at the root are always kept), ``default`` values are
filled in, then the result is validated and any violation is a 422 listing every cause. We do the
same, with the same field paths and messages, so code that writes an unknown status field or a
wrong type fails here as it would on a cluster.

The pruned paths are reported too: with ``fieldValidation=Strict`` they turn into an error
(``unknown field "spec.foo"``), with ``Warn`` into warnings, with ``Ignore`` into nothing.
CEL rules (``x-kubernetes-validations``) are not evaluated.
"""
from __future__ import annotations

import base64
import copy
import ipaddress
import re
import uuid
from typing import Any

from .errors import Cause, show

OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
})

_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DURATION = re.compile(r"^([+-]?(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w))+$|^0$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")


def _format_ok(fmt: str, value: str) -> bool:
    try:
        if fmt in ("date-time", "datetime"):
            return bool(_DATETIME.match(value))
        if fmt == "date":
            return bool(_DATE.match(value))
        if fmt == "duration":
            return bool(_DURATION.match(value))
        if fmt == "byte":
            base64.b64decode(value, validate=True)
            return True
        if fmt in ("uuid", "uuid3", "uuid4", "uuid5"):
            uuid.UUID(value)
            return True
        if fmt == "ipv4":
            return isinstance(ipaddress.ip_address(value), ipaddress.IPv4Address)
        if fmt == "ipv6":
            return isinstance(ipaddress.ip_address(value), ipaddress.IPv6Address)
        if fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
            return "/" in value
        if fmt == "email":
            return bool(_EMAIL.match(value))
        if fmt == "hostname":
            return bool(_HOSTNAME.match(value))
        if fmt == "mac":
            return bool(_MAC.match(value))
    except ValueError:
        return False
    return True  # formats Kubernetes does not check (int32, password, ...)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _preserves(schema: dict[str, Any]) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


# -- pruning --------------------------------------------------------------------------------
def prune(obj: Any, schema: dict[str, Any], path: str, unknown: list[str], *,
          root: bool = False) -> Any:
    """Return ``obj`` with unknown fields dropped; their paths are appended to ``unknown``."""
    if isinstance(obj, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        embedded = schema.get("x-kubernetes-embedded-resource") or root
        out: dict[str, Any] = {}
        for key, value in obj.items():
            child = _join(path, key)
            if embedded and key in ("apiVersion", "kind"):
                out[key] = value
            elif embedded and key == "metadata":
                out[key] = _prune_meta(value, child, unknown)
            elif props is not None and key in props:
                out[key] = prune(value, props[key], child, unknown)
            elif isinstance(additional, dict):
                out[key] = prune(value, additional, child, unknown)
            elif additional is True or _preserves(schema):
                out[key] = value
            else:
                unknown.append(child)
        return out
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [prune(v, schema["items"], f"{path}[{i}]", unknown) for i, v in enumerate(obj)]
    return obj


def _prune_meta(meta: Any, path: str, unknown: list[str]) -> Any:
    if not isinstance(meta, dict):
        return meta
    out = {}
    for key, value in meta.items():
        if key in OBJECT_META_FIELDS:
            out[key] = value
        else:
            unknown.append(_join(path, key))
    return out


# -- defaulting -----------------------------------------------------------------------------
def default(obj: Any, schema: dict[str, Any]) -> Any:
    """Fill in ``default`` values for absent (or null non-nullable) properties, in place."""
    if isinstance(obj, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if "default" in sub and (key not in obj or (obj[key] is None
                                                         and not sub.get("nullable"))):
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                default(obj[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for value in obj.values():
                default(value, additional)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for value in obj:
            default(value, schema["items"])
    return obj


# -- validation -----------------------------------------------------------------------------
def _type_ok(expected: str, value: Any) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True


def validate(obj: Any, schema: dict[str, Any], path: str, causes: list[Cause]) -> None:
    label = path or "<root>"
    if obj is None:
        if not schema.get("nullable") and schema.get("type"):
            causes.append(Cause("FieldValueTypeInvalid", path,
                                f'Invalid value: "null": {label} in body must be of type '
                                f'{schema["type"]}: "null"'))
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(obj, str) or _type_ok("integer", obj)):
            causes.append(Cause("FieldValueTypeInvalid", path,
                                f"Invalid value: {show(obj)}: {label} in body must be of type "
                                f"integer or string: {show(type(obj).__name__)}"))
            return
    elif expected := schema.get("type"):
        if not _type_ok(expected, obj):
            found = {dict: "object", list: "array", str: "string", bool: "boolean",
                     int: "integer", float: "number"}.get(type(obj), "unknown")
            causes.append(Cause("FieldValueTypeInvalid", path,
                                f'Invalid value: {show(obj)}: {label} in body must be of type '
                                f'{expected}: "{found}"'))
            return
    if "enum" in schema and obj not in schema["enum"]:
        allowed = ", ".join(show(v) for v in schema["enum"])
        causes.append(Cause("FieldValueNotSupported", path,
                            f"Unsupported value: {show(obj)}: supported values: {allowed}"))
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        _numeric(obj, schema, path, label, causes)
    elif isinstance(obj, str):
        _string(obj, schema, path, label, causes)
    elif isinstance(obj, list):
        _array(obj, schema, path, label, causes)
    elif isinstance(obj, dict):
        _object(obj, schema, path, label, causes)
    for sub in schema.get("allOf") or []:
        validate(obj, sub, path, causes)
    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if options:
            passing = 0
            for sub in options:
                trial: list[Cause] = []
                validate(obj, sub, path, trial)
                passing += not trial
            if passing == 0 or (keyword == "oneOf" and passing > 1):
                causes.append(Cause("FieldValueInvalid", path,
                                    f"Invalid value: {show(obj)}: {label} in body must "
                                    f"validate {'one and only one' if keyword == 'oneOf' else 'at least one'} "
                                    f"schema ({keyword})"))
    if isinstance(schema.get("not"), dict):
        trial = []
        validate(obj, schema["not"], path, trial)
        if not trial:
            causes.append(Cause("FieldValueInvalid", path,
                                f"Invalid value: {show(obj)}: {label} in body should not "
                                f"validate the schema (not)"))


def _numeric(obj: float, schema: dict[str, Any], path: str, label: str,
             causes: list[Cause]) -> None:
    bad = f"Invalid value: {show(obj)}: {label} in body should be"
    if "minimum" in schema:
        low = schema["minimum"]
        if schema.get("exclusiveMinimum") and obj <= low:
            causes.append(Cause("FieldValueInvalid", path, f"{bad} greater than {show(low)}"))
        elif obj < low:
            causes.append(Cause("FieldValueInvalid", path,
                                f"{bad} greater than or equal to {show(low)}"))
    if "maximum" in schema:
        high = schema["maximum"]
        if schema.get("exclusiveMaximum") and obj >= high:
            causes.append(Cause("FieldValueInvalid", path, f"{bad} less than {show(high)}"))
        elif obj > high:
            causes.append(Cause("FieldValueInvalid", path,
                                f"{bad} less than or equal to {show(high)}"))
    step = schema.get("multipleOf")
    if step and (obj / step) != int(obj / step):
        causes.append(Cause("FieldValueInvalid", path, f"{bad} a multiple of {show(step)}"))


def _string(obj: str, schema: dict[str, Any], path: str, label: str,
            causes: list[Cause]) -> None:
    if "maxLength" in schema and len(obj) > schema["maxLength"]:
        causes.append(Cause("FieldValueTooLong", path,
                            f"Too long: may not be more than {schema['maxLength']} bytes"))
    if "minLength" in schema and len(obj) < schema["minLength"]:
        causes.append(Cause("FieldValueInvalid", path,
                            f"Invalid value: {show(obj)}: {label} in body should be at least "
                            f"{schema['minLength']} chars long"))
    if "pattern" in schema and not re.search(schema["pattern"], obj):
        causes.append(Cause("FieldValueInvalid", path,
                            f"Invalid value: {show(obj)}: {label} in body should match "
                            f"'{schema['pattern']}'"))
    fmt = schema.get("format")
    if fmt and not _format_ok(fmt, obj):
        causes.append(Cause("FieldValueInvalid", path,
                            f"Invalid value: {show(obj)}: {label} in body must be of type "
                            f"{fmt}: {show(obj)}"))


def _array(obj: list[Any], schema: dict[str, Any], path: str, label: str,
           causes: list[Cause]) -> None:
    if "maxItems" in schema and len(obj) > schema["maxItems"]:
        causes.append(Cause("FieldValueTooMany", path,
                            f"Too many: {len(obj)}: must have at most {schema['maxItems']} items"))
    if "minItems" in schema and len(obj) < schema["minItems"]:
        causes.append(Cause("FieldValueInvalid", path,
                            f"Invalid value: {len(obj)}: {label} in body should have at least "
                            f"{schema['minItems']} items"))
    if schema.get("uniqueItems") or schema.get("x-kubernetes-list-type") == "set":
        seen: list[Any] = []
        for n, value in enumerate(obj):
            if value in seen:
                causes.append(Cause("FieldValueDuplicate", f"{path}[{n}]",
                                    f"Duplicate value: {show(value)}"))
            seen.append(value)
    items = schema.get("items")
    if isinstance(items, dict):
        for n, value in enumerate(obj):
            validate(value, items, f"{path}[{n}]", causes)


def _object(obj: dict[str, Any], schema: dict[str, Any], path: str, label: str,
            causes: list[Cause]) -> None:
    for key in schema.get("required") or []:
        if key not in obj:
            causes.append(Cause("FieldValueRequired", _join(path, key), "Required value"))
    props = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, value in obj.items():
        if key in props:
            if not path and key == "metadata":
                continue  # metadata is ObjectMeta, checked by the server itself
            validate(value, props[key], _join(path, key), causes)
        elif isinstance(additional, dict):
            validate(value, additional, _join(path, key), causes)
    if "maxProperties" in schema and len(obj) > schema["maxProperties"]:
        causes.append(Cause("FieldValueTooMany", path,
                            f"Too many: {len(obj)}: must have at most "
                            f"{schema['maxProperties']} items"))
    if "minProperties" in schema and len(obj) < schema["minProperties"]:
        causes.append(Cause("FieldValueInvalid", path,
                            f"Invalid value: {len(obj)}: {label} in body should have at least "
                            f"{schema['minProperties']} properties"))


def admit(obj: dict[str, Any], schema: dict[str, Any] | None) -> tuple[dict[str, Any], list[str], list[Cause]]:
    """Prune, default and validate a custom object: (result, unknown field paths, causes)."""
    if not schema:
        return obj, [], []
    unknown: list[str] = []
    pruned = prune(obj, schema, "", unknown, root=True)
    default(pruned, schema)
    causes: list[Cause] = []
    validate(pruned, schema, "", causes)
    return pruned, unknown, causes
