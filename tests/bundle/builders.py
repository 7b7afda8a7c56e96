"""Generated inputs for the bundle tests: tars made by `tarfile`, broken ones by byte surgery.

The tars come from `tarfile`, not from the service's writer (`ingest.bundle.writer`): the scanner
must read every dialect a client may send (ustar, GNU, PAX, links, directories), and a reference
writer that is not ours keeps the scanner's tests independent of our own writer. Files entries do
come from the writer: they are the uploader's.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Sequence
from typing import Any

from ingest.bundle import Limits, TarIndex, TarScanner, writer

MTIME = 1_795_800_686  # 2026-11-27T17:31:26Z
FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}


def info(name: str, data: bytes | None = None, *, kind: bytes = tarfile.REGTYPE,
         **attrs: Any) -> tuple[tarfile.TarInfo, bytes | None]:
    """A (TarInfo, data) pair for `make_tar`."""
    member = tarfile.TarInfo(name)
    member.type = kind
    member.mtime = 1_700_000_000
    if data is not None:
        member.size = len(data)
    for key, value in attrs.items():
        setattr(member, key, value)
    return member, data


def make_tar(members: Iterable[tuple[tarfile.TarInfo, bytes | None]], *, fmt: str = "pax",
             encoding: str = "utf-8") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=FORMATS[fmt], encoding=encoding) as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def files_entry(path: str, data: bytes, *, hashtype: str = "sha1", **extra: Any) -> dict[str, Any]:
    """A Files entry for a member path `data/<subdir>/<name>`, as pacifica-uploader writes it."""
    entry = writer.files_entry(path, size=len(data), mtime=MTIME, hashtype=hashtype,
                               hashsum=hashlib.new(hashtype, data).hexdigest())
    return {**entry, **extra}


HEADER_ITEMS: list[dict[str, Any]] = [
    {"destinationTable": "Transactions.submitter", "value": 10},
    {"destinationTable": "Transactions.project", "value": "1234a"},
    {"destinationTable": "Transactions.instrument", "value": 54},
    {"destinationTable": "TransactionKeyValue", "key": "Tag", "value": "run-42"},
]


def metadata_for(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [*HEADER_ITEMS, *(files_entry(path, data) for path, data in files.items())]


def make_bundle(
    files: dict[str, bytes],
    *,
    fmt: str = "pax",
    metadata: Any = None,
    metadata_first: bool = False,
    extra: Sequence[tuple[tarfile.TarInfo, bytes | None]] = (),
) -> tuple[bytes, list[dict[str, Any]]]:
    """A bundle (tar bytes) with `files` under their member paths and a matching metadata.txt."""
    document = metadata_for(files) if metadata is None else metadata
    raw_md = document if isinstance(document, bytes) else json.dumps(document).encode("utf-8")
    members = [info(path, data) for path, data in files.items()] + list(extra)
    md_member = info("metadata.txt", raw_md)
    members = [md_member, *members] if metadata_first else [*members, md_member]
    return make_tar(members, fmt=fmt), document


def scan(raw: bytes, *, chunks: Sequence[int] | int | None = None, limits: Limits | None = None) -> TarIndex:
    """Feed `raw` to a scanner: in one piece, in pieces of one size, or in the given sizes (cycled)."""
    scanner = TarScanner(limits) if limits is not None else TarScanner()
    if chunks is None:
        scanner.feed(raw)
    else:
        sizes = [chunks] if isinstance(chunks, int) else list(chunks)
        position, turn = 0, 0
        while position < len(raw):
            step = max(1, sizes[turn % len(sizes)])
            scanner.feed(raw[position : position + step])
            position += step
            turn += 1
    return scanner.finish()


def header_checksum(block: bytearray) -> None:
    """Rewrite a header block's checksum after surgery."""
    block[148:156] = b"        "
    block[148:156] = b"%06o\x00 " % sum(block)


def patch_header(raw: bytes, offset: int, **fields: bytes) -> bytes:
    """Overwrite header fields (name, size, typeflag, ...) of the header at `offset`, fixing the checksum."""
    where = {"name": (0, 100), "mode": (100, 108), "size": (124, 136), "mtime": (136, 148), "typeflag": (156, 157),
             "linkname": (157, 257), "magic": (257, 265), "prefix": (345, 500)}
    block = bytearray(raw[offset : offset + 512])
    for key, value in fields.items():
        start, end = where[key]
        block[start:end] = value.ljust(end - start, b"\x00")[: end - start]
    header_checksum(block)
    return raw[:offset] + bytes(block) + raw[offset + 512 :]


def pax_record(key: str, value: bytes | str) -> bytes:
    body = f" {key}=".encode() + (value.encode() if isinstance(value, str) else value) + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def raw_header(name: bytes, *, size: int = 0, typeflag: bytes = b"0", magic: bytes = b"ustar\x0000") -> bytes:
    """One ustar header block built by hand (for fields tarfile will not write)."""
    block = bytearray(512)
    block[0:100] = name.ljust(100, b"\x00")[:100]
    block[100:108] = b"0000644\x00"
    block[108:116] = b"0000000\x00"
    block[116:124] = b"0000000\x00"
    block[124:136] = b"%011o\x00" % size
    block[136:148] = b"%011o\x00" % 1_700_000_000
    block[156:157] = typeflag
    block[257:265] = magic
    header_checksum(block)
    return bytes(block)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


END = bytes(1024)
