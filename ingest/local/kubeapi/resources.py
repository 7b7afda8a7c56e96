"""What the emulator serves: one :class:`Resource` per (group, version, plural).

The registry answers the questions every other module asks - which resource is behind this URL,
is it namespaced, does it have a ``status`` subresource, which schema and printer columns does it
carry. Built-in kinds are declared here as plain data; custom resources come from
CustomResourceDefinition objects, whether loaded from ``--crds`` at start or created through the
API later (kopf and kubectl both create CRDs at run time, and discovery must follow at once).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CRD_GROUP = "apiextensions.k8s.io"


@dataclasses.dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    format: str = ""
    description: str = ""
    priority: int = 0


@dataclasses.dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    printer_columns: tuple[PrinterColumn, ...] = ()
    schema: dict[str, Any] | None = None  # openAPIV3Schema for custom resources
    custom: bool = False
    selectable_fields: tuple[str, ...] = ()  # field-selector labels beyond metadata.*

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _core(plural: str, singular: str, kind: str, *, namespaced: bool = True,
          short: tuple[str, ...] = (), categories: tuple[str, ...] = (),
          sub: Iterable[str] = (), fields: tuple[str, ...] = ()) -> Resource:
    return Resource("", "v1", plural, singular, kind, namespaced, short, categories,
                    frozenset(sub), selectable_fields=fields)


EVENT_FIELDS = (
    "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
    "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
    "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
)

BUILTINS: tuple[Resource, ...] = (
    _core("namespaces", "namespace", "Namespace", namespaced=False, short=("ns",),
          sub=("status",), fields=("status.phase",)),
    _core("pods", "pod", "Pod", short=("po",), categories=("all",), sub=("status",),
          fields=("status.phase", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                  "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName")),
    _core("events", "event", "Event", short=("ev",), fields=EVENT_FIELDS),
    _core("configmaps", "configmap", "ConfigMap", short=("cm",)),
    _core("secrets", "secret", "Secret", fields=("type",)),
    _core("serviceaccounts", "serviceaccount", "ServiceAccount", short=("sa",)),
    _core("services", "service", "Service", short=("svc",), categories=("all",),
          sub=("status",)),
    Resource("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
    Resource("events.k8s.io", "v1", "events", "event", "Event", True, ("ev",),
             selectable_fields=("regarding.kind", "regarding.namespace", "regarding.name",
                                "regarding.uid", "reason", "type", "reportingController")),
    Resource(CRD_GROUP, "v1", "customresourcedefinitions", "customresourcedefinition",
             "CustomResourceDefinition", False, ("crd", "crds"), ("api-extensions",),
             frozenset({"status"})),
)


def from_crd(crd: dict[str, Any]) -> list[Resource]:
    """The served versions of a CRD as resources (the registry accepts one object per version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out: list[Resource] = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        columns = tuple(
            PrinterColumn(
                name=c["name"], type=c.get("type", "string"), json_path=c.get("jsonPath", ""),
                format=c.get("format", ""), description=c.get("description", ""),
                priority=int(c.get("priority", 0)),
            )
            for c in version.get("additionalPrinterColumns") or []
        )
        schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or None
        subresources = frozenset((version.get("subresources") or {}).keys())
        selectable = tuple(
            f["jsonPath"].lstrip(".") for f in version.get("selectableFields") or []
        )
        out.append(Resource(
            group=spec.get("group", ""), version=version["name"], plural=names["plural"],
            singular=names.get("singular") or names["kind"].lower(), kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=subresources, printer_columns=columns, schema=schema, custom=True,
            selectable_fields=selectable,
        ))
    return out


class Registry:
    """Resources by URL key; CRD-backed entries come and go with their CRD objects."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str], Resource] = {}
        self._by_crd: dict[str, list[Resource]] = {}
        for resource in BUILTINS:
            self._by_key[resource.key] = resource
        self.generation = 0  # bumps on every change; discovery/openapi caches key on it

    def get(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_key.get((group, version, plural))

    def __iter__(self) -> Iterator[Resource]:
        return iter(list(self._by_key.values()))

    def group_versions(self) -> dict[str, list[str]]:
        """group -> versions, in registration order (first is preferred)."""
        out: dict[str, list[str]] = {}
        for resource in self._by_key.values():
            versions = out.setdefault(resource.group, [])
            if resource.version not in versions:
                versions.append(resource.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[Resource]:
        return [r for r in self._by_key.values() if r.group == group and r.version == version]

    def by_kind(self, api_version: str, kind: str) -> Resource | None:
        for resource in self._by_key.values():
            if resource.api_version == api_version and resource.kind == kind:
                return resource
        return None

    def register_crd(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        self.unregister_crd(name)
        resources = from_crd(crd)
        for resource in resources:
            if resource.key in self._by_key and not self._by_key[resource.key].custom:
                continue  # a CRD cannot shadow a built-in
            self._by_key[resource.key] = resource
        self._by_crd[name] = resources
        self.generation += 1

    def unregister_crd(self, name: str) -> list[Resource]:
        removed = self._by_crd.pop(name, [])
        for resource in removed:
            if self._by_key.get(resource.key) is resource:
                del self._by_key[resource.key]
        if removed:
            self.generation += 1
        return removed
