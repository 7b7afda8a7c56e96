"""The bundle of a directory: listed, hashed and tarred in one pass, as pacifica-uploader writes it.

`ingest bundle DIR -o bundle.tar` and `ingest upload DIR` both use one generator (`BundleStream`),
so what `upload` sends is byte for byte what `bundle` writes.

The tar itself is `ingest.bundle.writer`'s, the project's one bundle writer (pacifica-uploader's
bytes, its size known before the first byte); this module is the part that touches the disk: it
lists the tree (`data/<relative path>` members in sorted path order, links and special files
skipped) and reads each file for the writer. The total size gives the request a Content-Length,
so the service can refuse a bundle that is too big (413) at once instead of after the upload. The
same tree gives the same bytes again, which is what lets a resumable upload of a directory skip
what the service already has (`skip_bytes`).

A file that changes while it is read (size or mtime differ from the listing) stops the stream
before metadata.txt is written: the service then never gets a complete bundle, and the upload's
job fails as broken off, never with a wrong file in the archive.
"""
from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from ingest.bundle import DEFAULT_HASHTYPE, BundleError, entry_path, writer
from ingest.cli.errors import ClientError, UsageError

CHUNK: Final = 1024 * 1024

Warn = Callable[[str], None]


# -- the tree --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SourceFile:
    """A regular file as it was listed; the stream refuses it if it no longer looks like this."""

    path: Path
    relative: str  # POSIX path under DIR
    size: int
    mtime_ns: int

    @property
    def member(self) -> str:
        return f"data/{self.relative}"

    @property
    def mtime(self) -> int:
        return self.mtime_ns // 1_000_000_000


def scan_tree(root: Path, *, warn: Warn, exclude: Path | None = None) -> list[SourceFile]:
    """Every regular file under `root`, sorted by relative path; links and specials are skipped.

    Symbolic links are not followed (a link may point outside the tree, or loop); the file the
    bundle is being written to is left out when it lies inside the tree. A name the service would
    refuse (not UTF-8, a control character or backslash, too long) is an error now, not a FAILED
    job after the upload.
    """
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    try:
        excluded = identity(os.stat(exclude)) if exclude is not None else None
    except FileNotFoundError:
        excluded = None
    found: list[SourceFile] = []
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            raise ClientError(f"cannot list {directory}: {error.strerror}") from None
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                warn(f"skipping {path}: a symbolic link (links are not followed)")
            elif entry.is_dir(follow_symlinks=False):
                pending.append(path)
            elif not entry.is_file(follow_symlinks=False):
                warn(f"skipping {path}: not a regular file")
            elif identity(info := entry.stat(follow_symlinks=False)) != excluded:
                relative = path.relative_to(root).as_posix()
                check_name(path, relative)
                found.append(SourceFile(path, relative, info.st_size, info.st_mtime_ns))
    if not found:
        raise UsageError(f"{root} holds no regular file to bundle")
    return sorted(found, key=lambda source: source.relative)


def identity(info: os.stat_result) -> tuple[int, int]:
    """Which file this is, whatever path leads to it."""
    return info.st_dev, info.st_ino


def check_name(path: Path, relative: str) -> None:
    """Refuse a name the service would refuse, with the service's own rule (`entry_path`)."""
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise ClientError(f"{os.fsdecode(path)!r}: the file name is not valid UTF-8; rename it") from None
    subdir, _, name = relative.rpartition("/")
    try:
        entry_path(subdir, name, what=str(path))
    except BundleError as error:
        raise ClientError(f"the service would refuse this file: {error.message}") from None


# -- the bundle ------------------------------------------------------------------------------------


def transaction_items(*, submitter: str | None, project: str | None, instrument: str | None,
                      key_values: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The non-file part of metadata.txt, as pacifica-uploader writes it.

    Submitters and instruments are integer ids in Pacifica, projects are strings ("1234a"), so a
    submitter or instrument given in digits is sent as a number.
    """
    items: list[dict[str, Any]] = []
    for field, value in (("submitter", submitter), ("project", project), ("instrument", instrument)):
        if value is not None:
            number = field != "project" and value.isascii() and value.isdigit()
            items.append({"destinationTable": f"Transactions.{field}", "value": int(value) if number else value})
    items.extend({"destinationTable": "TransactionKeyValue", "key": key, "value": value} for key, value in key_values)
    return items


class BundleStream:
    """The bytes of a bundle of `files`, generated in one pass; `size` is known before it starts.

    Iterate it once. Each file is read in chunks and hashed as it goes; metadata.txt follows.
    The bytes come in chunks of about `CHUNK` (one write per chunk, not per tar header).
    """

    def __init__(self, files: Sequence[SourceFile], *, transaction: Sequence[dict[str, Any]],
                 hashtype: str = DEFAULT_HASHTYPE) -> None:
        self.files = tuple(files)
        self.transaction = list(transaction)
        self.hashtype = hashtype
        self._started = False
        self.size = writer.bundle_size(self._file_data(read=False), transaction=self.transaction,
                                       hashtype=hashtype)

    def _file_data(self, *, read: bool) -> list[writer.FileData]:
        # `file_chunks` opens nothing until the writer iterates it, one file at a time.
        return [writer.FileData(source.member, source.size, source.mtime, file_chunks(source) if read else ())
                for source in self.files]

    def metadata_bytes(self, hashsums: Sequence[str]) -> bytes:
        """metadata.txt for these files with these sums, as the writer encodes it."""
        entries = (writer.files_entry(source.member, size=source.size, mtime=source.mtime, hashtype=self.hashtype,
                                      hashsum=hashsum) for source, hashsum in zip(self.files, hashsums, strict=True))
        return writer.metadata_bytes(self.transaction, entries)

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise RuntimeError("a BundleStream is single-use")
        self._started = True
        pieces = writer.bundle(self._file_data(read=True), transaction=self.transaction, hashtype=self.hashtype)
        return writer.coalesce(pieces, CHUNK)


def file_chunks(source: SourceFile) -> Iterator[bytes]:
    """The file's bytes, exactly `source.size` of them, or a ClientError if the file changed.

    The file is opened without following links and checked against its listing before and after
    reading, so a file replaced, grown, shrunk or rewritten while it streams is never sent as if
    it were what the listing (and the tar header already sent) promised.
    """
    try:
        descriptor = os.open(source.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise ClientError(f"cannot read {source.path}: {error.strerror}") from None
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        before = os.fstat(descriptor)
        if not stat.S_ISREG(before.st_mode) or (before.st_size, before.st_mtime_ns) != (source.size, source.mtime_ns):
            raise ClientError(f"{source.path} changed after it was listed; nothing was sent for it. Try again.")
        left = source.size
        while left:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
        after = os.fstat(descriptor)
        if left or handle.read(1) or (after.st_size, after.st_mtime_ns) != (source.size, source.mtime_ns):
            raise ClientError(f"{source.path} changed while it was being read; the bundle was abandoned. Try again.")


def read_file(path: Path, offset: int = 0) -> Iterator[bytes]:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            while chunk := handle.read(CHUNK):
                yield chunk
    except OSError as error:
        raise ClientError(f"cannot read {path}: {error.strerror}") from None


def skip_bytes(pieces: Iterable[bytes], offset: int) -> Iterator[bytes]:
    """The bytes of `pieces` past `offset` (a regenerated bundle, resumed mid-way)."""
    for piece in pieces:
        if offset >= len(piece):
            offset -= len(piece)
            continue
        yield piece[offset:] if offset else piece
        offset = 0
