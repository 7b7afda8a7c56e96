"""The API server's rules for each verb, without HTTP: what a write may change and what follows.

This is where the strictness lives: namespaces come from the URL and must exist; names are
validated or generated; every write takes the next ``resourceVersion`` and a stale one is a 409;
``status`` is isolated behind its subresource (and dropped on create, as for real custom
resources); ``generation`` moves only when the spec does; custom objects are pruned, defaulted and
validated against their schema; finalizers hold a deletion open (``deletionTimestamp``) until the
last one is removed, after which owner references are garbage-collected in the background.

The HTTP layer (``server.py``) parses requests and calls these methods; everything here raises
:class:`~.errors.ApiError` and returns plain dicts. Stored objects are never mutated: each write
builds a new top-level dict and a new ``metadata`` and shares the rest with the previous version.
"""
from __future__ import annotations

import asyncio
import base64
import datetime
import json
import random
import re
import uuid
from typing import Any

from . import errors, patching, schema, selectors
from .errors import ApiError, Cause
from .resources import CRD_GROUP, Registry, Resource
from .store import Body, Store

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Kinds whose DELETE answers with the deleted object (the rest answer with a Status).
RETURN_DELETED = frozenset({"pods", "services"})
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
Warnings = list[str]


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _success(res: Resource, obj: Body) -> Body:
    meta = obj["metadata"]
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": meta["name"], "group": res.group, "kind": res.plural,
                        "uid": meta.get("uid")}}


def _without(obj: Body, *keys: str) -> Body:
    return {k: v for k, v in obj.items() if k not in keys}


class Cluster:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self._orphaning: set[str] = set()  # uids deleted with propagationPolicy=Orphan
        self._terminating: set[str] = set()  # namespaces being deleted
        ns = self.registry.get("", "v1", "namespaces")
        assert ns is not None
        self.namespaces = ns
        self.crds = self.registry.get(CRD_GROUP, "v1", "customresourcedefinitions")

    def bootstrap(self) -> None:
        """System namespaces exist on every cluster; CRDs restored from a dump re-register."""
        for crd in self.store.items(self.crds.key):  # type: ignore[union-attr]
            self.registry.register_crd(crd)
        for obj in self.store.items(self.namespaces.key):
            if obj["metadata"].get("deletionTimestamp"):
                self._terminating.add(obj["metadata"]["name"])
        for name in SYSTEM_NAMESPACES:
            if self.store.get(self.namespaces.key, ("", name)) is None:
                self.create(self.namespaces, None, {"metadata": {"name": name}})

    def apply_crd(self, crd: Body) -> None:
        """Create or replace a CRD (the ``--crds`` files are applied at every start)."""
        assert self.crds is not None
        name = crd["metadata"]["name"]
        old = self.store.get(self.crds.key, ("", name))
        if old is None:
            self.create(self.crds, None, crd)
        else:
            body = dict(crd)
            body["metadata"] = {**crd["metadata"], "resourceVersion": old["metadata"]["resourceVersion"]}
            self.update(self.crds, None, name, body)

    # -- lookups ---------------------------------------------------------------------------
    def resolve(self, group: str, version: str, plural: str) -> Resource:
        resource = self.registry.get(group, version, plural)
        if resource is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource",
                           details={})
        return resource

    def get(self, res: Resource, ns: str | None, name: str) -> Body:
        obj = self.store.get(res.key, (ns or "", name))
        if obj is None:
            raise errors.not_found(res.plural, res.group, name)
        return obj

    def list(self, res: Resource, ns: str | None, *, label_selector: str | None = None,
             field_selector: str | None = None, limit: int = 0,
             continue_token: str | None = None) -> Body:
        match = self.matcher(res, label_selector, field_selector)
        rv = self.store.rv
        start = ""
        if continue_token:
            try:
                token = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start = token["start"]
            except (ValueError, KeyError, TypeError):
                raise errors.bad_request("continue key is not valid: malformed token") from None
        items: list[Body] = []
        more = False
        remaining = 0
        for obj in self.store.items(res.key, ns):
            meta = obj["metadata"]
            position = f"{meta.get('namespace', '')}/{meta['name']}"
            if start and position <= start:
                continue
            if not match(obj):
                continue
            if limit and len(items) >= limit:
                more = True
                remaining += 1
                continue
            items.append(obj)
        metadata: Body = {"resourceVersion": str(rv)}
        if more:
            last = items[-1]["metadata"]
            position = f"{last.get('namespace', '')}/{last['name']}"
            metadata["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": rv, "start": position}).encode()).decode()
            if not label_selector and not field_selector:
                metadata["remainingItemCount"] = remaining
        return {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": metadata,
                "items": items}

    def matcher(self, res: Resource, label_selector: str | None,
                field_selector: str | None) -> selectors.Predicate:
        return selectors.combine(
            selectors.parse_labels(label_selector),
            selectors.parse_fields(field_selector, res.selectable_fields),
        )

    # -- create ----------------------------------------------------------------------------
    def create(self, res: Resource, ns: str | None, body: Any, *, dry_run: bool = False,
               validation: str = "Warn") -> tuple[Body, Warnings]:
        body = self._check_body(res, body)
        meta = dict(body.get("metadata") or {})
        self._check_namespace(res, ns, meta, creating=True)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise errors.invalid(res.kind, res.group, "", [Cause(
                    "FieldValueRequired", "metadata.name",
                    "Required value: name or generateName is required")])
            meta["name"] = prefix + "".join(random.choices(_GENERATE_ALPHABET, k=5))
            while self.store.get(res.key, (ns or "", meta["name"])) is not None:
                meta["name"] = prefix + "".join(random.choices(_GENERATE_ALPHABET, k=5))
        name = meta["name"]
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion",
                    "selfLink"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        meta["generation"] = 1
        obj = {**body, "metadata": meta}
        if res.has_status:
            obj = self._initial_status(res, obj)
        obj, warnings = self._admit(res, obj, validation)
        if self.store.get(res.key, (ns or "", name)) is not None:
            raise errors.already_exists(res.plural, res.group, name)
        if res is self.crds:
            obj = self._crd_status(obj)
        if res is self.namespaces:
            obj = {**obj, "status": {"phase": "Active"}}
        if dry_run:
            return obj, warnings
        rv = self.store.next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        self.store.put(res.key, obj, rv=rv, event="ADDED")
        if res is self.crds:
            self.registry.register_crd(obj)
        return obj, warnings

    def _initial_status(self, res: Resource, obj: Body) -> Body:
        """Create cannot set status (custom resources); built-ins start from their defaults."""
        obj = _without(obj, "status")
        if res.key == ("", "v1", "pods"):
            obj["status"] = {"phase": "Pending"}
        elif res.key == ("", "v1", "services"):
            obj["status"] = {"loadBalancer": {}}
        return obj

    def _crd_status(self, crd: Body) -> Body:
        names = (crd.get("spec") or {}).get("names") or {}
        accepted = {"listKind": f"{names.get('kind', '')}List", **names}
        stamp = now()
        conditions = [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": stamp},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": stamp},
        ]
        versions = [v["name"] for v in (crd.get("spec") or {}).get("versions") or []
                    if v.get("storage")]
        return {**crd, "status": {"acceptedNames": accepted, "conditions": conditions,
                                  "storedVersions": versions}}

    # -- update / patch --------------------------------------------------------------------
    def update(self, res: Resource, ns: str | None, name: str, body: Any, *,
               subresource: str | None = None, dry_run: bool = False,
               validation: str = "Warn") -> tuple[Body, Warnings]:
        body = self._check_body(res, body)
        self._check_subresource(res, subresource)
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        self._check_namespace(res, ns, dict(meta), creating=False)
        old = self.get(res, ns, name)
        rv = meta.get("resourceVersion")
        if not rv:
            if res.custom:
                raise errors.invalid(res.kind, res.group, name, [Cause(
                    "FieldValueInvalid", "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update")])
        elif rv != old["metadata"]["resourceVersion"]:
            raise self._stale(res, name)
        return self._write(res, old, body, subresource=subresource, dry_run=dry_run,
                           validation=validation)

    def patch(self, res: Resource, ns: str | None, name: str, kind: str, patch: Any, *,
              subresource: str | None = None, dry_run: bool = False, validation: str = "Warn",
              force: bool = False) -> tuple[Body, Warnings, bool]:
        """Apply a patch of ``kind`` (json, merge, strategic, apply); returns (obj, warnings, created)."""
        self._check_subresource(res, subresource)
        if kind == "strategic" and res.custom:
            raise errors.unsupported_media_type(
                "application/strategic-merge-patch+json",
                ["application/json-patch+json", "application/merge-patch+json",
                 "application/apply-patch+yaml"])
        old = self.store.get(res.key, (ns or "", name))
        if old is None:
            if kind == "apply" and subresource is None:
                if not isinstance(patch, dict):
                    raise errors.bad_request("apply patch must be an object")
                meta = {**(patch.get("metadata") or {})}
                if meta.get("name", name) != name:
                    raise errors.bad_request(
                        f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
                meta["name"] = name
                obj, warnings = self.create(res, ns, {**patch, "metadata": meta},
                                            dry_run=dry_run, validation=validation)
                return obj, warnings, True
            raise errors.not_found(res.plural, res.group, name)
        new = patching.apply(kind, old, patch)
        if not isinstance(new, dict):
            raise errors.bad_request("the patch result is not an object")
        meta = new.get("metadata") or {}
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise self._stale(res, name)
        if meta.get("name", name) != name:
            raise errors.invalid(res.kind, res.group, name, [Cause(
                "FieldValueInvalid", "metadata.name",
                f"Invalid value: {errors.show(meta.get('name'))}: field is immutable")])
        obj, warnings = self._write(res, old, new, subresource=subresource, dry_run=dry_run,
                                    validation=validation)
        return obj, warnings, False

    def _write(self, res: Resource, old: Body, new: Body, *, subresource: str | None,
               dry_run: bool, validation: str) -> tuple[Body, Warnings]:
        old_meta = old["metadata"]
        name = old_meta["name"]
        if res.has_status and subresource == "status":
            # Only status may change through /status; everything else stays as stored.
            obj = _without(old, "status")
            if "status" in new:
                obj["status"] = new["status"]
            meta = dict(old_meta)
        else:
            obj = {**new, "apiVersion": old.get("apiVersion", res.api_version),
                   "kind": old.get("kind", res.kind)}
            if res.has_status:
                obj = _without(obj, "status")
                if "status" in old:
                    obj["status"] = old["status"]
            meta = dict(new.get("metadata") or {})
            for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                        "deletionGracePeriodSeconds", "generation"):
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            meta.pop("selfLink", None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if old_meta.get("deletionTimestamp"):
            added = [f for f in meta.get("finalizers") or []
                     if f not in (old_meta.get("finalizers") or [])]
            if added:
                raise errors.invalid(res.kind, res.group, name, [Cause(
                    "FieldValueForbidden", "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers {json.dumps(added)}")])
        obj["metadata"] = meta
        obj, warnings = self._admit(res, obj, validation)
        meta = obj["metadata"]
        if res is self.crds and subresource is None:
            obj = self._crd_status(obj)
        ignored = ("metadata", "status") if res.has_status else ("metadata",)
        if _without(obj, *ignored) != _without(old, *ignored):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if obj == old:
            return old, warnings  # a no-op write keeps its resourceVersion and sends no event
        if dry_run:
            return obj, warnings
        rv = self.store.next_rv()
        meta["resourceVersion"] = str(rv)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(res, obj, rv)
            return obj, warnings
        self.store.put(res.key, obj, rv=rv, event="MODIFIED")
        if res is self.crds:
            self.registry.register_crd(obj)
        return obj, warnings

    # -- delete ----------------------------------------------------------------------------
    def delete(self, res: Resource, ns: str | None, name: str, options: Body | None = None, *,
               dry_run: bool = False) -> Body:
        options = options or {}
        old = self.get(res, ns, name)
        meta = old["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(res.plural, res.group, name,
                                  f"Precondition failed: UID in precondition: {pre['uid']}, "
                                  f"UID in object meta: {meta.get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise errors.conflict(res.plural, res.group, name,
                                  f"Precondition failed: ResourceVersion in precondition: "
                                  f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                  f"{meta.get('resourceVersion')}")
        if res is self.namespaces and name in SYSTEM_NAMESPACES:
            raise errors.forbidden(res.plural, res.group, name,
                                   f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        policy = options.get("propagationPolicy") or "Background"
        if policy not in ("Background", "Foreground", "Orphan"):
            raise errors.invalid("DeleteOptions", "", "", [Cause(
                "FieldValueNotSupported", "propagationPolicy",
                f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan", "nil"')])
        if options.get("orphanDependents") is True:
            policy = "Orphan"
        if dry_run:
            return old
        if policy == "Orphan" and meta.get("uid"):
            self._orphaning.add(meta["uid"])
        if meta.get("deletionTimestamp"):
            return old  # already being deleted: waiting for finalizers
        if res is self.namespaces:
            self._delete_namespace(old)
            return _success(res, old)
        if meta.get("finalizers"):
            grace = options.get("gracePeriodSeconds")
            if grace is None and res.plural == "pods":  # as the API server: the Pod's own grace period
                grace = (old.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            new_meta = {**meta, "deletionTimestamp": now(),
                        "deletionGracePeriodSeconds": int(grace) if grace is not None else 0}
            if new_meta.get("generation"):
                new_meta["generation"] = int(new_meta["generation"]) + 1
            rv = self.store.next_rv()
            new_meta["resourceVersion"] = str(rv)
            obj = {**old, "metadata": new_meta}
            self.store.put(res.key, obj, rv=rv, event="MODIFIED")
            return obj
        rv = self.store.next_rv()
        obj = {**old, "metadata": {**meta, "resourceVersion": str(rv)}}
        self._remove(res, obj, rv)
        if res.custom or res.plural in RETURN_DELETED:
            return obj
        return _success(res, old)

    def delete_collection(self, res: Resource, ns: str | None, options: Body | None, *,
                          label_selector: str | None, field_selector: str | None,
                          dry_run: bool = False) -> Body:
        listed = self.list(res, ns, label_selector=label_selector, field_selector=field_selector)
        deleted = []
        for obj in listed["items"]:
            meta = obj["metadata"]
            try:
                self.delete(res, meta.get("namespace") or None, meta["name"], options,
                            dry_run=dry_run)
                deleted.append(obj)
            except ApiError as exc:
                if exc.code != 404:
                    raise
        return {**listed, "items": deleted}

    def _remove(self, res: Resource, obj: Body, rv: int) -> None:
        """Final deletion: the DELETED event, then what follows from it."""
        meta = obj["metadata"]
        self.store.remove(res.key, obj, rv=rv)
        uid = meta.get("uid", "")
        orphan = uid in self._orphaning
        self._orphaning.discard(uid)
        if res is self.crds:
            for resource in self.registry.unregister_crd(meta["name"]):
                self.store.drop_resource(resource.key)
        if uid and uid in self.store.dependents:
            self._later(self._collect, uid, orphan)
        namespace = meta.get("namespace")
        if namespace and namespace in self._terminating:
            self._later(self._finish_namespace, namespace)

    def _later(self, fn: Any, *args: Any) -> None:
        """Background work (GC, namespace clean-up) runs after the request that caused it."""
        try:
            asyncio.get_running_loop().call_soon(fn, *args)
        except RuntimeError:
            fn(*args)

    def _collect(self, owner_uid: str, orphan: bool) -> None:
        """Garbage-collect dependents of a deleted owner (or orphan them)."""
        for resource_key, key in list(self.store.dependents.get(owner_uid, ())):
            dependent = self.store.get(resource_key, key)
            res = self.registry.get(*resource_key)
            if dependent is None or res is None:
                continue
            refs = dependent["metadata"].get("ownerReferences") or []
            alive = [r for r in refs if r.get("uid") != owner_uid and r.get("uid") in self.store.uids]
            if orphan or alive:
                kept = [r for r in refs if r.get("uid") != owner_uid]
                meta = {**dependent["metadata"], "ownerReferences": kept}
                if not kept:
                    del meta["ownerReferences"]
                rv = self.store.next_rv()
                meta["resourceVersion"] = str(rv)
                self.store.put(resource_key, {**dependent, "metadata": meta}, rv=rv,
                               event="MODIFIED")
            else:
                try:
                    self.delete(res, key[0] or None, key[1], {"propagationPolicy": "Background"})
                except ApiError:
                    pass

    def _delete_namespace(self, ns_obj: Body) -> Body:
        name = ns_obj["metadata"]["name"]
        rv = self.store.next_rv()
        obj = {**ns_obj, "metadata": {**ns_obj["metadata"], "deletionTimestamp": now(),
                                      "deletionGracePeriodSeconds": 0,
                                      "resourceVersion": str(rv)},
               "status": {"phase": "Terminating"}}
        self.store.put(self.namespaces.key, obj, rv=rv, event="MODIFIED")
        self._terminating.add(name)
        for resource_key, dependent in list(self.store.namespaced_in(name)):
            res = self.registry.get(*resource_key)
            if res is not None:
                try:
                    self.delete(res, name, dependent["metadata"]["name"])
                except ApiError:
                    pass
        self._finish_namespace(name)
        return obj

    def _finish_namespace(self, name: str) -> None:
        if name not in self._terminating:
            return
        if next(iter(self.store.namespaced_in(name)), None) is not None:
            return
        self._terminating.discard(name)
        ns_obj = self.store.get(self.namespaces.key, ("", name))
        if ns_obj is not None:
            rv = self.store.next_rv()
            final = {**ns_obj, "metadata": {**ns_obj["metadata"], "resourceVersion": str(rv)}}
            self.store.remove(self.namespaces.key, final, rv=rv)

    # -- checks ----------------------------------------------------------------------------
    def _stale(self, res: Resource, name: str) -> ApiError:
        return errors.conflict(res.plural, res.group, name,
                               "the object has been modified; please apply your changes to the "
                               "latest version and try again")

    def _check_subresource(self, res: Resource, subresource: str | None) -> None:
        if subresource is not None and subresource not in res.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource",
                           details={})

    def _check_body(self, res: Resource, body: Any) -> Body:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        api_version = body.get("apiVersion")
        kind = body.get("kind")
        if api_version and api_version != res.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({res.api_version})")
        if kind and kind != res.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({res.kind})")
        if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
            raise errors.bad_request("metadata must be an object")
        return {**body, "apiVersion": res.api_version, "kind": res.kind}

    def _check_namespace(self, res: Resource, ns: str | None, meta: Body, *,
                         creating: bool) -> None:
        body_ns = meta.get("namespace")
        if res.namespaced:
            if body_ns and body_ns != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request")
            meta["namespace"] = ns
            if creating:
                if self.store.get(self.namespaces.key, ("", ns or "")) is None:
                    raise errors.not_found("namespaces", "", ns or "")
                if ns in self._terminating:
                    raise errors.forbidden(
                        res.plural, res.group, meta.get("name", ""),
                        f'{res.qualified} "{meta.get("name") or meta.get("generateName", "")}" '
                        f"is forbidden: unable to create new content in namespace {ns} because "
                        "it is being terminated")
        else:
            meta.pop("namespace", None)

    def _admit(self, res: Resource, obj: Body, validation: str) -> tuple[Body, Warnings]:
        """Metadata checks for every kind; schema pruning/defaulting/validation for custom ones."""
        warnings: Warnings = []
        causes: list[Cause] = []
        if res.custom and res.schema:
            obj, unknown, causes = schema.admit(obj, res.schema)
            if unknown:
                if validation == "Strict":
                    text = ", ".join(f'unknown field "{p}"' for p in unknown)
                    raise errors.bad_request(
                        f'{res.kind} in version "{res.version}" cannot be handled as a '
                        f"{res.kind}: strict decoding error: {text}")
                if validation == "Warn":
                    warnings.extend(f'unknown field "{p}"' for p in unknown)
        meta = obj["metadata"]
        name = meta.get("name", "")
        if res is self.crds:
            causes.extend(_crd_causes(obj))
        pattern = _DNS_LABEL if res is self.namespaces else _DNS_SUBDOMAIN
        limit = 63 if res is self.namespaces else 253
        if not pattern.match(name) or len(name) > limit:
            causes.insert(0, Cause(
                "FieldValueInvalid", "metadata.name",
                f"Invalid value: {errors.show(name)}: a lowercase RFC 1123 "
                f"{'label' if res is self.namespaces else 'subdomain'} must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character"))
        for field in ("labels", "annotations"):
            value = meta.get(field)
            if value is None:
                continue
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                causes.append(Cause("FieldValueTypeInvalid", f"metadata.{field}",
                                    f"Invalid value: {errors.show(value)}: must be a map of "
                                    "string to string"))
        finalizers = meta.get("finalizers")
        if finalizers is not None and not (isinstance(finalizers, list) and all(
                isinstance(f, str) for f in finalizers)):
            causes.append(Cause("FieldValueTypeInvalid", "metadata.finalizers",
                                "Invalid value: must be a list of strings"))
        for n, ref in enumerate(meta.get("ownerReferences") or []):
            for key in ("apiVersion", "kind", "name", "uid"):
                if not isinstance(ref, dict) or not ref.get(key):
                    causes.append(Cause("FieldValueRequired",
                                        f"metadata.ownerReferences[{n}].{key}", "Required value"))
        if causes:
            raise errors.invalid(res.kind, res.group, name, causes)
        if not res.custom:
            obj = {**obj, "metadata": dict(meta)}
        return obj, warnings


def _crd_causes(crd: Body) -> list[Cause]:
    """The few CRD rules the emulator relies on to register a resource."""
    causes: list[Cause] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    for field, value in (("spec.group", spec.get("group")), ("spec.names.plural", names.get("plural")),
                         ("spec.names.kind", names.get("kind"))):
        if not value:
            causes.append(Cause("FieldValueRequired", field, "Required value"))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(Cause("FieldValueRequired", "spec.versions", "Required value"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(Cause("FieldValueInvalid", "spec.versions",
                            "Invalid value: must have exactly one version marked as storage version"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(Cause("FieldValueNotSupported", "spec.scope",
                            f"Unsupported value: {errors.show(spec.get('scope'))}: supported values: "
                            '"Cluster", "Namespaced"'))
    if not causes:
        expected = f"{names['plural']}.{spec['group']}"
        if crd["metadata"].get("name") != expected:
            causes.append(Cause("FieldValueInvalid", "metadata.name",
                                f"Invalid value: {errors.show(crd['metadata'].get('name'))}: "
                                f'must be spec.names.plural+"."+spec.group'))
    return causes
