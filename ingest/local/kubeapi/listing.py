"""Reads as a real server serves them: one object, or a list page by page (``limit``, ``continue``).

A list reads one consistent snapshot of the store (``Store.snapshot``) at the first page's
version, so a paginated list is the same list however long the client takes between pages; a
token older than the store's history is 410 Expired, as after an etcd compaction.
"""
from __future__ import annotations

from . import continuation, errors, selectors
from .resources import Resource
from .store import Body, Store


def get_object(store: Store, res: Resource, ns: str | None, name: str) -> Body:
    obj = store.get(res.key, (ns or "", name))
    if obj is None:
        raise errors.not_found(res.plural, res.group, name)
    return obj


def list_page(store: Store, res: Resource, ns: str | None, *, label_selector: str | None = None,
              field_selector: str | None = None, limit: int = 0,
              continue_token: str | None = None, resource_version: str | None = None,
              resource_version_match: str | None = None) -> Body:
    """One page of a list, as a real server pages it (``limit`` + ``continue``).

    Every page of one list shows the objects as they were at the first page's version (the
    token carries it, with the last key served); a token whose version fell out of the
    compaction window is 410 Expired. ``remainingItemCount`` is given when no selector is
    set, exactly as the real server does (it cannot count matches without reading them).
    """
    if limit < 0:
        raise errors.bad_request("limit must not be negative")
    match = matcher(res, label_selector, field_selector)
    filtered = bool(label_selector or field_selector)
    rv = store.rv
    after: tuple[str, str] | None = None
    if continue_token:
        if resource_version:
            raise errors.bad_request(
                "specifying resource version is not allowed when using continue")
        rv, after = continuation.decode(continue_token, current=store.rv)
    elif resource_version_match == "Exact":
        try:
            rv = int(resource_version or "")
        except ValueError:
            raise errors.bad_request(
                f'invalid resource version "{resource_version}"') from None
    if store.compacted(res.key, rv):
        raise continuation.expired(after)
    objects, total = store.snapshot(res.key, ns, rv=rv, after=after)
    items: list[Body] = []
    served = 0  # objects read for this page, matching or not
    last: tuple[str, str] | None = None
    more = False
    for obj in objects:
        if limit and len(items) >= limit:
            more = True
            break
        served += 1
        meta = obj["metadata"]
        last = (meta.get("namespace", ""), meta["name"])
        if match(obj):
            items.append(obj)
    metadata: Body = {"resourceVersion": str(rv)}
    if more and last is not None:
        metadata["continue"] = continuation.encode(rv, last)
        if not filtered:
            metadata["remainingItemCount"] = total - served
    return {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": metadata,
            "items": items}

def matcher(res: Resource, label_selector: str | None,
            field_selector: str | None) -> selectors.Predicate:
    return selectors.combine(
        selectors.parse_labels(label_selector),
        selectors.parse_fields(field_selector, res.selectable_fields),
    )
