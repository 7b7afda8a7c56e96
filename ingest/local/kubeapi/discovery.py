"""What clients learn about the server before they touch an object.

kubectl and kopf read discovery (``/api``, ``/apis``, ``/apis/<group>/<version>``) to map kinds
and short names to URLs; kubectl reads ``/openapi/v3`` to decide how to validate (when a PATCH
operation of the kind declares the ``fieldValidation`` query parameter, kubectl lets the server
validate with ``fieldValidation=Strict``) and to find each kind's schema. ``kubectl get`` asks for
``meta.k8s.io/v1`` Tables, whose columns come from the CRD's ``additionalPrinterColumns``.

All documents are derived from the :class:`~.resources.Registry` on demand and cached per
registry generation, so a CRD created through the API shows up in the next request.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import json
from typing import Any

from .resources import ALL_VERBS, Registry, Resource
from .store import Body

KUBE_VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.0-ingest-emulator",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64",
                "emulationMajor": "1", "emulationMinor": "37",
                "minCompatibilityMajor": "1", "minCompatibilityMinor": "36"}

SUBRESOURCE_VERBS = ("get", "patch", "update")


def api_versions(address: str) -> Body:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}


def _group_entry(group: str, versions: list[str]) -> Body:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: Registry) -> Body:
    groups = [_group_entry(g, vs) for g, vs in registry.group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> Body | None:
    versions = registry.group_versions().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


def _storage_hash(resource: Resource) -> str:
    digest = hashlib.sha256(f"{resource.api_version}/{resource.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def resource_list(registry: Registry, group: str, version: str) -> Body | None:
    resources = registry.in_group_version(group, version)
    if not resources:
        return None
    entries: list[Body] = []
    for r in resources:
        entry: Body = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                       "kind": r.kind, "verbs": list(ALL_VERBS),
                       "storageVersionHash": _storage_hash(r)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for sub in sorted(r.subresources):
            if sub == "status":
                entries.append({"name": f"{r.plural}/status", "singularName": "",
                                "namespaced": r.namespaced, "kind": r.kind,
                                "verbs": list(SUBRESOURCE_VERBS)})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": entries}


# -- OpenAPI v3 -----------------------------------------------------------------------------
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META_SCHEMA: Body = {
    "type": "object",
    "description": "ObjectMeta is metadata that all persisted resources must have.",
    "properties": {
        "name": {"type": "string"}, "generateName": {"type": "string"},
        "namespace": {"type": "string"}, "uid": {"type": "string"},
        "resourceVersion": {"type": "string"}, "generation": {"type": "integer", "format": "int64"},
        "creationTimestamp": {"type": "string", "format": "date-time"},
        "deletionTimestamp": {"type": "string", "format": "date-time"},
        "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
        "labels": _STR_MAP, "annotations": _STR_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"},
                       "x-kubernetes-list-type": "set"},
        "ownerReferences": {"type": "array", "items": {
            "type": "object", "required": ["apiVersion", "kind", "name", "uid"],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "name": {"type": "string"}, "uid": {"type": "string"},
                           "controller": {"type": "boolean"},
                           "blockOwnerDeletion": {"type": "boolean"}}},
            "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"},
        "managedFields": {"type": "array", "items": {"type": "object",
                                                      "x-kubernetes-preserve-unknown-fields": True}},
        "selfLink": {"type": "string"},
    },
}


def schema_name(resource: Resource) -> str:
    if resource.custom:
        reversed_group = ".".join(reversed(resource.group.split(".")))
        return f"{reversed_group}.{resource.version}.{resource.kind}"
    if resource.group == "apiextensions.k8s.io":
        return f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{resource.version}.{resource.kind}"
    group = resource.group.split(".")[0] if resource.group else "core"
    return f"io.k8s.api.{group}.{resource.version}.{resource.kind}"


def _gvk(resource: Resource) -> Body:
    return {"group": resource.group, "version": resource.version, "kind": resource.kind}


def _kind_schema(resource: Resource) -> Body:
    if resource.schema:
        body = json.loads(json.dumps(resource.schema))
        props = body.setdefault("properties", {})
        props["metadata"] = {"allOf": [{"$ref": f"#/components/schemas/{OBJECT_META}"}]}
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
    else:  # built-ins: the server checks nothing beyond metadata, so neither should kubectl
        body = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                               "metadata": {"allOf": [{"$ref": f"#/components/schemas/{OBJECT_META}"}]}}}
    body["x-kubernetes-group-version-kind"] = [_gvk(resource)]
    return body


_QUERY = ("dryRun", "fieldManager", "fieldValidation", "pretty")


def _params(*names: str) -> list[Body]:
    return [{"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
            for n in names]


def _op(resource: Resource, action: str, ref: str, *extra: str, body: list[str] | None = None) -> Body:
    op: Body = {
        "operationId": f"{action}{resource.kind}",
        "parameters": _params(*extra),
        "responses": {"200": {"description": "OK", "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(resource),
    }
    if body:
        op["requestBody"] = {"content": {ct: {"schema": {"$ref": f"#/components/schemas/{schema_name(resource)}"}}
                                         for ct in body}, "required": True}
    return op


def _paths(resource: Resource) -> Body:
    prefix = f"/apis/{resource.group}/{resource.version}" if resource.group else "/api/v1"
    base = f"{prefix}/namespaces/{{namespace}}/{resource.plural}" if resource.namespaced \
        else f"{prefix}/{resource.plural}"
    name = schema_name(resource)
    list_name = f"{name}List"
    patch_types = ["application/json-patch+json", "application/merge-patch+json",
                   "application/apply-patch+yaml"]
    if not resource.custom:
        patch_types.append("application/strategic-merge-patch+json")
    item = {
        "get": _op(resource, "get", name, "pretty"),
        "put": _op(resource, "put", name, *_QUERY, body=["application/json"]),
        "patch": _op(resource, "patch", name, *_QUERY, "force", body=patch_types),
        "delete": _op(resource, "delete", name, "dryRun", "gracePeriodSeconds",
                      "propagationPolicy"),
    }
    paths: Body = {
        base: {"get": _op(resource, "list", list_name, "labelSelector", "fieldSelector", "limit",
                          "continue", "watch", "resourceVersion", "timeoutSeconds"),
               "post": _op(resource, "post", name, *_QUERY, body=["application/json"]),
               "delete": _op(resource, "deletecollection", name, "labelSelector")},
        f"{base}/{{name}}": item,
    }
    if resource.has_status:
        paths[f"{base}/{{name}}/status"] = {k: v for k, v in item.items() if k != "delete"}
    return paths


def openapi_doc(registry: Registry, group: str, version: str) -> Body | None:
    resources = registry.in_group_version(group, version)
    if not resources:
        return None
    schemas: Body = {OBJECT_META: OBJECT_META_SCHEMA}
    paths: Body = {}
    for resource in resources:
        name = schema_name(resource)
        schemas[name] = _kind_schema(resource)
        schemas[f"{name}List"] = {
            "type": "object", "x-kubernetes-group-version-kind": [
                {"group": resource.group, "version": resource.version,
                 "kind": resource.list_kind}],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "items": {"type": "array", "items": {
                               "$ref": f"#/components/schemas/{name}"}},
                           "metadata": {"type": "object"}}}
        paths.update(_paths(resource))
    return {"openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": schemas}}


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_root(registry: Registry, hashes: dict[str, str]) -> Body:
    paths = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            path = gv_path(group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={hashes.get(path, '')}"}
    return {"paths": paths}


# -- Tables ---------------------------------------------------------------------------------
NAME_COLUMN = {"name": "Name", "type": "string", "format": "name", "priority": 0,
               "description": "Name must be unique within a namespace. More info: "
                              "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"}
AGE_COLUMN = {"name": "Age", "type": "string", "format": "", "priority": 0,
              "description": "CreationTimestamp is a timestamp representing the server time "
                             "when this object was created."}


def human_duration(seconds: float) -> str:
    """apimachinery's ``duration.HumanDuration``: what kubectl shows as AGE."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: Any) -> str:
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    return human_duration((datetime.datetime.now(datetime.UTC) - then).total_seconds())


def _jsonpath(obj: Any, path: str) -> Any:
    """Simple ``.a.b.c`` (and ``.a[0].b``) paths, the subset CRD printer columns allow."""
    node = obj
    for part in path.strip().lstrip(".").replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("[") and part.endswith("]"):
            try:
                node = node[int(part[1:-1])] if isinstance(node, list) else None
            except (ValueError, IndexError):
                return None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
        if node is None:
            return None
    return node


def _cell(column_type: str, value: Any) -> Any:
    if value is None:
        return None
    if column_type == "date":
        return age(value)
    if column_type == "integer":
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if column_type == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _pod_cells(pod: Body) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    reason = status.get("reason") or status.get("phase") or "Pending"
    for s in statuses:
        state = s.get("state") or {}
        waiting = (state.get("waiting") or {}).get("reason")
        terminated = state.get("terminated") or {}
        if waiting:
            reason = waiting
        elif terminated:
            reason = terminated.get("reason") or (
                f"ExitCode:{terminated.get('exitCode')}" if terminated.get("exitCode") else "Completed")
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    return [f"{ready}/{len(spec.get('containers') or [])}", reason, restarts,
            age(pod["metadata"].get("creationTimestamp"))]


def _columns(resource: Resource) -> list[Body]:
    if resource.custom:
        if not resource.printer_columns:
            return [NAME_COLUMN, AGE_COLUMN]
        return [NAME_COLUMN] + [
            {"name": c.name, "type": c.type, "format": c.format, "description": c.description,
             "priority": c.priority} for c in resource.printer_columns]
    if resource.plural == "pods":
        return [NAME_COLUMN] + [
            {"name": n, "type": t, "format": "", "description": n, "priority": 0}
            for n, t in (("Ready", "string"), ("Status", "string"), ("Restarts", "string"))
        ] + [AGE_COLUMN]
    if resource.plural == "namespaces":
        return [NAME_COLUMN, {"name": "Status", "type": "string", "format": "",
                              "description": "The status of the namespace", "priority": 0},
                AGE_COLUMN]
    if resource.plural == "customresourcedefinitions":
        return [NAME_COLUMN, {"name": "Created At", "type": "date", "format": "",
                              "description": "CreationTimestamp", "priority": 0}]
    return [NAME_COLUMN, AGE_COLUMN]


def _row_cells(resource: Resource, obj: Body) -> list[Any]:
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    if resource.custom:
        if not resource.printer_columns:
            return [name, age(meta.get("creationTimestamp"))]
        return [name] + [_cell(c.type, _jsonpath(obj, c.json_path)) for c in resource.printer_columns]
    if resource.plural == "pods":
        return [name] + _pod_cells(obj)
    if resource.plural == "namespaces":
        return [name, (obj.get("status") or {}).get("phase", "Active"),
                age(meta.get("creationTimestamp"))]
    if resource.plural == "customresourcedefinitions":
        return [name, meta.get("creationTimestamp")]
    return [name, age(meta.get("creationTimestamp"))]


def _row_object(obj: Body, include: str) -> Body | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}


def table(resource: Resource, objects: list[Body], *, resource_version: str,
          include: str = "Metadata", continue_token: str | None = None,
          headers: bool = True) -> Body:
    rows = []
    for obj in objects:
        row: Body = {"cells": _row_cells(resource, obj)}
        ref = _row_object(obj, include)
        if ref is not None:
            row["object"] = ref
        rows.append(row)
    metadata: Body = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": _columns(resource) if headers else [], "rows": rows}
