"""The bytes of a tus upload in the staging bucket: one S3 multipart upload and its checkpoints.

The staged bundle is the multipart upload's object (`bundles/<job_id>.tar`), so the final PATCH
costs one CompleteMultipartUpload, never a copy. Between PATCHes, what any replica needs to go on
is a checkpoint: the parts written so far (number, ETag, size), the tar scanner's state, the SHA-1
of the large members hashed so far, and - in a second object - the bytes past the last whole part.
Both are written under a new generation before the IngestJob names it, and the old generation is
removed only after, so the job always names a complete checkpoint. Completing with the recorded
ETags also fences the parts: a replica that lost its lock and still wrote a part makes completion
fail (InvalidPart) instead of slipping its bytes in.

The checkpoint is a pickle: it only ever holds our own objects (TarScanner, Members, numbers) and
sits in the staging bucket, whose keys no user request can produce or write.
"""
from __future__ import annotations

import dataclasses
import pickle

from minio.datatypes import Part

from ingest import jobs, resumable
from ingest.bundle import Limits, TarScanner
from ingest.storage import Storage


@dataclasses.dataclass
class Checkpoint:
    """What a PATCH starts from and leaves for the next one."""

    scanner: TarScanner
    parts: list[tuple[int, str, int]]  # (part number, ETag, size), in order
    digests: dict[int, str]  # SHA-1 of large members by data offset (see MemberHasher)

    @property
    def parted(self) -> int:
        """Bytes in whole parts."""
        return sum(size for _, _, size in self.parts)


class UploadStaging:
    """One tus upload's objects in the staging bucket."""

    def __init__(self, storage: Storage, job_id: int, upload_id: str) -> None:
        self.storage = storage
        self.job_id = job_id
        self.upload_id = upload_id
        self.key = jobs.staged_bundle_key(job_id)

    @classmethod
    def begin(cls, storage: Storage, job_id: int) -> UploadStaging:
        """Start the multipart upload that will become the staged bundle."""
        key = jobs.staged_bundle_key(job_id)
        upload_id = storage.minio._create_multipart_upload(  # the SDK keeps multipart calls private
            storage.staging, key, {"Content-Type": "application/x-tar"},
        )
        return cls(storage, job_id, upload_id)

    def upload_part(self, number: int, data: bytes) -> str:
        return self.storage.minio._upload_part(self.storage.staging, self.key, data, None, self.upload_id, number)

    def complete(self, parts: list[tuple[int, str, int]]) -> None:
        self.storage.minio._complete_multipart_upload(
            self.storage.staging, self.key, self.upload_id, [Part(number, etag) for number, etag, _ in parts],
        )

    def load(self, generation: int, limits: Limits) -> tuple[Checkpoint, bytes]:
        """The checkpoint of `generation` and its pending bytes; generation 0 is the empty start."""
        if generation == 0:
            return Checkpoint(TarScanner(limits), [], {}), b""
        raw = self.storage.get_bytes(self.storage.staging, resumable.checkpoint_key(self.job_id, generation))
        state = pickle.loads(raw)
        pending = self.storage.get_bytes(self.storage.staging, resumable.pending_key(self.job_id, generation))
        return state, pending

    def save(self, generation: int, checkpoint: Checkpoint, pending: bytes) -> None:
        self.storage.put_bytes(self.storage.staging, resumable.pending_key(self.job_id, generation), pending)
        self.storage.put_bytes(
            self.storage.staging, resumable.checkpoint_key(self.job_id, generation),
            pickle.dumps(checkpoint, protocol=pickle.HIGHEST_PROTOCOL),
        )

    def forget(self, generation: int) -> None:
        """Remove a checkpoint the job no longer names."""
        if generation > 0:
            self.storage.remove(self.storage.staging, [
                resumable.checkpoint_key(self.job_id, generation), resumable.pending_key(self.job_id, generation),
            ])

    def abort(self) -> None:
        resumable.remove_checkpoints(self.storage, self.job_id)
        resumable.abort_parts(self.storage, self.key, self.upload_id)
