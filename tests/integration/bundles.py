"""Bundles made by code for the integration tests, written by the service's one bundle writer.

`bundle` writes what pacifica-uploader writes (data/ members, metadata.txt last) unless a test asks
for something else: its own metadata (bytes, or a document with wrong sums), metadata first, extra
members. `tar_bytes` writes any list of members, for bundles no uploader would make.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from ingest.bundle import writer

MTIME = 1_795_800_686  # 2026-11-27T17:31:26Z: every member and Files entry carries this one time


def files_entry(name: str, subdir: str, data: bytes, hashtype: str = "sha1", **override: Any) -> dict[str, Any]:
    """The uploader's Files entry for `data`, naming exactly `subdir` and `name` (odd ones included)."""
    path = f"data/{subdir}/{name}" if subdir else f"data/{name}"
    entry = writer.files_entry(path, size=len(data), mtime=MTIME, hashtype=hashtype,
                               hashsum=hashlib.new(hashtype, data).hexdigest())
    return {**entry, "name": name, "subdir": subdir, **override}


TRANSACTION = [
    {"destinationTable": "Transactions.submitter", "value": 10},
    {"destinationTable": "Transactions.project", "value": "1234a"},
    {"destinationTable": "Transactions.instrument", "value": 54},
    {"destinationTable": "TransactionKeyValue", "key": "Tag", "value": "integration"},
]


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A tar of `members` (name, bytes) in order."""
    return b"".join(writer.tar(writer.FileData.of(name, data, mtime=MTIME) for name, data in members))


# An unlisted member (ignored by the ingest) that lifts a bundle above the test stack's
# INGEST_POOL_MAX_BUNDLE_BYTES (4 MiB), so it gets a worker Pod of its own in pool mode too.
OWN_POD: tuple[tuple[str, bytes], ...] = (("padding.bin", bytes(5 * 1024 * 1024)),)


def bundle(files: dict[str, bytes], *, metadata: Any = None, extra_members: Iterable[tuple[str, bytes]] = (),
           metadata_last: bool = True) -> tuple[bytes, list[dict[str, Any]]]:
    """A bundle of `files` ({"subdir/name": bytes}) with a correct metadata.txt unless one is given."""
    if metadata is None:
        metadata = list(TRANSACTION)
        for path, data in files.items():
            subdir, _, name = path.rpartition("/")
            metadata.append(files_entry(name, subdir, data))
    members = [(f"data/{path}", data) for path, data in files.items()] + list(extra_members)
    raw = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    members = members + [("metadata.txt", raw)] if metadata_last else [("metadata.txt", raw)] + members
    return tar_bytes(members), metadata if isinstance(metadata, list) else []
