"""The index of a bundle: what the API learnt while the tar streamed in, all the worker needs.

`TarScanner` (tarstream.py) makes it; the API stores it beside the body as JSON (`json_chunks`,
streamed in pieces so a large metadata.txt or a million members are never one string) and the
worker loads it (`from_json`) to read members by ranged reads at their data offsets, never
parsing the tar again. Each `Member` records a normalised name, a type, header and data offsets
and a size; offsets agree with what `tarfile` (and so Pacifica) would read. A recorded index
that does not load is an `open tar` BundleError: the job fails, the worker does not crash.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
from collections.abc import Iterator
from typing import Any, Final

from ingest.jobs import OPEN_TAR

from .errors import BundleError

METADATA_NAME: Final = "metadata.txt"
INDEX_FORMAT: Final = "ingest.bundle.index/1"


class MemberType(enum.StrEnum):
    """What a tar member is. Only `file` members can back a Files entry."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHARDEV = "chardev"
    BLOCKDEV = "blockdev"
    FIFO = "fifo"
    SPARSE = "sparse"
    OTHER = "other"


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """One tar member as the index records it.

    `header_offset` is where the member's first header block starts, including any PAX or GNU
    extension headers before it (as `tarfile`'s `TarInfo.offset`); `data_offset` is where its data
    starts. `size` is the number of data bytes; it is 0 for links, directories, devices and FIFOs,
    whose size field announces no data.
    """

    name: str
    type: MemberType
    header_offset: int
    data_offset: int
    size: int
    linkname: str = ""
    mode: int = 0
    mtime: int = 0

    @property
    def data_end(self) -> int:
        """The offset just past the member's data (exclusive end of a ranged read)."""
        return self.data_offset + self.size


_MEMBER_FIELDS: Final = tuple(field.name for field in dataclasses.fields(Member))
_BASE64_SLICE: Final = 3 * 1024 * 1024  # a multiple of 3: slices encode without padding in between
_ROWS_PER_CHUNK: Final = 8192


@dataclasses.dataclass(frozen=True, slots=True)
class TarIndex:
    """What the API learnt about a bundle while it streamed in; all the worker needs to read it.

    `metadata` holds the bytes of the root `metadata.txt` (None if the bundle has none); `size` is
    the length of the whole body in bytes. `sha1` maps a member's `data_offset` to the SHA-1 of its
    data, for the members the API hashed while they streamed in (see `MemberHasher`).
    """

    members: tuple[Member, ...]
    metadata: bytes | bytearray | None  # a bytearray when the scanner made it (filled in place, never joined)
    size: int
    sha1: dict[int, str] = dataclasses.field(default_factory=dict)

    def named(self, name: str) -> list[Member]:
        """Every member with this normalised name (more than one means an ambiguous bundle)."""
        return [member for member in self.members if member.name == name]

    def by_name(self) -> dict[str, list[Member]]:
        """Members grouped by normalised name, in archive order: one pass for many look-ups."""
        grouped: dict[str, list[Member]] = {}
        for member in self.members:
            grouped.setdefault(member.name, []).append(member)
        return grouped

    def to_json(self) -> str:
        """A compact JSON text: members as rows under a field list, metadata as base64."""
        return b"".join(self.json_chunks()).decode("utf-8")

    def json_chunks(self) -> Iterator[bytes]:
        """`to_json`'s text as UTF-8 pieces of at most a few MiB, made as they are consumed.

        The API streams them into the staging bucket: a 64 MiB metadata.txt or a million member
        rows never exist as one base64 string, one JSON string and its encoding at once."""
        head = {"format": INDEX_FORMAT, "size": self.size, "fields": list(_MEMBER_FIELDS),
                "sha1": {str(offset): digest for offset, digest in self.sha1.items()}}
        yield json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1].encode()
        if self.metadata is None:
            yield b',"metadata":null'
        else:
            yield b',"metadata":"'
            view = memoryview(self.metadata)
            for start in range(0, len(view), _BASE64_SLICE):
                yield base64.b64encode(view[start:start + _BASE64_SLICE])
            yield b'"'
        yield b',"members":['
        for start in range(0, len(self.members), _ROWS_PER_CHUNK):
            rows = [
                [m.name, m.type.value, m.header_offset, m.data_offset, m.size, m.linkname, m.mode, m.mtime]
                for m in self.members[start:start + _ROWS_PER_CHUNK]
            ]
            text = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))[1:-1]
            yield (("," if start else "") + text).encode()
        yield b"]}"

    @classmethod
    def from_json(cls, text: str | bytes) -> TarIndex:
        """Load an index `to_json` wrote; anything else is an `open tar` BundleError."""
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or document.get("format") != INDEX_FORMAT:
                raise ValueError(f"not an {INDEX_FORMAT} document")
            if document.get("fields") != list(_MEMBER_FIELDS):
                raise ValueError("unexpected member fields")
            size = document["size"]
            raw_metadata = document["metadata"]
            metadata = None if raw_metadata is None else base64.b64decode(raw_metadata, validate=True)
            members = tuple(_member_from_row(row) for row in document["members"])
            sha1 = {int(offset): digest for offset, digest in (document.get("sha1") or {}).items()}
            if not all(isinstance(digest, str) and len(digest) == 40 for digest in sha1.values()):
                raise ValueError("a recorded SHA-1 is malformed")
            if not _is_count(size):
                raise ValueError("size is not a non-negative integer")
        except (ValueError, TypeError, KeyError, IndexError, binascii.Error, RecursionError) as error:
            raise BundleError(OPEN_TAR, f"the recorded index of the bundle is corrupt ({error})") from None
        return cls(members=members, metadata=metadata, size=size, sha1=sha1)


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _member_from_row(row: Any) -> Member:
    if not isinstance(row, list) or len(row) != len(_MEMBER_FIELDS):
        raise ValueError("a member row has the wrong shape")
    name, kind, header_offset, data_offset, size, linkname, mode, mtime = row
    if not isinstance(name, str) or not isinstance(linkname, str):
        raise ValueError("a member name is not a string")
    if not all(_is_count(value) for value in (header_offset, data_offset, size, mode)) or type(mtime) is not int:
        raise ValueError(f"member {name!r} has a bad number")
    return Member(name, MemberType(kind), header_offset, data_offset, size, linkname, mode, mtime)
