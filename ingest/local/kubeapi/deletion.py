"""Deletion as a real API server does it, and what it sets off.

A DELETE with finalizers only marks the object (``deletionTimestamp``); the write that removes
the last finalizer removes it (``Cluster`` calls ``remove``). A removal garbage-collects the
object's dependents (by ``ownerReferences``) or orphans them (``propagationPolicy=Orphan``), and
a namespace being deleted is ``Terminating`` until the last object in it is gone, refusing new
ones meanwhile. Collection runs after the request that caused it, as the real controllers do.
"""
from __future__ import annotations

import asyncio
from typing import Any

from . import admission, errors, listing
from .errors import ApiError, Cause
from .resources import Registry, Resource
from .store import Body, Store

# Kinds whose DELETE answers with the deleted object (the rest answer with a Status).
RETURN_DELETED = frozenset({"pods", "services"})
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _success(res: Resource, obj: Body) -> Body:
    meta = obj["metadata"]
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": meta["name"], "group": res.group, "kind": res.plural,
                        "uid": meta.get("uid")}}


class Deletions:
    """Deletes, and the garbage collector and namespace controller they need."""

    def __init__(self, store: Store, registry: Registry, *, namespaces: Resource,
                 crds: Resource | None) -> None:
        self.store = store
        self.registry = registry
        self.namespaces = namespaces
        self.crds = crds
        self.orphaning: set[str] = set()  # uids deleted with propagationPolicy=Orphan
        self.terminating: set[str] = set()  # namespaces being deleted

    def delete(self, res: Resource, ns: str | None, name: str, options: Body | None = None, *,
               dry_run: bool = False) -> Body:
        options = options or {}
        old = listing.get_object(self.store, res, ns, name)
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
            self.orphaning.add(meta["uid"])
        if meta.get("deletionTimestamp"):
            return old  # already being deleted: waiting for finalizers
        if res is self.namespaces:
            self._delete_namespace(old)
            return _success(res, old)
        if meta.get("finalizers"):
            grace = options.get("gracePeriodSeconds")
            if grace is None and res.plural == "pods":  # as the API server: the Pod's own grace period
                grace = (old.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            new_meta = {**meta, "deletionTimestamp": admission.now(),
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
        self.remove(res, obj, rv)
        if res.custom or res.plural in RETURN_DELETED:
            return obj
        return _success(res, old)

    def delete_collection(self, res: Resource, ns: str | None, options: Body | None, *,
                          label_selector: str | None, field_selector: str | None,
                          dry_run: bool = False) -> Body:
        listed = listing.list_page(self.store, res, ns, label_selector=label_selector,
                                    field_selector=field_selector)
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

    def remove(self, res: Resource, obj: Body, rv: int) -> None:
        """Final deletion: the DELETED event, then what follows from it."""
        meta = obj["metadata"]
        self.store.remove(res.key, obj, rv=rv)
        uid = meta.get("uid", "")
        orphan = uid in self.orphaning
        self.orphaning.discard(uid)
        if res is self.crds:
            for resource in self.registry.unregister_crd(meta["name"]):
                self.store.drop_resource(resource.key)
        if uid and uid in self.store.dependents:
            self._later(self._collect, uid, orphan)
        namespace = meta.get("namespace")
        if namespace and namespace in self.terminating:
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
        obj = {**ns_obj, "metadata": {**ns_obj["metadata"], "deletionTimestamp": admission.now(),
                                      "deletionGracePeriodSeconds": 0,
                                      "resourceVersion": str(rv)},
               "status": {"phase": "Terminating"}}
        self.store.put(self.namespaces.key, obj, rv=rv, event="MODIFIED")
        self.terminating.add(name)
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
        if name not in self.terminating:
            return
        if next(iter(self.store.namespaced_in(name)), None) is not None:
            return
        self.terminating.discard(name)
        ns_obj = self.store.get(self.namespaces.key, ("", name))
        if ns_obj is not None:
            rv = self.store.next_rv()
            final = {**ns_obj, "metadata": {**ns_obj["metadata"], "resourceVersion": str(rv)}}
            self.store.remove(self.namespaces.key, final, rv=rv)
