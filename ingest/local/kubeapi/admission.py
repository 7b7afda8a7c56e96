"""What the API server admits, per object, before a write: the body, the metadata, the schema.

Pure functions of a resource and a body (no store): the body must be an object of the URL's
kind; names are RFC 1123 (a label for namespaces, a subdomain otherwise); labels, annotations,
finalizers and owner references are typed; custom objects are pruned, defaulted and validated
against their schema (unknown fields warned about, or refused under ``fieldValidation=Strict``);
a CRD must name what it registers. A create's initial status and a CRD's accepted names come from
here too. Every refusal is an :class:`~.errors.ApiError` carrying the real server's causes.
"""
from __future__ import annotations

import datetime
import re
from typing import Any

from . import errors, schema
from .errors import ApiError, Cause
from .resources import Resource
from .store import Body

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
Warnings = list[str]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def without(obj: Body, *keys: str) -> Body:
    return {k: v for k, v in obj.items() if k not in keys}


def check_body(res: Resource, body: Any) -> Body:
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


def check_subresource(res: Resource, subresource: str | None) -> None:
    if subresource is not None and subresource not in res.subresources:
        raise ApiError(404, "NotFound", "the server could not find the requested resource",
                       details={})


def stale(res: Resource, name: str) -> ApiError:
    return errors.conflict(res.plural, res.group, name,
                           "the object has been modified; please apply your changes to the "
                           "latest version and try again")


def admit(res: Resource, obj: Body, validation: str, *, is_crd: bool, is_namespace: bool
          ) -> tuple[Body, Warnings]:
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
    if is_crd:
        causes.extend(crd_causes(obj))
    pattern = _DNS_LABEL if is_namespace else _DNS_SUBDOMAIN
    limit = 63 if is_namespace else 253
    if not pattern.match(name) or len(name) > limit:
        causes.insert(0, Cause(
            "FieldValueInvalid", "metadata.name",
            f"Invalid value: {errors.show(name)}: a lowercase RFC 1123 "
            f"{'label' if is_namespace else 'subdomain'} must consist of lower case "
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


def initial_status(res: Resource, obj: Body) -> Body:
    """Create cannot set status (custom resources); built-ins start from their defaults."""
    obj = without(obj, "status")
    if res.key == ("", "v1", "pods"):
        obj["status"] = {"phase": "Pending"}
    elif res.key == ("", "v1", "services"):
        obj["status"] = {"loadBalancer": {}}
    return obj


def crd_status(crd: Body) -> Body:
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


def crd_causes(crd: Body) -> list[Cause]:
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
