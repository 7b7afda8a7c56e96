"""The API server's rules for each verb, without HTTP: what a write may change and what follows.

This is where the strictness lives: namespaces come from the URL and must exist; names are
validated or generated; every write takes the next ``resourceVersion`` and a stale one is a 409;
``status`` is isolated behind its subresource (and dropped on create, as for real custom
resources); ``generation`` moves only when the spec does; custom objects are pruned, defaulted and
validated against their schema; a write that removes the last finalizer of an object being
deleted completes its deletion.

What one object must look like to be admitted is in ``admission.py``, how lists are paged in
``listing.py``, what a deletion sets off (finalizers, garbage collection, namespace termination)
in ``deletion.py``; this module is what a create, update or patch does to the store.

The HTTP layer (``server.py``) parses requests and calls these methods; everything here raises
:class:`~.errors.ApiError` and returns plain dicts. Stored objects are never mutated: each write
builds a new top-level dict and a new ``metadata`` and shares the rest with the previous version.
"""
from __future__ import annotations

import json
import random
import uuid
from typing import Any

from . import admission, errors, listing, patching, selectors
from .deletion import SYSTEM_NAMESPACES, Deletions
from .errors import ApiError, Cause
from .resources import CRD_GROUP, Registry, Resource
from .store import Body, Store

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class Cluster:
    """The verbs over one store: create, update, patch, delete, and the deletions they cause."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        ns = self.registry.get("", "v1", "namespaces")
        assert ns is not None
        self.namespaces = ns
        self.crds = self.registry.get(CRD_GROUP, "v1", "customresourcedefinitions")
        self.deletions = Deletions(store, registry, namespaces=ns, crds=self.crds)

    def bootstrap(self) -> None:
        """System namespaces exist on every cluster; CRDs restored from a dump re-register."""
        for crd in self.store.items(self.crds.key):  # type: ignore[union-attr]
            self.registry.register_crd(crd)
        for obj in self.store.items(self.namespaces.key):
            if obj["metadata"].get("deletionTimestamp"):
                self.deletions.terminating.add(obj["metadata"]["name"])
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
        return listing.get_object(self.store, res, ns, name)

    def list(self, res: Resource, ns: str | None, **query: Any) -> Body:
        """One page of a list, as a real server pages it (see listing.py)."""
        return listing.list_page(self.store, res, ns, **query)

    def matcher(self, res: Resource, label_selector: str | None,
                field_selector: str | None) -> selectors.Predicate:
        return listing.matcher(res, label_selector, field_selector)

    # -- create ----------------------------------------------------------------------------
    def create(self, res: Resource, ns: str | None, body: Any, *, dry_run: bool = False,
               validation: str = "Warn") -> tuple[Body, admission.Warnings]:
        body = admission.check_body(res, body)
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
        meta["creationTimestamp"] = admission.now()
        meta["generation"] = 1
        obj = {**body, "metadata": meta}
        if res.has_status:
            obj = admission.initial_status(res, obj)
        obj, warnings = admission.admit(res, obj, validation, is_crd=res is self.crds,
                                         is_namespace=res is self.namespaces)
        if self.store.get(res.key, (ns or "", name)) is not None:
            raise errors.already_exists(res.plural, res.group, name)
        if res is self.crds:
            obj = admission.crd_status(obj)
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

    # -- update / patch --------------------------------------------------------------------
    def update(self, res: Resource, ns: str | None, name: str, body: Any, *,
               subresource: str | None = None, dry_run: bool = False,
               validation: str = "Warn") -> tuple[Body, admission.Warnings]:
        body = admission.check_body(res, body)
        admission.check_subresource(res, subresource)
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
            raise admission.stale(res, name)
        return self._write(res, old, body, subresource=subresource, dry_run=dry_run,
                           validation=validation)

    def patch(self, res: Resource, ns: str | None, name: str, kind: str, patch: Any, *,
              subresource: str | None = None, dry_run: bool = False, validation: str = "Warn",
              force: bool = False) -> tuple[Body, admission.Warnings, bool]:
        """Apply a patch of ``kind`` (json, merge, strategic, apply); returns (obj, warnings, created)."""
        admission.check_subresource(res, subresource)
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
            raise admission.stale(res, name)
        if meta.get("name", name) != name:
            raise errors.invalid(res.kind, res.group, name, [Cause(
                "FieldValueInvalid", "metadata.name",
                f"Invalid value: {errors.show(meta.get('name'))}: field is immutable")])
        obj, warnings = self._write(res, old, new, subresource=subresource, dry_run=dry_run,
                                    validation=validation)
        return obj, warnings, False

    def _write(self, res: Resource, old: Body, new: Body, *, subresource: str | None,
               dry_run: bool, validation: str) -> tuple[Body, admission.Warnings]:
        old_meta = old["metadata"]
        name = old_meta["name"]
        if res.has_status and subresource == "status":
            # Only status may change through /status; everything else stays as stored.
            obj = admission.without(old, "status")
            if "status" in new:
                obj["status"] = new["status"]
            meta = dict(old_meta)
        else:
            obj = {**new, "apiVersion": old.get("apiVersion", res.api_version),
                   "kind": old.get("kind", res.kind)}
            if res.has_status:
                obj = admission.without(obj, "status")
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
        obj, warnings = admission.admit(res, obj, validation, is_crd=res is self.crds,
                                         is_namespace=res is self.namespaces)
        meta = obj["metadata"]
        if res is self.crds and subresource is None:
            obj = admission.crd_status(obj)
        ignored = ("metadata", "status") if res.has_status else ("metadata",)
        if admission.without(obj, *ignored) != admission.without(old, *ignored):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if obj == old:
            return old, warnings  # a no-op write keeps its resourceVersion and sends no event
        if dry_run:
            return obj, warnings
        rv = self.store.next_rv()
        meta["resourceVersion"] = str(rv)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.deletions.remove(res, obj, rv)
            return obj, warnings
        self.store.put(res.key, obj, rv=rv, event="MODIFIED")
        if res is self.crds:
            self.registry.register_crd(obj)
        return obj, warnings

    # -- delete (deletion.py) -------------------------------------------------------------
    def delete(self, res: Resource, ns: str | None, name: str, options: Body | None = None, *,
               dry_run: bool = False) -> Body:
        return self.deletions.delete(res, ns, name, options, dry_run=dry_run)

    def delete_collection(self, res: Resource, ns: str | None, options: Body | None, *,
                          label_selector: str | None, field_selector: str | None,
                          dry_run: bool = False) -> Body:
        return self.deletions.delete_collection(res, ns, options, label_selector=label_selector,
                                                field_selector=field_selector, dry_run=dry_run)

    # -- checks ----------------------------------------------------------------------------
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
                if ns in self.deletions.terminating:
                    raise errors.forbidden(
                        res.plural, res.group, meta.get("name", ""),
                        f'{res.qualified} "{meta.get("name") or meta.get("generateName", "")}" '
                        f"is forbidden: unable to create new content in namespace {ns} because "
                        "it is being terminated")
        else:
            meta.pop("namespace", None)
