"""The pipeline a worker Pod runs for one IngestJob, step by step, all or nothing.

Upload: open tar -> load metadata -> Policy Validation -> ingest files -> ingest metadata.
Every archive key the job will write is checked at `load metadata` (S3's length limit, no file
that is another's folder, not the metadata document's key) and recorded in the staging bucket
*before* the first byte is written, so a rollback - by this worker, by its next attempt, or by the
operator after a crash - knows exactly what to remove. A key that already holds an object (another
job's, another installation's) is never written nor planned, so no rollback can remove it.
Every problem of a step is reported: at `ingest files` the other files are still verified after
the first bad one (without being written), and the job fails with all of them. A bundle error
fails the job at its step (never retried); any other error leaves the status to the operator,
which retries or fails the job.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from ingest import ids, jobs, lifecycle
from ingest.bundle import (
    PREHASH_MIN_SIZE,
    VERIFY_VERB,
    BundleError,
    Member,
    Problem,
    TarIndex,
    final_document,
    pair_members,
    parse_metadata,
    plan_keys,
)
from ingest.config import Settings, bundle_limits
from ingest.kube import JobStore
from ingest.storage import Storage, is_missing, rollback
from ingest.worker import peers
from ingest.worker.move import run_move
from ingest.worker.reporter import Cancelled, Reporter
from ingest.worker.transfer import Batch, Copy, Findings, Stopped, Window, copy_all, object_metadata
from ingest.worker.whole import WholeBundle

log = logging.getLogger(__name__)

# Batching of small files (see transfer.Window): one ranged read serves up to WINDOW_FILES
# neighbouring members of at most SMALL_FILE bytes each, spanning at most WINDOW_BYTES, with at
# most WINDOW_GAP bytes (headers, unlisted members) between two of them.
SMALL_FILE = PREHASH_MIN_SIZE - 1  # larger members are hashed by the API and copied server-side
WINDOW_BYTES = 4 * 1024 * 1024
WINDOW_GAP = 64 * 1024
WINDOW_FILES = 256


METADATA_DOCUMENT = "the job's metadata document"


def prehashed(index: TarIndex, entry: Any, member: Member, bucket: str, key: str) -> dict[str, Any] | Problem:
    """For a member the API hashed while staging (large, sha1): check it now, copy it server-side.

    A mismatch is returned as the file's problem (the step goes on verifying the others)."""
    digest = index.sha1.get(member.data_offset)
    if digest is None or entry.hashtype != "sha1":
        return {}
    if digest != entry.hashsum:
        return Problem(member.name, "digest-mismatch",
                       f"sha1 mismatch: metadata.txt says {entry.hashsum}, the file's bytes hash to {digest}")
    return {"server_copy": (bucket, key), "verified_range": (member.data_offset, member.size)}


class CopiedBytes:
    """A count of the bytes copied by parallel copies, reported as the step's percent."""

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
        self.file_ids = file_ids or (
            lambda count: ids.reserve(self.client, self.settings.namespace, ids.FILE_IDS, count))
        self.limits = bundle_limits(settings)
        self.job_id = 0
        self._plan: list[str] = []
        self._plan_lock = threading.Lock()

    def run(self) -> None:
        """Run the job while it is ours. A bundle error fails it here (after undoing our writes);
        a lost job (cancelled, retried, deleted, lease unproven) stops it without undoing anything:
        the operator rolls back once no worker of the job can write. Anything else is raised."""
        try:
            job = self.reporter.claim()
        except Cancelled as reason:
            log.info("the job is not this worker's: %s", reason)
            return
        job_id = self.job_id = int(job["spec"]["jobId"])
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
            problems = [problem.to_status() for problem in error.problems[:self.limits.max_listed_problems]]
            self.reporter.failed(error.task, error.message, problems)
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
                raise BundleError(jobs.LOAD_METADATA,
                                  f"two files (or a file and the metadata document) would be stored as {key}")
            seen.add(key)
        self.storage.put_json(self.storage.staging, jobs.planned_keys_key(job_id), keys)
        self._plan = list(keys)

    def unplan(self, job_id: int, key: str) -> None:
        """Take a key that turned out to hold another's object out of the plan: never roll it back."""
        with self._plan_lock:
            self._plan = [planned for planned in self._plan if planned != key]
            self.storage.put_json(self.storage.staging, jobs.planned_keys_key(job_id), self._plan)

    def previous_plan(self, job_id: int) -> set[str]:
        """Keys an earlier attempt of this job planned: objects there are this job's own."""
        try:
            return set(json.loads(self.storage.get_bytes(self.storage.staging, jobs.planned_keys_key(job_id))))
        except Exception as error:
            if is_missing(error):
                return set()
            raise

    def taken_keys(self, labels: dict[str, str], own: set[str]) -> list[Problem]:
        """A problem for each planned key that already holds an object this job did not write
        (`own`: the keys an earlier attempt of this job planned)."""
        taken = self.storage.existing(self.storage.archive, [key for key in labels if key not in own])
        return [Problem(labels[key], "exists-in-archive",
                        f"the archive already holds an object at {key!r} (another job's); it was left untouched")
                for key in labels if key in taken]

    def copy(self, batches: list[Batch], task: str, total: int, *, known: list[Problem] | None = None,
             files: int | None = None) -> None:
        """Copy and verify every file; fail the step with every problem found (`known` ones too)."""
        copied = CopiedBytes(self.reporter, total)
        findings = Findings(known or (), on_refused_key=lambda key: self.unplan(self.job_id, key))
        copy_all(self.storage, batches, task=task, concurrency=self.settings.upload_concurrency,
                 on_bytes=copied.add, stop=self.stop, findings=findings)
        if findings.problems:
            count = files if files is not None else sum(len(batch.copies) for batch in batches)
            raise BundleError.of_files(task, findings.problems, total=count, verb=VERIFY_VERB,
                                       limit=self.limits.max_listed_problems)

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
                dataclasses.replace(copy, open=functools.partial(window.slice, member.data_offset, member.size))
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
        limit = self.limits.max_listed_problems

        whole = self.read_whole(spec)
        self.reporter.coalesce = whole is not None  # a small bundle: its steps take milliseconds
        self.reporter.step(jobs.OPEN_TAR, 0.0)
        index = whole.index if whole else self.read_index(spec, job_id)
        self.reporter.step(jobs.OPEN_TAR, 100.0)

        self.reporter.step(jobs.LOAD_METADATA, 0.0)
        manifest = parse_metadata(index.metadata, self.limits, members=len(index.members))
        pairs, problems = pair_members(manifest, index, limit=limit)
        first_id = self.reserve_file_ids(job, len(manifest.files))
        file_ids = list(range(first_id, first_id + len(manifest.files)))
        metadata_key = self.metadata_key(job_id)
        keys = plan_keys(manifest.files, job_id=job_id, template=self.settings.archive_key_template,
                         file_ids=file_ids, reserved={metadata_key: METADATA_DOCUMENT}, limit=limit)
        key_of = {entry.index: (archive_key, file_id)
                  for entry, archive_key, file_id in zip(manifest.files, keys, file_ids, strict=True)}
        document = final_document(manifest, job_id, file_ids)
        self.reporter.step(jobs.LOAD_METADATA, 100.0, filesTotal=len(manifest.files))

        self.policy(document, user)

        total = sum(member.size for _, member in pairs)
        self.reporter.step(jobs.INGEST_FILES, 0.0, bytesTotal=total, bytesDone=0)
        conditional = self.storage.conditional_create()
        own = self.previous_plan(job_id)  # an earlier attempt's objects are this job's to overwrite
        planned: list[tuple[Member, Copy]] = []
        for entry, member in pairs:
            archive_key, file_id = key_of[entry.index]
            server = prehashed(index, entry, member, bucket, key)
            if isinstance(server, Problem):  # known from the API's hash: no need to read it again
                problems.append(server)
                continue
            planned.append((member, Copy(
                label=member.name,
                key=archive_key,
                size=member.size,
                hashtype=entry.hashtype,
                hashsum=entry.hashsum,
                open=functools.partial(self.storage.open_range, bucket, key, member.data_offset, member.size),
                metadata=object_metadata(job_id=job_id, file_id=file_id,
                                         hashtype=entry.hashtype, hashsum=entry.hashsum),
                content_type=entry.mimetype or "application/octet-stream",
                if_absent=conditional and archive_key not in own,
                **server,
            )))
        labels = {copy.key: copy.label for _, copy in planned} | {metadata_key: METADATA_DOCUMENT}
        problems += self.taken_keys(labels, own)
        if not problems:  # nothing is written when a problem is known: the files are only verified
            self.record_plan(job_id, [copy.key for _, copy in planned] + [metadata_key])
        batches = whole.batches(planned) if whole else self.batches(bucket, key, planned)
        self.copy(batches, jobs.INGEST_FILES, total, known=problems, files=len(manifest.files))
        self.reporter.step(jobs.INGEST_FILES, 100.0, bytesDone=total, filesDone=len(planned))

        self.finish(job_id, document, user)
