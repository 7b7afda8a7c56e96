"""Parallel, verified copies into the archive: hash and count while the bytes stream.

A file's bytes pass once: from the staged bundle (a ranged read at the member's offset) or from
a move source, through a verifying reader, into `put_object`. The reader checks the size and the
digest the moment the last byte passes, *before* the SDK sends the final part, so a file whose
digest is wrong never becomes an object (single PUT never sent, multipart aborted). Upstream
Pacifica stored first and hashed afterwards.

Every problem is reported, not the first: a file whose bytes are wrong is recorded in `Findings`
and the other files are still read and verified, but from then on nothing more is written (the
job will fail and roll back whatever was written before: all or nothing). A file of 0 bytes is
never read at all, and no read is open-ended (see `Storage.get_range`).

An archive key that already holds an object is never overwritten: where the store honours a
conditional create (`If-None-Match: *`), single-part PUTs carry it and a refusal is a problem of
that file (its key is taken out of the job's plan, so the rollback leaves the object alone).

Work is handed out in batches. Small neighbouring members of a bundle form one batch served by a
single ranged read (a `Window`): for thousands of small files, one GET per file cost more than
the PUTs themselves. Large files stream in parts, one part in flight each, and only a few at a
time (`LARGE_FILES_AT_ONCE`), so a worker's memory stays bounded whatever the bundle holds.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import BinaryIO

from ingest.bundle import BundleError, Problem, hasher
from ingest.storage import ObjectExists, Storage

LARGE_FILES_AT_ONCE = 2  # files above the part size: each holds about two parts in memory


class Stopped(Exception):
    """Another copy failed or the worker is shutting down: stop this one early."""


@dataclasses.dataclass(frozen=True)
class Copy:
    """One file to put into the archive."""

    label: str  # how the scientist knows the file, e.g. data/run1/a.txt
    key: str
    size: int
    hashtype: str
    hashsum: str
    open: Callable[[], BinaryIO]  # a fresh stream of exactly the file's bytes
    metadata: dict[str, str]
    content_type: str = "application/octet-stream"
    server_copy: tuple[str, str] | None = None  # (bucket, key): verify by reading, then copy server-side
    # (offset, length) in `server_copy`: the digest was already checked (the API hashed the member
    # while staging it), so the range is copied server-side without reading it.
    verified_range: tuple[int, int] | None = None
    if_absent: bool = False  # a conditional create: the key must not hold an object yet


class Findings:
    """The problems of a step's files, shared by the copy threads. Once there is one, the job will
    fail: the remaining files are verified without being written."""

    def __init__(self, known: Iterable[Problem] = (), on_refused_key: Callable[[str], None] | None = None) -> None:
        self.problems: list[Problem] = list(known)
        self.on_refused_key = on_refused_key  # called with a key that held another's object
        self._lock = threading.Lock()

    @property
    def failing(self) -> bool:
        return bool(self.problems)

    def add(self, problem: Problem) -> None:
        with self._lock:
            self.problems.append(problem)


class VerifyingReader:
    """A file-like view of a source that fails the copy on a short read or a digest mismatch."""

    def __init__(self, source: BinaryIO, copy: Copy, task: str, on_bytes: Callable[[int], None],
                 stop: threading.Event) -> None:
        self.source = source
        self.copy = copy
        self.task = task
        self.on_bytes = on_bytes
        self.stop = stop
        self.hash = hasher(copy.hashtype)()
        self.count = 0
        self.verified = False

    def read(self, size: int = -1) -> bytes:
        if self.stop.is_set():
            raise Stopped(self.copy.label)
        remaining = self.copy.size - self.count
        want = remaining if size < 0 else min(size, remaining)
        data = self.source.read(want) if want > 0 else b""
        if len(data) < want:
            data += self._read_fully(want - len(data), arrived=len(data))
        self.hash.update(data)
        self.count += len(data)
        self.on_bytes(len(data))
        if self.count == self.copy.size:
            self.verify()
        return data

    def _read_fully(self, missing: int, *, arrived: int) -> bytes:
        """The rest of a read that came short; `arrived` bytes of it came already (they count)."""
        parts: list[bytes] = []
        while missing > 0:
            data = self.source.read(missing)
            if not data:
                ended = self.count + arrived + sum(map(len, parts))
                raise self._problem("short-read", f"the source ended after {ended} of {self.copy.size} bytes")
            parts.append(data)
            missing -= len(data)
        return b"".join(parts)

    def verify(self) -> None:
        if self.verified:
            return
        actual = self.hash.hexdigest()
        if actual != self.copy.hashsum:
            raise self._problem(
                "digest-mismatch",
                f"{self.copy.hashtype} mismatch: metadata.txt says {self.copy.hashsum}, "
                f"the file's bytes hash to {actual}",
            )
        self.verified = True

    def _problem(self, reason: str, detail: str) -> BundleError:
        problem = Problem(self.copy.label, reason, detail)
        return BundleError(self.task, problem.line(), (problem,))


class Window:
    """One ranged read of the staged bundle that serves a batch of small neighbouring members."""

    def __init__(self, fetch: Callable[[], bytes], start: int) -> None:
        self._fetch = fetch
        self.start = start
        self._data: bytes | None = None

    def slice(self, offset: int, size: int) -> BinaryIO:
        if self._data is None:
            self._data = self._fetch()
        begin = offset - self.start
        return io.BytesIO(self._data[begin:begin + size])

    def release(self) -> None:
        self._data = None


@dataclasses.dataclass(frozen=True)
class Batch:
    """Copies one thread runs in order; `window`, if any, is read once for all of them."""

    copies: Sequence[Copy]
    window: Window | None = None


def verify_only(copy: Copy, task: str, on_bytes: Callable[[int], None], stop: threading.Event) -> None:
    """Read and check a file without writing it (the job already has a problem)."""
    if copy.verified_range:  # the API hashed it while staging; the digest matched
        on_bytes(copy.size)
        return
    source = _open(copy)
    try:
        reader = VerifyingReader(source, copy, task, on_bytes, stop)
        while reader.read(1024 * 1024):
            pass
        reader.verify()
    finally:
        _close(source)


def _open(copy: Copy) -> BinaryIO:
    # A file of 0 bytes needs no read: asking for "0 bytes at offset N" means "to the end" to S3.
    return io.BytesIO(b"") if copy.size == 0 else copy.open()


def _close(source: BinaryIO) -> None:
    close = getattr(source, "close", None)
    if close:
        close()
    release = getattr(source, "release_conn", None)
    if release:
        release()


def put_verified(storage: Storage, copy: Copy, task: str, on_bytes: Callable[[int], None], stop: threading.Event,
                 large: threading.Semaphore) -> None:
    if copy.size > storage.settings.part_size and not copy.server_copy:  # only streamed copies hold memory
        with large:
            _put(storage, copy, task, on_bytes, stop)
    else:
        _put(storage, copy, task, on_bytes, stop)


def _put(storage: Storage, copy: Copy, task: str, on_bytes: Callable[[int], None], stop: threading.Event) -> None:
    if stop.is_set():
        raise Stopped(copy.label)
    if copy.server_copy and copy.verified_range:
        storage.copy_range(storage.archive, copy.key, *copy.server_copy, *copy.verified_range, metadata=copy.metadata)
        on_bytes(copy.size)
        return
    source = _open(copy)
    try:
        reader = VerifyingReader(source, copy, task, on_bytes, stop)
        if copy.size == 0:
            reader.verify()
        if copy.server_copy:
            while reader.read(1024 * 1024):
                pass
            reader.verify()
            storage.copy(storage.archive, copy.key, *copy.server_copy, metadata=copy.metadata)
            return
        storage.put_stream(
            storage.archive, copy.key, reader, length=copy.size, metadata=copy.metadata,
            content_type=copy.content_type, if_absent=copy.if_absent,
        )
        reader.verify()
    finally:
        _close(source)


def run_batch(storage: Storage, batch: Batch, task: str, on_bytes: Callable[[int], None], stop: threading.Event,
              large: threading.Semaphore, findings: Findings) -> None:
    try:
        for copy in batch.copies:
            if stop.is_set():
                raise Stopped(copy.label)
            try:
                if findings.failing:
                    verify_only(copy, task, on_bytes, stop)
                else:
                    put_verified(storage, copy, task, on_bytes, stop, large)
            except BundleError as error:
                if not error.problems:
                    raise
                for problem in error.problems:
                    findings.add(problem)
            except ObjectExists:
                if findings.on_refused_key is not None:
                    findings.on_refused_key(copy.key)
                findings.add(Problem(copy.label, "exists-in-archive", f"the archive already holds an object at "
                                     f"{copy.key!r} (another job's); it was left untouched"))
    finally:
        if batch.window is not None:
            batch.window.release()


def copy_all(
    storage: Storage, batches: Iterable[Batch], *, task: str, concurrency: int,
    on_bytes: Callable[[int], None], stop: threading.Event, findings: Findings | None = None,
) -> Findings:
    """Run every batch, `concurrency` at a time. A problem of a file is recorded in the findings
    (returned) and the other files are still verified; any other failure stops the rest and is
    raised."""
    findings = Findings() if findings is None else findings
    large = threading.Semaphore(LARGE_FILES_AT_ONCE)
    with concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="copy") as pool:
        futures = [pool.submit(run_batch, storage, batch, task, on_bytes, stop, large, findings) for batch in batches]
        first_error: BaseException | None = None
        for future in concurrent.futures.as_completed(futures):
            error = future.exception()
            if error is not None and not isinstance(error, Stopped) and first_error is None:
                first_error = error
                stop.set()
                for pending in futures:
                    pending.cancel()
        if first_error is not None:
            raise first_error
        if stop.is_set():
            raise Stopped("the worker was asked to stop")
    return findings


def object_metadata(*, job_id: int, file_id: int, hashtype: str, hashsum: str) -> dict[str, str]:
    """What every archived file carries, so the archive explains itself without the metadata store."""
    return {"job-id": str(job_id), "file-id": str(file_id), "hashtype": hashtype, "hashsum": hashsum}

