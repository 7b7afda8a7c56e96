"""An incremental (push) tar parser that indexes a bundle while its bytes stream past.

The API feeds the request body to a `TarScanner` chunk by chunk as it streams the body into object
storage, so a body that is not a tar, is compressed or is truncated is known at once, and the
worker later gets a `TarIndex`: every member's normalised name, type, header offset, data offset
and size, plus the bytes of the root `metadata.txt`. The worker reads members by ranged reads at
their data offsets; it never parses the tar again.

Why not `tarfile`? `tarfile` pulls from a file object (even in stream mode `r|`), so it cannot be
driven by chunks pushed from an ASGI receive loop without a thread and a pipe, and its errors are
generic (`ReadError("invalid header")`) where we must say what is wrong and where. The header
format itself is small, so this module parses it directly: the 512-byte header block (ustar, GNU
and old v7), the checksum (unsigned and, like `tarfile`, the historic signed variant), octal and
base-256 numbers, PAX `x`/`X` records (path, linkpath, size, mtime; `GNU.sparse.*` marks a sparse
member), PAX
`g` global records (parsed, then ignored, as `tarfile` ignores them for a member without an `x`
header; a global `size` is refused because it would frame members differently in other readers),
and GNU `L`/`K` long names. Which member types carry data follows `tarfile` exactly (regular
files and unknown types do; links, directories, devices and FIFOs do not), so offsets agree with
what `tarfile` (and so Pacifica) would read.

Speed and memory: member data is skipped with arithmetic on a counter (no copy, no hashing), so
a chunk that lies inside a member costs a handful of bytecodes whatever its size. Only header
blocks are copied (512 bytes each), plus the extension payloads (bounded by
`max_extended_header_bytes`) and the metadata.txt bytes (bounded by `max_metadata_bytes`). Memory
is O(index), never O(bundle).

Strict on what the service uses, opaque on what it skips: the layout of the headers (checksums,
sizes, the framing of extension records) is checked hard, because a reader that frames members
differently would read other bytes; a member's name, type and other fields are only recorded.
Names are decoded as UTF-8; a name that is not UTF-8 (GNU tar in a Latin-1 locale, Windows'
tar.exe, commons-compress with a platform encoding) is kept with `\\xNN` escapes, a NUL in a PAX
path as `\\x00`, and a name longer than `max_name_bytes` is cut and marked: none of these can equal
a Files entry's path (a backslash is refused there), so such members are simply never used.
GNU sparse members (old `S` headers with their extension blocks, and PAX `GNU.sparse.*`) are
framed like `tarfile` frames them and recorded as `sparse`, refused only if a Files entry lists
one. Names are normalised by `names.normalise_member_name` (`./data//a` -> `data/a`). The root metadata.txt is the
member whose *normalised* name is `metadata.txt`, so `./metadata.txt` (what `tar -C dir -cf - .`
writes) counts too. Upstream accepts only the exact name; accepting both breaks no client that
works upstream, and a bundle holding both is refused as ambiguous (`load metadata`), as is a
metadata.txt that is not a regular file. Its bytes are the only member data the scanner keeps.

Strictness: the end-of-archive marker (two zero blocks) must be present and only zero bytes may
follow it (the record padding tar writers add); a lone zero block followed by more headers (two
tars concatenated, or damage) is refused rather than guessed at. A tar without any member is
left to `load metadata`, which says metadata.txt was not found (as upstream, where the step that
looks for metadata.txt is the one that fails).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any, Final

from ingest.jobs import LOAD_METADATA, OPEN_TAR

from .errors import BundleError
from .headers import BLOCK, decode_name, nts, octal, padded, parse_pax, sniff_compression, tar_number
from .limits import DEFAULT_LIMITS, Limits
from .names import normalise_member_name

ZERO_BLOCK: Final = bytes(BLOCK)
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


_TYPEFLAGS: Final[dict[bytes, MemberType]] = {
    b"0": MemberType.FILE,
    b"\x00": MemberType.FILE,
    b"7": MemberType.FILE,  # contiguous file: a regular file to every reader we know
    b"1": MemberType.HARDLINK,
    b"2": MemberType.SYMLINK,
    b"3": MemberType.CHARDEV,
    b"4": MemberType.BLOCKDEV,
    b"5": MemberType.DIR,
    b"6": MemberType.FIFO,
}
# tarfile's rule: the size field of these types does not announce data blocks.
_NO_DATA: Final = frozenset(
    {MemberType.HARDLINK, MemberType.SYMLINK, MemberType.CHARDEV, MemberType.BLOCKDEV, MemberType.DIR, MemberType.FIFO}
)
_PAX_TYPES: Final = frozenset({b"x", b"X"})  # X: the Solaris spelling tarfile also accepts
_GLOBAL_TYPE: Final = b"g"
_LONGNAME_TYPE: Final = b"L"
_LONGLINK_TYPE: Final = b"K"
_SPARSE_TYPE: Final = b"S"
_POSIX_MAGIC: Final = b"ustar\x00"

_SIGNED_HEAD: Final = struct.Struct("148b")
_SIGNED_TAIL: Final = struct.Struct("356b")

_CAPTURE_PLACES: Final = {
    "metadata": "inside metadata.txt",
    "pax": "inside a PAX extended header",
    "global": "inside a PAX global header",
    "longname": "inside a GNU long name",
    "longlink": "inside a GNU long link name",
}


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


class TarScanner:
    """Push bytes with `feed()`, in chunks of any size; `finish()` returns the `TarIndex`.

    The first `BundleError` poisons the scanner: every later `feed`/`finish` raises it again, so a
    caller that keeps streaming (to drain the request) cannot miss it.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, *,
                 before_metadata: Callable[[int], None] | None = None) -> None:
        self._limits = limits
        # Called with metadata.txt's size before its bytes are kept: the API reserves the memory
        # there, and whatever it raises (other than a BundleError) stops the scan before any allocation.
        self._before_metadata = before_metadata
        self._offset = 0  # absolute offset of the next byte feed() will see
        self._pending = bytearray()  # a header block split across chunks
        self._skip = 0  # bytes of data and padding to pass over before the next block
        self._capture_left = 0  # bytes still to keep for the payload being captured
        self._capture_parts: list[bytes] = []
        self._capture_buffer: bytearray | None = None  # metadata.txt, filled in place (size known)
        self._capture_kind = ""
        self._capture_pad = 0
        self._capture_at = 0  # header offset of the captured payload, for messages
        self._ext: dict[str, Any] = {}  # PAX / GNU values waiting for the member they describe
        self._ext_offset: int | None = None
        self._ext_bytes = 0
        self._members: list[Member] = []
        self._metadata: bytes | bytearray | None = None
        self._metadata_offset: int | None = None
        self._current = ""  # the last member's name, for messages
        self._where = ""  # what the bytes being skipped or captured belong to, for messages
        self._zero_at: int | None = None  # offset of a first zero block (the end marker's first half)
        self._sparse_blocks: tuple[str, int, int] | None = None  # old GNU sparse: (name, header offset, size)
        self._ended = False
        self._error: BundleError | None = None
        self._finished = False

    # -- the push interface ------------------------------------------------------------------

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Consume the next bytes of the body. Raises BundleError as soon as the bytes are bad."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if self._error is not None:
            raise self._error
        view = memoryview(chunk)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        try:
            self._consume(view)
        except BundleError as error:
            self._error = error
            raise

    @property
    def members(self) -> list[Member]:
        """The members parsed so far: append-only, so another thread may read it while we feed."""
        return self._members

    def finish(self) -> TarIndex:
        """Declare the end of the body and get the index; BundleError if the tar is incomplete."""
        if self._error is not None:
            raise self._error
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        try:
            self._check_complete()
        except BundleError as error:
            self._error = error
            raise
        return TarIndex(members=tuple(self._members), metadata=self._metadata, size=self._offset)

    @property
    def offset(self) -> int:
        """Bytes consumed so far."""
        return self._offset

    @property
    def member_count(self) -> int:
        return len(self._members)

    # -- the byte loop -----------------------------------------------------------------------

    def _consume(self, view: memoryview) -> None:
        size = len(view)
        i = 0
        while i < size:
            if self._skip:
                # The hot path: member data is passed over by arithmetic, never copied.
                step = min(self._skip, size - i)
                self._skip -= step
                i += step
                continue
            if self._capture_left:
                step = min(self._capture_left, size - i)
                if self._capture_buffer is not None:
                    at = len(self._capture_buffer) - self._capture_left
                    self._capture_buffer[at : at + step] = view[i : i + step]
                else:
                    self._capture_parts.append(bytes(view[i : i + step]))
                self._capture_left -= step
                i += step
                if not self._capture_left:
                    self._end_capture()
                continue
            if self._ended:
                self._check_trailer(view[i:], self._offset + i)
                break
            start = self._offset + i - len(self._pending)
            if self._pending or size - i < BLOCK:
                take = min(BLOCK - len(self._pending), size - i)
                self._pending += view[i : i + take]
                i += take
                if start == 0:
                    sniff_compression(bytes(self._pending))
                if len(self._pending) < BLOCK:
                    break
                block = bytes(self._pending)
                self._pending.clear()
            else:
                block = bytes(view[i : i + BLOCK])
                i += BLOCK
                if start == 0:
                    sniff_compression(block)
            self._block(block, start)
        self._offset += size

    def _check_trailer(self, rest: memoryview, at: int) -> None:
        """After the end-of-archive marker only zero padding may follow."""
        data = rest.tobytes()
        if data.count(0) != len(data):
            first = at + next(index for index, byte in enumerate(data) if byte)
            raise BundleError(
                OPEN_TAR,
                f"the bundle has data at offset {first} after the tar end-of-archive marker; "
                "send a single uncompressed tar",
            )

    # -- header blocks -----------------------------------------------------------------------

    def _block(self, block: bytes, offset: int) -> None:
        if self._sparse_blocks is not None:
            # An old GNU sparse header's extension block: sparse map entries, and a flag (byte
            # 504) saying whether another such block follows. The member's data comes after.
            if not block[504]:
                name, header_offset, size = self._sparse_blocks
                self._sparse_blocks = None
                self._add(Member(name, MemberType.SPARSE, header_offset, offset + BLOCK, size))
            return
        if block == ZERO_BLOCK:
            if self._ext_offset is not None:
                raise BundleError(
                    OPEN_TAR,
                    f"the tar extension header at offset {self._ext_offset} is not followed by a member",
                )
            if self._zero_at is None:
                self._zero_at = offset
            else:
                self._ended = True
            return
        if self._zero_at is not None:
            raise BundleError(
                OPEN_TAR,
                f"the tar has a lone zero block at offset {self._zero_at} followed by more headers "
                "(damaged, or two tars joined); send a single uncompressed tar",
            )
        self._check_checksum(block, offset)
        typeflag = block[156:157]
        size = self._number(block[124:136], "size", offset)
        if size < 0:
            raise BundleError(OPEN_TAR, f"the tar header at offset {offset} has a negative size ({size})")
        if offset + BLOCK + padded(size) > self._limits.max_total_bytes:
            name = self._ext.get("path") or nts(block[0:100]).decode("utf-8", "replace")
            raise BundleError(
                OPEN_TAR,
                f"the tar header at offset {offset} ({name!r}) declares {size} bytes, which takes the "
                f"bundle over the limit of {self._limits.max_total_bytes} bytes (max_total_bytes)",
            )
        if typeflag in _PAX_TYPES or typeflag == _GLOBAL_TYPE:
            self._start_extension("global" if typeflag == _GLOBAL_TYPE else "pax", size, offset)
        elif typeflag == _LONGNAME_TYPE:
            self._start_extension("longname", size, offset)
        elif typeflag == _LONGLINK_TYPE:
            self._start_extension("longlink", size, offset)
        else:
            self._member(block, typeflag, size, offset)

    def _check_checksum(self, block: bytes, offset: int) -> None:
        field = block[148:156]
        stored = octal(field)
        # The checksum field itself counts as eight spaces (8 * 0x20 = 256).
        unsigned = sum(block) - sum(field) + 256
        if stored == unsigned:
            return
        if stored is not None:
            signed = sum(_SIGNED_HEAD.unpack(block[:148])) + sum(_SIGNED_TAIL.unpack(block[156:])) + 256
            if stored == signed:
                return
        if offset == 0:
            raise BundleError(
                OPEN_TAR, "the bundle is not a tar archive (its first 512 bytes are not a tar header)"
            )
        after = f" after member {self._current!r}" if self._current else ""
        raise BundleError(
            OPEN_TAR,
            f"the tar header at offset {offset} is corrupt (checksum mismatch); the bundle is damaged{after}",
        )

    def _number(self, field: bytes, what: str, offset: int) -> int:
        value = tar_number(field)
        if value is None:
            raise BundleError(
                OPEN_TAR, f"the tar header at offset {offset} has an invalid {what} field {field!r}"
            )
        return value

    # -- extension headers (PAX, GNU long names) ---------------------------------------------

    def _start_extension(self, kind: str, size: int, offset: int) -> None:
        limit = self._limits.max_extended_header_bytes
        if kind != "global":
            if self._ext_offset is None:
                self._ext_offset = offset
            self._ext_bytes += size
        if size > limit or self._ext_bytes > limit:
            raise BundleError(
                OPEN_TAR,
                f"the tar extension header at offset {offset} is {size} bytes, over the limit of "
                f"{limit} bytes (max_extended_header_bytes)",
            )
        self._start_capture(kind, size, offset)

    def _start_capture(self, kind: str, size: int, offset: int) -> None:
        self._capture_kind = kind
        self._capture_at = offset
        self._where = _CAPTURE_PLACES[kind] + f" (header at offset {offset})"
        self._capture_parts = []
        self._capture_buffer = bytearray(size) if kind == "metadata" else None
        self._capture_pad = padded(size) - size
        self._capture_left = size
        if not size:
            self._end_capture()

    def _end_capture(self) -> None:
        kind, offset = self._capture_kind, self._capture_at
        self._skip = self._capture_pad
        if kind == "metadata":
            self._metadata, self._capture_buffer = self._capture_buffer, None
            return
        payload = b"".join(self._capture_parts)
        self._capture_parts = []
        if kind == "pax":
            self._ext.update(parse_pax(payload, offset, is_global=False))
        elif kind == "global":
            records = parse_pax(payload, offset, is_global=True)
            if "size" in records:
                raise BundleError(
                    OPEN_TAR,
                    f"the PAX global header at offset {offset} sets a size for every member; refusing "
                    "a tar other readers would frame differently",
                )
        elif kind in ("longname", "longlink"):
            key = "longname" if kind == "longname" else "longlink"
            self._ext[key] = decode_name(nts(payload))

    # -- members -----------------------------------------------------------------------------

    def _member(self, block: bytes, typeflag: bytes, size: int, offset: int) -> None:
        ext, ext_offset = self._ext, self._ext_offset
        self._ext, self._ext_offset, self._ext_bytes = {}, None, 0
        header_offset = offset if ext_offset is None else ext_offset

        name = ext.get("path") or ext.get("longname")
        if not name:
            raw = nts(block[0:100])
            if block[257:263] == _POSIX_MAGIC and block[345] != 0:
                raw = nts(block[345:500]) + b"/" + raw
            name = decode_name(raw)
        name = self._opaque_name(name)

        kind = _TYPEFLAGS.get(typeflag, MemberType.OTHER)
        if typeflag == b"\x00" and name.endswith("/"):
            kind = MemberType.DIR  # old v7 tars mark directories by a trailing slash only
        if typeflag == _SPARSE_TYPE or ext.get("sparse"):
            kind = MemberType.SPARSE
        if "size" in ext:
            size = ext["size"]
        data_size = 0 if kind in _NO_DATA else size
        data_offset = offset + BLOCK
        if data_offset + padded(data_size) > self._limits.max_total_bytes:
            raise BundleError(
                OPEN_TAR,
                f"the tar member {name!r} at offset {header_offset} declares {data_size} bytes, which takes "
                f"the bundle over the limit of {self._limits.max_total_bytes} bytes (max_total_bytes)",
            )
        linkname = self._opaque_name(ext.get("linkpath") or ext.get("longlink") or decode_name(nts(block[157:257])))
        # Mode and mtime frame nothing and are never used to read data: an odd value is recorded as 0.
        mode = (tar_number(block[100:108]) or 0) & 0o7777777  # base-256 could be negative
        mtime = ext.get("mtime")
        if mtime is None:
            mtime = tar_number(block[136:148]) or 0

        normalised = normalise_member_name(name)
        if typeflag == _SPARSE_TYPE and block[482]:
            # Extension blocks of the sparse map follow this header before the data.
            self._check_count()
            self._sparse_blocks = (normalised, header_offset, data_size)
            self._current = normalised
            self._where = f"inside the sparse map of member {normalised!r} (header at offset {header_offset})"
            return
        self._add(Member(normalised, kind, header_offset, data_offset, data_size, linkname, mode, mtime))

    def _opaque_name(self, name: str) -> str:
        """A name fit for the index: a NUL escaped, an overlong name cut and marked (never matched)."""
        if "\x00" in name:
            name = name.replace("\x00", "\\x00")
        limit = self._limits.max_name_bytes
        if len(name) > limit // 4 and len(name.encode("utf-8", "surrogatepass")) > limit:
            name = name[: limit // 4] + f"\\...(a name of {len(name.encode('utf-8', 'surrogatepass'))} bytes)"
        return name

    def _check_count(self) -> None:
        if len(self._members) >= self._limits.max_members:
            raise BundleError(
                OPEN_TAR,
                f"the bundle has more than {self._limits.max_members} members (max_members)",
            )

    def _add(self, member: Member) -> None:
        self._check_count()
        self._members.append(member)
        self._current = member.name
        if member.name == METADATA_NAME:
            self._start_metadata(member)
        else:
            self._skip = padded(member.size)
            self._where = f"inside member {member.name!r} (header at offset {member.header_offset})"

    def _start_metadata(self, member: Member) -> None:
        if self._metadata_offset is not None:
            raise BundleError(
                LOAD_METADATA,
                f"the bundle holds metadata.txt twice (headers at offsets {self._metadata_offset} and "
                f"{member.header_offset}); refusing an ambiguous bundle",
            )
        self._metadata_offset = member.header_offset
        if member.type is not MemberType.FILE:
            raise BundleError(
                LOAD_METADATA, f"metadata.txt in the bundle is a {member.type.value}, not a regular file"
            )
        if member.size > self._limits.max_metadata_bytes:
            raise BundleError(
                LOAD_METADATA,
                f"metadata.txt is {member.size} bytes, over the limit of "
                f"{self._limits.max_metadata_bytes} bytes (max_metadata_bytes)",
            )
        if self._before_metadata is not None:
            self._before_metadata(member.size)
        self._start_capture("metadata", member.size, member.header_offset)

    # -- the end -----------------------------------------------------------------------------

    def _check_complete(self) -> None:
        total = self._offset
        if total == 0:
            raise BundleError(OPEN_TAR, "the bundle is empty (0 bytes); send an uncompressed tar")
        if self._pending:
            start = total - len(self._pending)
            if start == 0:
                sniff_compression(bytes(self._pending))
                raise BundleError(
                    OPEN_TAR, f"the bundle is not a tar archive (only {total} bytes, less than one tar header)"
                )
            raise BundleError(
                OPEN_TAR, f"the bundle is truncated at byte {total}, inside the tar header at offset {start}"
            )
        if self._capture_left or self._skip:
            raise BundleError(OPEN_TAR, f"the bundle is truncated at byte {total}, {self._where}")
        if self._ext_offset is not None:
            raise BundleError(
                OPEN_TAR,
                f"the bundle is truncated at byte {total}: the tar extension header at offset "
                f"{self._ext_offset} is not followed by a member",
            )
        if self._sparse_blocks is not None:
            raise BundleError(OPEN_TAR, f"the bundle is truncated at byte {total}, {self._where}")
        if self._zero_at is None:
            raise BundleError(
                OPEN_TAR,
                f"the bundle is truncated at byte {total}: the tar end-of-archive marker is missing",
            )
        # A single zero block at the very end is accepted: tarfile stops at the first one too.
