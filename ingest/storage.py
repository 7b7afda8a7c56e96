"""Object storage (the `minio` SDK): the staging bucket, the archive bucket, streaming, rollback.

The service only needs a handful of operations and they must behave the same on MinIO and on the
local stack's Ceph RADOS Gateway, so this module sticks to what both agree on: idempotent
"ensure bucket", digests kept as our own object metadata (multipart ETags are not MD5s), and
failures compared by status class, not by error code.

Reads are always bounded: the SDK turns a ranged read of length 0 into `bytes=<offset>-` (to the
end of the object), which for an empty member of a 2 GiB bundle means reading the rest of the
bundle into memory; a read of 0 bytes here makes no request at all.

The archive is never overwritten. `existing` tells which of a job's planned keys already hold an
object (one listing per key prefix), and where the store honours a conditional create
(`If-None-Match: *`, probed once per process, since not every S3 server does; MinIO, AWS and the
local stack's Ceph RGW 16.2 do on PUT) single-part writes carry it, so a key taken between the
check and the write is refused (`ObjectExists`). Multipart uploads and server-side copies rely on
the check alone.
"""
from __future__ import annotations

import io
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO

import urllib3
from minio import Minio
from minio.commonconfig import ComposeSource, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.helpers import genheaders

from ingest import jobs
from ingest.config import Settings

log = logging.getLogger(__name__)

# Retried by urllib3 below the SDK: connection errors and 5xx answers, with exponential backoff,
# so a briefly unreachable store costs a pause, not a failed job.
_RETRIES = urllib3.Retry(
    total=6, connect=6, read=1, backoff_factor=0.25, backoff_max=8,
    status_forcelist=(500, 502, 503, 504), allowed_methods=None, raise_on_status=False,
)


def make_client(settings: Settings, *, pool_size: int = 32,
                pool_class: type[urllib3.PoolManager] = urllib3.PoolManager) -> Minio:
    """A minio client on its own urllib3 pool (`pool_class`: e.g. one that counts calls, see `ingest.metrics`)."""
    # Every call is bounded: a store that stops answering (Ceph blocks writes when full) costs at
    # most a few timeouts, then an error that names the store, never a request or worker that hangs.
    http = pool_class(
        timeout=urllib3.Timeout(connect=10, read=settings.s3_timeout_seconds),
        maxsize=pool_size,
        retries=_RETRIES,
    )
    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=settings.s3_secure,
        region=settings.s3_region,
        http_client=http,
    )


class ObjectExists(Exception):
    """A conditional create found the key taken: the object there was left untouched."""


#: Where the conditional-create probe writes (the staging bucket is the service's own).
PROBE_PREFIX = "probes/"
#: A key prefix is listed to find existing keys unless it holds more objects than this many per
#: planned key (someone else's data): then each planned key is checked on its own.
_LIST_FACTOR = 4


def is_missing(error: BaseException) -> bool:
    return isinstance(error, S3Error) and error.code in {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}


class ChunkReader:
    """A file-like `read(n)` over an iterable of byte strings, pulling the next one only when needed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._current = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size if size >= 0 else float("inf")
        while wanted > 0:
            if not self._current:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._current = memoryview(chunk)
                continue
            take = self._current[: int(min(wanted, len(self._current)))]
            parts.append(bytes(take))
            self._current = self._current[len(take):]
            wanted -= len(take)
        return b"".join(parts)


class Storage:
    """The two buckets the service uses, on one S3 endpoint."""

    def __init__(self, settings: Settings, client: Minio | None = None) -> None:
        self.settings = settings
        self.minio = client or make_client(settings)
        self.staging = settings.staging_bucket
        self.archive = settings.archive_bucket
        self._conditional: bool | None = None
        self._probe_lock = threading.Lock()

    def ensure_buckets(self) -> None:
        """Create both buckets if needed; MinIO says "already owned", RGW says 200: both are fine."""
        for bucket in (self.staging, self.archive):
            if self.minio.bucket_exists(bucket):
                continue
            try:
                self.minio.make_bucket(bucket)
            except S3Error as error:
                if error.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    def put_stream(
        self, bucket: str, key: str, reader: BinaryIO, *, length: int = -1,
        metadata: Mapping[str, str] | None = None, parallel: int = 1, part_size: int | None = None,
        content_type: str = "application/octet-stream", if_absent: bool = False,
    ) -> None:
        """Stream `reader` into `key` in fixed-size parts; an exception from `reader` aborts it.

        Memory is about (parallel + 1) parts: keep `parallel` low where many streams run at once.
        `if_absent`: refuse (`ObjectExists`) if the key holds an object, where the store can say so
        atomically (a single-part write on a store that honours `If-None-Match`)."""
        part = part_size or self.settings.part_size
        if if_absent and 0 <= length <= part and self.conditional_create():
            data = reader.read(length)  # the reader verifies the bytes before they are sent
            self._put_if_absent(bucket, key, data, content_type=content_type, metadata=metadata)
            return
        self.minio.put_object(
            bucket, key, reader, length, content_type=content_type,
            metadata=dict(metadata or {}), part_size=part,
            num_parallel_uploads=parallel,
        )

    def _put_if_absent(self, bucket: str, key: str, data: bytes, *, content_type: str,
                       metadata: Mapping[str, str] | None) -> None:
        # The SDK's put_object would file If-None-Match under user metadata (x-amz-meta-...), so the
        # single-part PUT is sent through its lower layer with the header as S3 defines it.
        headers = genheaders(dict(metadata or {}), None, None, None, False)
        headers["Content-Type"] = content_type
        headers["If-None-Match"] = "*"
        try:
            self.minio._put_object(bucket, key, data, headers)
        except S3Error as error:
            if error.code in {"PreconditionFailed", "ConditionalRequestConflict"}:
                raise ObjectExists(key) from None
            raise

    def conditional_create(self) -> bool:
        """Whether the store refuses a second `If-None-Match: *` write of one key (probed once)."""
        with self._probe_lock:
            if self._conditional is None:
                key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
                try:
                    self._put_if_absent(self.staging, key, b"1", content_type="text/plain", metadata=None)
                    try:
                        self._put_if_absent(self.staging, key, b"2", content_type="text/plain", metadata=None)
                        self._conditional = False
                    except ObjectExists:
                        self._conditional = True
                finally:
                    self.remove(self.staging, [key])
            return self._conditional

    def existing(self, bucket: str, keys: Iterable[str]) -> set[str]:
        """Which of `keys` hold an object now: one listing per first path segment (`12/`), a stat
        for a key without one or under a crowded prefix. Cost follows the keys, not the bucket."""
        groups: dict[str, list[str]] = {}
        for key in keys:
            head, slash, _rest = key.partition("/")
            groups.setdefault(head + slash if slash else key, []).append(key)
        found: set[str] = set()
        for prefix, members in groups.items():
            if len(members) > 1 and prefix.endswith("/"):
                wanted, seen = set(members), 0
                for item in self.minio.list_objects(bucket, prefix=prefix, recursive=True):
                    seen += 1
                    if item.object_name in wanted:
                        found.add(item.object_name)
                    if seen > _LIST_FACTOR * len(members) + 1000:
                        break
                else:
                    continue
            found.update(key for key in members if self.stat(bucket, key) is not None)
        return found
    def put_chunks(self, bucket: str, key: str, chunks: Iterable[bytes],
                   content_type: str = "application/octet-stream") -> None:
        """Store pieces made as they are read (one PUT if they are small), never joined in memory."""
        self.minio.put_object(bucket, key, ChunkReader(chunks), -1, content_type=content_type,
                              part_size=5 * 1024 * 1024)

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.minio.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)

    def put_json(self, bucket: str, key: str, document: Any) -> None:
        data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        self.put_bytes(bucket, key, data, "application/json")

    def get_bytes(self, bucket: str, key: str) -> bytes:
        response = self.minio.get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def get_range(self, bucket: str, key: str, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length): never an open-ended read, no request for 0 bytes."""
        if length <= 0:
            return _no_bytes(length)
        response = self.minio.get_object(bucket, key, offset=offset, length=length)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def open_range(self, bucket: str, key: str, offset: int, length: int) -> urllib3.BaseHTTPResponse:
        """A streaming response for bytes [offset, offset+length); close() and release_conn() it."""
        if length <= 0:
            return io.BytesIO(_no_bytes(length))  # type: ignore[return-value]
        return self.minio.get_object(bucket, key, offset=offset, length=length)

    def stat(self, bucket: str, key: str) -> Any | None:
        try:
            return self.minio.stat_object(bucket, key)
        except S3Error as error:
            if is_missing(error):
                return None
            raise

    def copy(self, bucket: str, key: str, source_bucket: str, source_key: str, metadata: Mapping[str, str]) -> None:
        """Server-side copy (no bytes through us), replacing the metadata with ours."""
        self.minio.copy_object(
            bucket, key, CopySource(source_bucket, source_key),
            metadata=dict(metadata), metadata_directive="REPLACE",
        )

    def copy_range(self, bucket: str, key: str, source_bucket: str, source_key: str, offset: int, length: int,
                   metadata: Mapping[str, str]) -> None:
        """Server-side copy of a byte range (multipart upload-part-copy): no bytes through us."""
        self.minio.compose_object(
            bucket, key, [ComposeSource(source_bucket, source_key, offset=offset, length=length)],
            metadata=dict(metadata),
        )

    def remove(self, bucket: str, keys: Iterable[str]) -> None:
        """Delete keys in batches; a key that is already gone is not an error."""
        batch = [DeleteObject(key) for key in keys]
        for start in range(0, len(batch), 1000):
            errors = list(self.minio.remove_objects(bucket, batch[start:start + 1000]))
            real = [error for error in errors if error.code not in {"NoSuchKey", "NoSuchObject"}]
            if real:
                raise RuntimeError(f"could not delete {len(real)} objects from {bucket}: {real[0].message}")

    def abort_uploads(self, bucket: str, keys: Iterable[str]) -> int:
        """Abort the incomplete multipart uploads to `keys` (their parts would otherwise stay on
        the store, invisible and billed, forever). Listed once under the keys' common prefix."""
        wanted = set(keys)
        if not wanted:
            return 0
        prefix = os.path.commonprefix(sorted(wanted))
        aborted, key_marker, upload_marker = 0, None, None
        while True:
            page = self.minio._list_multipart_uploads(  # the SDK has no public call for this S3 API
                bucket, prefix=prefix, key_marker=key_marker, upload_id_marker=upload_marker, max_uploads=1000)
            for upload in page.uploads:
                if upload.object_name in wanted:
                    self.minio._abort_multipart_upload(bucket, upload.object_name, upload.upload_id)
                    aborted += 1
            if not page.is_truncated or not page.uploads:
                return aborted
            key_marker, upload_marker = page.uploads[-1].object_name, page.uploads[-1].upload_id


def rollback(storage: Storage, job_id: int) -> int:
    """Remove every archive object the job planned to write (they may or may not exist) and abort
    its incomplete multipart uploads. Idempotent; the caller makes sure no worker still writes."""
    try:
        planned = json.loads(storage.get_bytes(storage.staging, jobs.planned_keys_key(job_id)))
    except Exception as error:
        if is_missing(error):  # nothing planned, so nothing written
            return 0
        raise
    storage.abort_uploads(storage.archive, planned)
    storage.remove(storage.archive, planned)
    log.info("job %s: rolled back %d archive keys", job_id, len(planned))
    return len(planned)

def _no_bytes(length: int) -> bytes:
    if length < 0:
        raise ValueError(f"a ranged read of {length} bytes")
    return b""
