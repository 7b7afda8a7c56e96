"""Bundles made by code for the integration tests: a tar of metadata.txt + data/, as Pacifica's bundler writes."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections.abc import Iterable
from typing import Any


def files_entry(name: str, subdir: str, data: bytes, hashtype: str = "sha1", **override: Any) -> dict[str, Any]:
    entry = {
        "destinationTable": "Files", "name": name, "subdir": subdir, "size": len(data),
        "hashtype": hashtype, "hashsum": hashlib.new(hashtype, data).hexdigest(),
        "mimetype": "application/octet-stream", "ctime": "2026-11-27T17:31:26", "mtime": "2026-11-27T17:31:26",
    }
    entry.update(override)
    return entry


TRANSACTION = [
    {"destinationTable": "Transactions.submitter", "value": 10},
    {"destinationTable": "Transactions.project", "value": "1234a"},
    {"destinationTable": "Transactions.instrument", "value": 54},
    {"destinationTable": "TransactionKeyValue", "key": "Tag", "value": "integration"},
]


def tar_bytes(members: Iterable[tuple[str, bytes]], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


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
