"""Which /move sources a user may read: decided by the API before a job exists, again by the worker.

Two kinds of source:
- `s3://bucket/key`, only under the `bucket` or `bucket/prefix` entries an operator lists in
  `INGEST_MOVE_S3_SOURCES`, and never in the service's own staging or archive bucket (other
  users' bundles, indexes, /move documents and archived files live there), whatever the list says.
- An absolute path under one of the user's roots (`ingest.users.roots_for`), written plainly: no
  `.`, `..` or empty components, so what the API checked is what the worker walks.

Both decisions are lexical (settings and the text of the source), so the API can refuse at once
with 400 and no job; what needs the file itself (does it exist, is it a regular file reached
without a symbolic link) is the worker's, which fails the job at `move files`. Every refusal is
the same sentence, whether the source is absent, forbidden or not a file: a user learns nothing
about a source they may not read, not even that it exists.
"""
from __future__ import annotations

import os
from typing import Final

from ingest.users import roots_for

S3_SCHEME: Final = "s3://"


def refusal(label: str, source: object) -> str:
    return (f"{label}: source {source!r} cannot be moved: it does not exist, or it is not a file this service "
            "may read for you")


def split_s3(source: str) -> tuple[str, str] | None:
    """(bucket, key) of `s3://bucket/key`, or None if it is not of that form or its key has `.`/`..`/empty segments."""
    bucket, _, key = source[len(S3_SCHEME):].partition("/")
    if not bucket or not key or any(part in ("", ".", "..") for part in key.split("/")):
        return None
    return bucket, key


def s3_allowed(bucket: str, key: str, *, allowed: tuple[str, ...], own_buckets: tuple[str, ...]) -> bool:
    if bucket in own_buckets:
        return False
    for entry in allowed:
        listed_bucket, _, prefix = entry.partition("/")
        prefix = prefix.strip("/")
        if listed_bucket == bucket and (not prefix or key.startswith(prefix + "/")):
            return True
    return False


def local_place(path: str, roots: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    """(root, components below it) of a plainly written absolute path under one of `roots`, else None."""
    if not os.path.isabs(path) or path.startswith("//") or os.path.normpath(path) != path or "\0" in path:
        return None
    for root in roots:
        if path.startswith(root.rstrip("/") + "/"):
            parts = tuple(path[len(root.rstrip("/")) + 1:].split("/"))
            return root, parts
    return None


def check(source: object, *, label: str, user: str | None, roots: tuple[str, ...], s3_sources: tuple[str, ...],
          own_buckets: tuple[str, ...]) -> str | None:
    """The refusal for a source this user may not read, judged on its text alone; None if it may be tried."""
    if not isinstance(source, str):
        return None  # a missing or non-text source is the document's problem, named at `move files`
    if source.startswith(S3_SCHEME):
        where = split_s3(source)
        if where is None or not s3_allowed(*where, allowed=s3_sources, own_buckets=own_buckets):
            return refusal(label, source)
        return None
    if local_place(source, roots_for(roots, user)) is None:
        return refusal(label, source)
    return None
