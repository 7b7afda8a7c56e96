"""The /move pipeline: load metadata -> Policy Validation -> move files -> ingest metadata.

Sources are either absolute paths under the configured roots (a volume mounted into worker Pods)
or `s3://bucket/key` objects in the service's object store. Unlike upstream, every source's size
and digest are verified before it counts as moved, files are copied (never renamed), and sources
are removed only after the whole job has succeeded: a failed move leaves every source where it was
and nothing in the archive.
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from ingest import jobs
from ingest.bundle import BundleError, FileEntry, final_document, parse_move_document
from ingest.worker.transfer import Batch, Copy, object_metadata

if TYPE_CHECKING:
    from ingest.worker.pipeline import Worker

log = logging.getLogger(__name__)
S3_SCHEME = "s3://"


def resolve_path(entry: FileEntry, roots: tuple[str, ...]) -> str:
    """The real path of a filesystem source, if it is a regular file under an allowed root."""
    source = entry.source or ""
    if not os.path.isabs(source):
        raise BundleError(jobs.MOVE_FILES, f"{entry.label}: source {source!r} is neither an absolute path nor s3://bucket/key")
    if not roots:
        raise BundleError(jobs.MOVE_FILES, f"{entry.label}: this service accepts no filesystem sources (INGEST_MOVE_ROOTS is empty)")
    real = os.path.realpath(source)
    allowed = [os.path.realpath(root) for root in roots]
    if not any(real.startswith(root.rstrip(os.sep) + os.sep) for root in allowed):
        where = source if real == os.path.normpath(source) else f"{source} (which resolves to {real})"
        raise BundleError(jobs.MOVE_FILES, f"{entry.label}: source {where} is outside the allowed roots {', '.join(roots)}")
    if not os.path.exists(real):
        raise BundleError(jobs.MOVE_FILES, f"{entry.label}: source {source} does not exist")
    if not os.path.isfile(real):
        raise BundleError(jobs.MOVE_FILES, f"{entry.label}: source {source} is not a regular file")
    size = os.stat(real).st_size
    if size != entry.size:
        raise BundleError(jobs.MOVE_FILES, f"{entry.label}: size mismatch: the document says {entry.size} bytes, source {source} has {size}")
    return real


def split_s3(entry: FileEntry) -> tuple[str, str]:
    bucket, _, key = (entry.source or "")[len(S3_SCHEME):].partition("/")
    if not bucket or not key:
        raise BundleError(jobs.MOVE_FILES, f"{entry.label}: source {entry.source!r} is not of the form s3://bucket/key")
    return bucket, key


def source_copy(worker: "Worker", entry: FileEntry, *, job_id: int, file_id: int) -> Copy:
    common: dict[str, Any] = {
        "label": entry.source or entry.path,
        "key": entry.key(job_id=job_id, template=worker.settings.archive_key_template, file_id=file_id),
        "size": entry.size, "hashtype": entry.hashtype, "hashsum": entry.hashsum,
        "metadata": object_metadata(job_id=job_id, file_id=file_id, hashtype=entry.hashtype, hashsum=entry.hashsum),
        "content_type": entry.mimetype or "application/octet-stream",
    }
    if (entry.source or "").startswith(S3_SCHEME):
        bucket, key = split_s3(entry)
        stat = worker.storage.stat(bucket, key)
        if stat is None:
            raise BundleError(jobs.MOVE_FILES, f"{entry.label}: source {entry.source} does not exist")
        if stat.size != entry.size:
            raise BundleError(jobs.MOVE_FILES, f"{entry.label}: size mismatch: the document says {entry.size} bytes, source {entry.source} has {stat.size}")
        return Copy(**common, open=lambda: worker.storage.minio.get_object(bucket, key), server_copy=(bucket, key))
    path = resolve_path(entry, worker.settings.move_roots)
    return Copy(**common, open=lambda: open(path, "rb"))


def remove_sources(worker: "Worker", entries: tuple[FileEntry, ...]) -> None:
    """After success only; a source that cannot be removed is logged, the job stays complete."""
    for entry in entries:
        source = entry.source or ""
        try:
            if source.startswith(S3_SCHEME):
                if worker.settings.move_remove_s3_sources:
                    bucket, key = split_s3(entry)
                    worker.storage.remove(bucket, [key])
            elif worker.settings.move_remove_sources:
                os.remove(os.path.realpath(source))
        except Exception as error:
            log.warning("could not remove moved source %s: %s", source, error)


def run_move(worker: "Worker", job: dict[str, Any]) -> None:
    spec = job["spec"]
    job_id = int(spec["jobId"])
    user = spec.get("user")
    reporter = worker.reporter

    reporter.step(jobs.LOAD_METADATA, 0.0)
    raw = worker.storage.get_bytes(spec["staged"]["bucket"], spec["staged"]["key"])
    manifest = parse_move_document(raw, worker.limits)
    first_id = worker.reserve_file_ids(job, len(manifest.files))
    document = final_document(manifest, job_id, list(range(first_id, first_id + len(manifest.files))))
    reporter.step(jobs.LOAD_METADATA, 100.0, filesTotal=len(manifest.files))

    worker.policy(document, user)

    total = manifest.total_size
    reporter.step(jobs.MOVE_FILES, 0.0, bytesTotal=total, bytesDone=0)
    copies = [source_copy(worker, entry, job_id=job_id, file_id=first_id + position)
              for position, entry in enumerate(manifest.files)]
    worker.record_plan(job_id, [copy.key for copy in copies] + [worker.metadata_key(job_id)])
    worker.copy([Batch([copy]) for copy in copies], jobs.MOVE_FILES, total)
    reporter.step(jobs.MOVE_FILES, 100.0, bytesDone=total, filesDone=len(copies))

    worker.finish(job_id, document, user)
    remove_sources(worker, manifest.files)
