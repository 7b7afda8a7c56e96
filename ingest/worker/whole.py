"""A small staged bundle read with one GET and served from memory, every file its own parallel PUT.

For a bundle of a few small files the round trips are the cost, not the bytes: reading the
recorded index, then a ranged read per batch, then one PUT after another inside that batch. A
bundle no larger than INGEST_POOL_MAX_BUNDLE_BYTES is instead fetched whole, checked against the
SHA-256 the API recorded while staging it (a staged copy that changed is not ingested), scanned
again in memory (the same pure `TarScanner` the API used, so the index cannot disagree), and its
files are handed to the copy threads one per batch, so they are written in parallel.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io

from ingest.bundle import Limits, Member, TarIndex, TarScanner
from ingest.storage import Storage
from ingest.worker.transfer import Batch, Copy


class StagedCopyChanged(Exception):
    """The staged bytes are not the ones the API staged: not the bundle's fault, worth a retry."""


@dataclasses.dataclass(frozen=True)
class WholeBundle:
    data: bytes
    index: TarIndex

    @classmethod
    def read(cls, storage: Storage, bucket: str, key: str, limits: Limits, sha256: str | None = None) -> WholeBundle:
        data = storage.get_bytes(bucket, key)
        if sha256 and hashlib.sha256(data).hexdigest() != sha256:
            raise StagedCopyChanged(
                f"the staged bundle {bucket}/{key} does not match the SHA-256 recorded when it was staged")
        scanner = TarScanner(limits)
        scanner.feed(data)
        return cls(data, scanner.finish())

    def open(self, member: Member) -> io.BytesIO:
        return io.BytesIO(memoryview(self.data)[member.data_offset:member.data_end])

    def batches(self, planned: list[tuple[Member, Copy]]) -> list[Batch]:
        """One batch per file (the bytes are here already): the copy threads PUT them side by side."""
        return [Batch([dataclasses.replace(copy, open=functools.partial(self.open, member))])
                for member, copy in planned]
