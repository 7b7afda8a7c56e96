"""The /move pipeline: load metadata -> Policy Validation -> move files -> ingest metadata.

Sources are paths under the job's user's roots (a volume mounted into worker Pods) or `s3://`
objects under the operator's allow-list (`ingest.sources` has the rules; the API applied them
already, the worker applies them again with its own settings). Files are opened beneath their
root without following links (`localfiles`). Unlike upstream, every source's size and digest are
verified before it counts as moved, files are copied (never renamed), and sources are removed only
after the whole job has succeeded, and only if each is still the file that was copied: a failed
move leaves every source where it was and nothing in the archive.

A source the user may not read, or that is absent, or not a regular file, fails the job with one
sentence (`sources.refusal`) that says nothing of the file: not whether it exists, its size or its
digest. Size and digest mismatches are named only for sources the user may read.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ingest import events, jobs, sources
from ingest.bundle import BundleError, FileEntry, final_document, parse_move_document
from ingest.users import roots_for
from ingest.worker.localfiles import LocalFile, Refused
from ingest.worker.transfer import Batch, Copy, object_metadata

if TYPE_CHECKING:
    from ingest.worker.pipeline import Worker

log = logging.getLogger(__name__)


def refused(entry: FileEntry) -> BundleError:
    return BundleError(jobs.MOVE_FILES, sources.refusal(entry.label, entry.source))


def size_mismatch(entry: FileEntry, size: int) -> BundleError:
    return BundleError(jobs.MOVE_FILES, f"{entry.label}: size mismatch: the document says {entry.size} bytes, "
                                        f"source {entry.source} has {size}")


def local_file(worker: Worker, entry: FileEntry, user: str | None) -> LocalFile:
    source = entry.source or ""
    place = sources.local_place(source, roots_for(worker.settings.move_roots, user))
    if place is None:
        raise refused(entry)
    try:
        local = LocalFile(*place)
        size = local.check()
    except Refused as why:
        log.info("%s: source %s refused: %s", entry.label, source, why)
        raise refused(entry) from None
    if size != entry.size:
        raise size_mismatch(entry, size)
    return local


def opener(local: LocalFile, entry: FileEntry) -> Any:
    def open_source() -> Any:
        try:
            return local.open()
        except Refused:
            raise refused(entry) from None
    return open_source


def source_copy(worker: Worker, entry: FileEntry, *, job_id: int, file_id: int,
                user: str | None) -> tuple[Copy, LocalFile | None]:
    """The copy of one source into the archive, and the local file it reads (None for s3://)."""
    source = entry.source
    if not isinstance(source, str) or not source:
        raise BundleError(jobs.MOVE_FILES, f"{entry.label}: has no source (where the file is now)")
    settings = worker.settings
    if sources.check(source, label=entry.label, user=user, roots=settings.move_roots,
                     s3_sources=settings.move_s3_sources,
                     own_buckets=(worker.storage.staging, worker.storage.archive)) is not None:
        raise refused(entry)
    common: dict[str, Any] = {
        "label": source,
        "key": entry.key(job_id=job_id, template=settings.archive_key_template, file_id=file_id),
        "size": entry.size, "hashtype": entry.hashtype, "hashsum": entry.hashsum,
        "metadata": object_metadata(job_id=job_id, file_id=file_id, hashtype=entry.hashtype, hashsum=entry.hashsum),
        "content_type": entry.mimetype or "application/octet-stream",
    }
    if source.startswith(sources.S3_SCHEME):
        bucket, key = sources.split_s3(source) or ("", "")
        stat = worker.storage.stat(bucket, key)
        if stat is None:
            raise refused(entry)
        if stat.size != entry.size:
            raise size_mismatch(entry, stat.size)
        return Copy(**common, open=lambda: worker.storage.minio.get_object(bucket, key),
                    server_copy=(bucket, key)), None
    local = local_file(worker, entry, user)
    return Copy(**common, open=opener(local, entry)), local


def remove_sources(worker: Worker, job: dict[str, Any], entries: tuple[FileEntry, ...],
                   local: list[LocalFile | None]) -> None:
    """After success only. A source that changed since it was copied, or cannot be removed, is left
    where it is and the job says so in an Event; the job stays complete."""
    for entry, file in zip(entries, local, strict=True):
        source = entry.source or ""
        if file is None:
            if worker.settings.move_remove_s3_sources:
                bucket, key = sources.split_s3(source) or ("", "")
                try:
                    worker.storage.remove(bucket, [key])
                except Exception as error:
                    log.warning("could not remove moved source %s: %s", source, error)
            continue
        if not worker.settings.move_remove_sources:
            continue
        why = file.remove()
        if why is not None:
            message = f"source {source} of {entry.label} was left in place: {why}"
            log.warning("%s", message)
            events.post(worker.client, job, "SourceLeft", message, warning=True, component="ingest-worker")


def run_move(worker: Worker, job: dict[str, Any]) -> None:
    spec = job["spec"]
    job_id = int(spec["jobId"])
    user = spec.get("user")
    reporter = worker.reporter

    reporter.step(jobs.LOAD_METADATA, 0.0)
    raw = worker.storage.get_bytes(spec["staged"]["bucket"], spec["staged"]["key"])
    manifest = parse_move_document(raw, worker.limits)
    del raw
    first_id = worker.reserve_file_ids(job, len(manifest.files))
    document = final_document(manifest, job_id, list(range(first_id, first_id + len(manifest.files))))
    reporter.step(jobs.LOAD_METADATA, 100.0, filesTotal=len(manifest.files))

    worker.policy(document, user)

    total = manifest.total_size
    reporter.step(jobs.MOVE_FILES, 0.0, bytesTotal=total, bytesDone=0)
    planned = [source_copy(worker, entry, job_id=job_id, file_id=first_id + position, user=user)
               for position, entry in enumerate(manifest.files)]
    copies = [copy for copy, _ in planned]
    worker.record_plan(job_id, [copy.key for copy in copies] + [worker.metadata_key(job_id)])
    worker.copy([Batch([copy]) for copy in copies], jobs.MOVE_FILES, total)
    reporter.step(jobs.MOVE_FILES, 100.0, bytesDone=total, filesDone=len(copies))

    worker.finish(job_id, document, user)
    remove_sources(worker, job, manifest.files, [local for _, local in planned])
