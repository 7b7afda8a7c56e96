"""The pipeline a worker Pod runs for one IngestJob, step by step, all or nothing.

Upload: open tar -> load metadata -> Policy Validation -> ingest files -> ingest metadata.
Every archive key the job will write is recorded in the staging bucket *before* the first byte is
written, so a rollback - by this worker, by its next attempt, or by the operator after a crash -
knows exactly what to remove. A bundle error fails the job at its step (never retried); any other
error leaves the status to the operator, which retries or fails the job.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Callable

from ingest import ids, jobs, lifecycle
from ingest.bundle import PREHASH_MIN_SIZE, BundleError, Member, TarIndex, final_document, match, parse_metadata
from ingest.config import Settings, bundle_limits
from ingest.kube import JobStore
from ingest.storage import Storage, is_missing, rollback
from ingest.worker import peers
from ingest.worker.move import run_move
from ingest.worker.reporter import Cancelled, Reporter
from ingest.worker.transfer import Batch, Copy, Stopped, Window, copy_all, object_metadata
from ingest.worker.whole import WholeBundle

log = logging.getLogger(__name__)

# Batching of small files (see transfer.Window): one ranged read serves up to WINDOW_FILES
# neighbouring members of at most SMALL_FILE bytes each, spanning at most WINDOW_BYTES, with at
# most WINDOW_GAP bytes (headers, unlisted members) between two of them.
SMALL_FILE = PREHASH_MIN_SIZE - 1  # larger members are hashed by the API and copied server-side
WINDOW_BYTES = 4 * 1024 * 1024
WINDOW_GAP = 64 * 1024
WINDOW_FILES = 256


def prehashed(index: TarIndex, entry: Any, member: Member, bucket: str, key: str) -> dict[str, Any]:
    """For a member the API hashed while staging (large, sha1): check it now, copy it server-side."""
    digest = index.sha1.get(member.data_offset)
    if digest is None or entry.hashtype != "sha1":
        return {}
    if digest != entry.hashsum:
        raise BundleError(jobs.INGEST_FILES, f"{member.name}: sha1 mismatch: metadata.txt says {entry.hashsum}, "
                                             f"the file's bytes hash to {digest}")
    return {"server_copy": (bucket, key), "verified_range": (member.data_offset, member.size)}


class Progress:
    """Bytes done across parallel copies, reported as the step's percent."""

    def __init__(self, reporter: Reporter, total: int) -> None:
        self.reporter = reporter
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self.done += count
            done = self.done
        if self.total:
            self.reporter.progress(100.0 * done / self.total, bytesDone=done)


class Worker:
    def __init__(self, *, settings: Settings, store: JobStore, storage: Storage, client: Any, name: str,
                 owner: lifecycle.Owner, stop: threading.Event, reporter: Reporter | None = None,
                 file_ids: Callable[[int], int] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.client = client
        self.name = name
        self.stop = stop
        # A pool worker brings a reporter that knows the job it claimed, and its own block of file ids.
        self.reporter = reporter or Reporter(store, name, owner, lease=settings.lease_seconds)
        self.file_ids = file_ids or (lambda count: ids.reserve(self.client, self.settings.namespace, ids.FILE_IDS, count))
        self.limits = bundle_limits(settings)

    def run(self) -> None:
        """Run the job while it is ours. A bundle error fails it here (after undoing our writes);
        a lost job (cancelled, retried, deleted, lease unproven) stops it without undoing anything:
        the operator rolls back once no worker of the job can write. Anything else is raised."""
        try:
            job = self.reporter.claim()
        except Cancelled as reason:
            log.info("the job is not this worker's: %s", reason)
            return
        job_id = int(job["spec"]["jobId"])
        self.reporter.watch(self.stop)
        try:
            if job["spec"]["operation"] == jobs.OPERATION_MOVE:
                run_move(self, job)
            else:
                self.run_upload(job)
        except BundleError as error:
            log.info("job %s: FAILED at %s: %s", job_id, error.task, error.message)
            self.undo(job_id, error)
        except (Cancelled, Stopped) as reason:
            if self.reporter.lost is None and not isinstance(reason, Cancelled):
                raise  # stopped by SIGTERM (raised there) or an unproven lease: the operator decides
            log.info("job %s: stopped without undoing anything: %s", job_id, self.reporter.lost or reason)
        finally:
            self.reporter.close()

    def undo(self, job_id: int, error: BundleError) -> None:
        """The bundle's fault: while the job is provably ours, remove what we wrote, then say FAILED.
        A job lost meanwhile is left to the operator, which rolls back once we are gone."""
        try:
            self.reporter.check()
            rollback(self.storage, job_id)
            self.reporter.failed(error.task, error.message)
        except Cancelled as reason:
            log.info("job %s: lost before recording its failure: %s", job_id, reason)

    # --- steps shared by upload and move ------------------------------------------------------
    def reserve_file_ids(self, job: dict[str, Any], count: int) -> int:
        """One block per job, sized by its Files entries; an earlier attempt's block is reused."""
        block = (job.get("status") or {}).get("fileIds") or {}
        if block.get("count") == count and block.get("start"):
            return int(block["start"])
        start = self.file_ids(count) if count else 1
        if "file_id" in self.settings.archive_key_template:
            # Archive keys depend on the ids: they must be on record before a file is written, so
            # that another attempt writes (and the operator rolls back) the same keys.
            self.reporter.write({"fileIds": {"start": start, "count": count}})
        else:  # travels with the next write; an attempt that dies first only leaves a gap in the ids
            self.reporter.note({"fileIds": {"start": start, "count": count}})
        return start

    def policy(self, document: list[Any], user: str | None) -> None:
        self.reporter.step(jobs.POLICY_VALIDATION, 0.0)
        if self.settings.policy_url:
            peers.check_policy(self.settings.policy_url, document, user)
        self.reporter.step(jobs.POLICY_VALIDATION, 100.0)

    def metadata_key(self, job_id: int) -> str:
        return self.settings.metadata_key_template.format(job_id=job_id)

    def record_plan(self, job_id: int, keys: list[str]) -> None:
        """Written before the first archive byte, so whoever rolls back knows every key."""
        seen: set[str] = set()
        for key in keys:
            if key in seen:
                raise BundleError(jobs.LOAD_METADATA, f"two files (or a file and the metadata document) would be stored as {key}")
            seen.add(key)
        self.storage.put_json(self.storage.staging, jobs.planned_keys_key(job_id), keys)

    def copy(self, batches: list[Batch], task: str, total: int) -> None:
        progress = Progress(self.reporter, total)
        copy_all(self.storage, batches, task=task, concurrency=self.settings.upload_concurrency,
                 on_bytes=progress.add, stop=self.stop)

    def finish(self, job_id: int, document: list[Any], user: str | None) -> None:
        """The transaction: once the metadata service may hold it, the job is committed (recorded
        first, so no rollback and no retry sends it twice, even if we die before the answer)."""
        self.reporter.step(jobs.INGEST_METADATA, 0.0)
        self.storage.put_json(self.storage.archive, self.metadata_key(job_id), document)
        if self.settings.metadata_url:
            self.reporter.committing()
            peers.ingest_metadata(self.settings.metadata_url, document, user)
        try:
            self.reporter.succeeded()
        except Cancelled:
            if self.settings.metadata_url:  # accepted, though the job was taken from us meanwhile
                self.reporter.committed_anyway()
            raise
        log.info("job %s: complete", job_id)
        try:
            self.storage.remove(self.storage.staging, jobs.staged_keys(job_id))
        except Exception as error:  # the job is done; the staged copy goes when the job is deleted
            log.warning("job %s: could not remove the staged bundle: %s", job_id, error)

    # --- upload ---------------------------------------------------------------------------
    def read_whole(self, spec: dict[str, Any], *, always: bool = False) -> WholeBundle | None:
        """A small bundle (up to INGEST_POOL_MAX_BUNDLE_BYTES) costs one GET; a larger one streams."""
        size = (spec.get("staged") or {}).get("size")
        if not always and (size is None or size > self.settings.pool_max_bundle_bytes):
            return None
        staged = spec["staged"]
        return WholeBundle.read(self.storage, staged["bucket"], staged["key"], self.limits, staged.get("sha256"))

    def read_index(self, spec: dict[str, Any], job_id: int) -> TarIndex:
        """The index the API recorded; the API records none for a bundle it deems small (its
        INGEST_POOL_MAX_BUNDLE_BYTES may be larger than ours): then the bundle is read whole."""
        try:
            return TarIndex.from_json(self.storage.get_bytes(spec["staged"]["bucket"], jobs.staged_index_key(job_id)))
        except Exception as error:
            if not is_missing(error):
                raise
        whole = self.read_whole(spec, always=True)
        assert whole is not None
        return whole.index

    def batches(self, bucket: str, key: str, planned: list[tuple[Member, Copy]]) -> list[Batch]:
        """Small neighbouring members share one ranged read; a large member streams on its own."""
        batches: list[Batch] = []
        group: list[tuple[Member, Copy]] = []

        def close_group() -> None:
            if not group:
                return
            start, end = group[0][0].data_offset, group[-1][0].data_end
            window = Window(lambda: self.storage.get_range(bucket, key, start, end - start), start)
            batches.append(Batch([
                dataclasses.replace(copy, open=lambda member=member: window.slice(member.data_offset, member.size))
                for member, copy in group
            ], window))
            group.clear()

        for member, copy in sorted(planned, key=lambda pair: pair[0].data_offset):
            if member.size > SMALL_FILE:
                close_group()
                batches.append(Batch([copy]))
                continue
            if group and (member.data_end - group[0][0].data_offset > WINDOW_BYTES
                          or member.data_offset - group[-1][0].data_end > WINDOW_GAP
                          or len(group) >= WINDOW_FILES):
                close_group()
            group.append((member, copy))
        close_group()
        return batches

    def run_upload(self, job: dict[str, Any]) -> None:
        spec = job["spec"]
        job_id = int(spec["jobId"])
        user = spec.get("user")
        bucket, key = spec["staged"]["bucket"], spec["staged"]["key"]

        whole = self.read_whole(spec)
        self.reporter.coalesce = whole is not None  # a small bundle: its steps take milliseconds
        self.reporter.step(jobs.OPEN_TAR, 0.0)
        index = whole.index if whole else self.read_index(spec, job_id)
        self.reporter.step(jobs.OPEN_TAR, 100.0)

        self.reporter.step(jobs.LOAD_METADATA, 0.0)
        manifest = parse_metadata(index.metadata, self.limits)
        pairs = match(manifest, index)
        first_id = self.reserve_file_ids(job, len(manifest.files))
        document = final_document(manifest, job_id, list(range(first_id, first_id + len(manifest.files))))
        self.reporter.step(jobs.LOAD_METADATA, 100.0, filesTotal=len(manifest.files))

        self.policy(document, user)

        total = sum(member.size for _, member in pairs)
        self.reporter.step(jobs.INGEST_FILES, 0.0, bytesTotal=total, bytesDone=0)
        planned: list[tuple[Member, Copy]] = []
        for position, (entry, member) in enumerate(pairs):
            file_id = first_id + position
            planned.append((member, Copy(
                label=member.name,
                key=entry.key(job_id=job_id, template=self.settings.archive_key_template, file_id=file_id),
                size=member.size,
                hashtype=entry.hashtype,
                hashsum=entry.hashsum,
                open=lambda member=member: self.storage.open_range(bucket, key, member.data_offset, member.size),
                metadata=object_metadata(job_id=job_id, file_id=file_id, hashtype=entry.hashtype, hashsum=entry.hashsum),
                content_type=entry.mimetype or "application/octet-stream",
                **prehashed(index, entry, member, bucket, key),
            )))
        self.record_plan(job_id, [copy.key for _, copy in planned] + [self.metadata_key(job_id)])
        batches = whole.batches(planned) if whole else self.batches(bucket, key, planned)
        self.copy(batches, jobs.INGEST_FILES, total)
        self.reporter.step(jobs.INGEST_FILES, 100.0, bytesDone=total, filesDone=len(planned))

        self.finish(job_id, document, user)
