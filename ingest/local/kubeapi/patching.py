"""The four patch formats a Kubernetes API server accepts, as pure functions on dicts.

- JSON merge patch (RFC 7386): ``null`` deletes, objects merge, everything else replaces.
- JSON patch (RFC 6902) with ``test``: kopf tests ``/metadata/resourceVersion`` before it edits
  finalizers, so a failing test must fail the whole patch (422, nothing applied).
- Strategic merge patch: like a merge patch, but lists of built-in kinds with a merge key
  (containers by ``name``, ports by ``containerPort``/``port``, ...) merge element-wise, and
  ``finalizers`` merge as a set. Only built-in kinds; the server refuses it for custom resources.
- Server-side apply: approximated as a strategic merge of the applied configuration (no
  managed-field ownership, so fields dropped from a later apply are not removed).

Every function returns a new document and leaves its inputs untouched.
"""
from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError, bad_request

JSON = Any


class PatchError(Exception):
    """A patch that is well-formed but cannot apply (failed ``test``, missing path)."""


def merge_patch(target: JSON, patch: JSON) -> JSON:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- JSON patch -----------------------------------------------------------------------------
def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: JSON, parts: list[str], path: str) -> JSON:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PatchError(f"doc is missing path: \"{path}\": missing value")
    return node


def _get(doc: JSON, path: str) -> JSON:
    parts = _pointer(path)
    if not parts:
        return doc
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise PatchError(f"doc is missing path: \"{path}\": missing value")


def _add(doc: JSON, path: str, value: JSON) -> JSON:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise PatchError(f"add operation does not apply: doc is missing path: \"{path}\"")
    else:
        raise PatchError(f"add operation does not apply: doc is missing path: \"{path}\"")
    return doc


def _remove(doc: JSON, path: str) -> JSON:
    parts = _pointer(path)
    parent = _parent(doc, parts, path)
    last = parts[-1] if parts else ""
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise PatchError(f"remove operation does not apply: doc is missing path: \"{path}\"")


def json_patch(target: JSON, operations: JSON) -> JSON:
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid JSON patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # must exist
            parts = _pointer(path)
            if not parts:
                doc = copy.deepcopy(op.get("value"))
            else:
                parent = _parent(doc, parts, path)
                key: Any = int(parts[-1]) if isinstance(parent, list) else parts[-1]
                parent[key] = copy.deepcopy(op.get("value"))
        elif kind == "move":
            value = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            try:
                actual = _get(doc, path)
            except PatchError:
                actual = None
            if actual != op.get("value"):
                raise PatchError(
                    f"testing value {path} failed: test operation for path {path!r} failed, "
                    f"expected {op.get('value')!r}, found {actual!r}")
        else:
            raise bad_request(f"Unexpected kind: {kind}")
    return doc


# -- strategic merge patch ------------------------------------------------------------------
# field name -> merge key for lists of built-in kinds that merge element-wise.
MERGE_KEYS: dict[str, str] = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath",
    "volumeDevices": "devicePath", "imagePullSecrets": "name", "conditions": "type",
    "ownerReferences": "uid", "hostAliases": "ip", "topologySpreadConstraints": "topologyKey",
    "secrets": "name", "containerStatuses": "name", "initContainerStatuses": "name",
    "readinessGates": "conditionType",
}
SET_LISTS = frozenset({"finalizers"})  # lists of scalars with patchStrategy merge


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":  # containers' ports vs. services' ports
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return MERGE_KEYS.get(field)


def strategic_merge(target: JSON, patch: JSON) -> JSON:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], value)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(field: str, current: list[Any], patch: list[Any]) -> list[Any]:
    if field in SET_LISTS:
        out = list(current)
        out.extend(v for v in patch if v not in out)
        return out
    key = _merge_key(field, current + patch)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    out = [copy.deepcopy(i) for i in current]
    for item in patch:
        if item.get("$patch") == "replace":
            return [copy.deepcopy({k: v for k, v in i.items() if k != "$patch"}) for i in patch]
        position = next((n for n, i in enumerate(out)
                         if isinstance(i, dict) and key in item and i.get(key) == item.get(key)),
                        None)
        if item.get("$patch") == "delete":
            if position is not None:
                out.pop(position)
        elif position is None:
            out.append(copy.deepcopy(item))
        else:
            out[position] = strategic_merge(out[position], item)
    return out


def apply_patch(target: JSON | None, applied: JSON) -> JSON:
    """Server-side apply, simplified: the applied configuration merged over the live object."""
    if not isinstance(applied, dict):
        raise bad_request("apply patch must be an object")
    return strategic_merge(target or {}, applied)


PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply-cbor",
}


def patch_type(content_type: str) -> str | None:
    return PATCH_TYPES.get(content_type.split(";")[0].strip().lower())


def apply(kind: str, target: JSON, patch: JSON) -> JSON:
    """Apply a parsed patch of ``kind``; a failing JSON patch becomes 422 like the real server."""
    try:
        if kind == "json":
            return json_patch(target, patch)
        if kind == "merge":
            if not isinstance(patch, dict):
                raise bad_request("merge patch must be a JSON object")
            return merge_patch(target, patch)
        if kind == "strategic":
            if not isinstance(patch, dict):
                raise bad_request("strategic merge patch must be a JSON object")
            return strategic_merge(target, patch)
        if kind == "apply":
            return apply_patch(target, patch)
    except PatchError as exc:
        raise ApiError(422, "Invalid", str(exc)) from None
    raise bad_request(f"unsupported patch type {kind}")
