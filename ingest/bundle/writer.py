"""The bundle writer: the bytes pacifica-uploader's `Bundler` writes, generated as a stream.

A bundle is a PAX tar of `data/...` members (mode 0644, owner 0, the file's mtime) in the order
given, then `metadata.txt` (mtime 0) listing the transaction and one Files entry per member, then
the end-of-archive marker padded to tar's 10 KiB record. That is what `tarfile.open(mode="w|")`
writes for the uploader, so a bundle written here is the uploader's, byte for byte, and whoever
reads one (the service, Pacifica's own ingest) cannot tell them apart.

Three layers, each usable alone:
- `tar(members)`: regular-file members in the order given, closed like tarfile closes a stream
  (for bundles that are not the uploader's: metadata first, extra members, a hand-made metadata.txt).
- `bundle(files, transaction=..., hashtype=...)`: the uploader's bundle; each file is hashed while
  its bytes stream out, and metadata.txt, which needs the sums, comes last anyway: one pass.
- `bundle_size(...)`: that stream's length before its first byte, so an upload can announce a
  Content-Length and be refused (413) at once. A hash sum has a fixed length per hash type, so
  metadata.txt is measured with placeholder sums.

Pure: no file, socket or clock. The caller hands over each member's bytes as an iterable of chunks
(read from disk, made in memory) and stays in charge of where they come from and go to.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import mimetypes
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from .digests import DEFAULT_HASHTYPE, hasher
from .index import METADATA_NAME

BLOCK: Final = tarfile.BLOCKSIZE
RECORD: Final = tarfile.RECORDSIZE


class WriteError(ValueError):
    """A member's bytes do not match what its header (already written) declares."""


@dataclasses.dataclass(frozen=True, slots=True)
class FileData:
    """One member to write, as the uploader's `file_data` items describe it.

    `name` is the member path (`data/<subdir>/<name>` in a bundle); `chunks` must add up to
    exactly `size` bytes, and is iterated once, when the member is written.
    """

    name: str
    size: int
    mtime: int
    chunks: Iterable[bytes] = ()

    @classmethod
    def of(cls, name: str, data: bytes, *, mtime: int) -> FileData:
        """A member whose bytes are in memory."""
        return cls(name, len(data), mtime, (data,))


def header(name: str, *, size: int, mtime: int) -> bytes:
    """A regular file's header blocks (with a PAX header before it for a long or non-ASCII name)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> int:
    """Zero bytes after `size` bytes of data, up to the next 512-byte block."""
    return -size % BLOCK


def end_of_archive(written: int) -> bytes:
    """The two zero blocks that end a tar, then zeros up to the record, after `written` bytes."""
    end = written + 2 * BLOCK
    return bytes(2 * BLOCK + -end % RECORD)


def tar_size(members: Iterable[FileData]) -> int:
    """The length of `tar(members)`, from names, sizes and mtimes alone (no chunk is read)."""
    written = sum(len(header(m.name, size=m.size, mtime=m.mtime)) + m.size + padding(m.size) for m in members)
    return written + len(end_of_archive(written))


def member(file: FileData) -> Iterator[bytes]:
    """One member: its header, exactly `file.size` bytes of data, the padding to the block."""
    yield header(file.name, size=file.size, mtime=file.mtime)
    left = file.size
    for chunk in file.chunks:
        if len(chunk) > left:
            raise WriteError(f"{file.name}: more than the {file.size} bytes its header declares")
        left -= len(chunk)
        if chunk:
            yield chunk
    if left:
        raise WriteError(f"{file.name}: {file.size - left} bytes, its header declares {file.size}")
    yield bytes(padding(file.size))


def tar(members: Iterable[FileData]) -> Iterator[bytes]:
    """A PAX tar of `members` in order, ended and padded as `tarfile.open(mode="w|")` ends it."""
    written = 0
    for file in members:
        for piece in member(file):
            written += len(piece)
            yield piece
    yield end_of_archive(written)


# -- the uploader's bundle ----------------------------------------------------------------------


def files_entry(name: str, *, size: int, mtime: int, hashtype: str, hashsum: str) -> dict[str, Any]:
    """The Files entry the uploader writes for member `name`, its fields in the uploader's order.

    `subdir` is the member's directory without the leading `data`; `ctime` equals `mtime` (the
    uploader's choice: a file's real ctime changes on every chmod, so the same tree would give
    different bundles); the mimetype is guessed from the name as the uploader guesses it.
    """
    directory, _, base = name.rpartition("/")
    parts = directory.split("/")
    if parts[0] == "data":
        del parts[0]
    moment = datetime.datetime.fromtimestamp(int(mtime), datetime.UTC).replace(tzinfo=None).isoformat()
    return {
        "destinationTable": "Files",
        "name": base,
        "subdir": "/".join(part for part in parts if part),
        "size": size,
        "hashtype": hashtype,
        "hashsum": hashsum,
        "mimetype": mimetypes.guess_type(name, strict=True)[0] or "application/octet-stream",
        "ctime": moment,
        "mtime": moment,
    }


def metadata_bytes(transaction: Sequence[dict[str, Any]], entries: Iterable[dict[str, Any]]) -> bytes:
    """metadata.txt as the uploader encodes it (`json.dumps` defaults): the transaction, then the files."""
    return json.dumps([*transaction, *entries]).encode("utf-8")


def _metadata_size(files: Sequence[FileData], transaction: Sequence[dict[str, Any]], hashtype: str) -> int:
    placeholder = "0" * len(hasher(hashtype)().hexdigest())  # every sum of this type is this long
    entries = (files_entry(f.name, size=f.size, mtime=f.mtime, hashtype=hashtype, hashsum=placeholder) for f in files)
    return len(metadata_bytes(transaction, entries))


def bundle_size(files: Sequence[FileData], *, transaction: Sequence[dict[str, Any]],
                hashtype: str = DEFAULT_HASHTYPE) -> int:
    """The length of `bundle(files, ...)`, known before its first byte (no chunk is read)."""
    metadata = FileData(METADATA_NAME, _metadata_size(files, transaction, hashtype), 0)
    return tar_size([*files, metadata])


def bundle(files: Sequence[FileData], *, transaction: Sequence[dict[str, Any]],
           hashtype: str = DEFAULT_HASHTYPE) -> Iterator[bytes]:
    """The uploader's bundle of `files`: hashed as they stream, metadata.txt last. Iterate once."""
    new_hash = hasher(hashtype)
    announced = _metadata_size(files, transaction, hashtype)
    entries: list[dict[str, Any]] = []
    written = 0
    for file in files:
        digest = new_hash()
        for piece in member(dataclasses.replace(file, chunks=_hashed(file.chunks, digest))):
            written += len(piece)
            yield piece
        entries.append(files_entry(file.name, size=file.size, mtime=file.mtime, hashtype=hashtype,
                                   hashsum=digest.hexdigest()))
    metadata = metadata_bytes(transaction, entries)
    if len(metadata) != announced:  # `bundle_size` (and a Content-Length already sent) depends on it
        raise WriteError(f"{METADATA_NAME} is {len(metadata)} bytes, {announced} were announced")
    for piece in member(FileData.of(METADATA_NAME, metadata, mtime=0)):
        written += len(piece)
        yield piece
    yield end_of_archive(written)


def _hashed(chunks: Iterable[bytes], digest: Any) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def coalesce(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Pieces joined into chunks of about `size` bytes: one write per chunk, not per tar header."""
    buffer = bytearray()
    for piece in pieces:
        if not buffer and len(piece) >= size:
            yield piece
            continue
        buffer += piece
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)
