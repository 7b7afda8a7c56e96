"""The framing of a tar as its bytes stream past: which bytes are a header, an extension, data, the end.

`Framer` is `TarScanner`'s engine (tarstream.py holds the push interface and the design notes):
a state machine over pushed chunks that keeps at most one header block of pending bytes, skips
member data by arithmetic, captures only extension payloads and metadata.txt, and records a
`Member` per header. Header fields are decoded by headers.py; every refusal is an `open tar` (or,
for metadata.txt, a `load metadata`) BundleError that names the offset and what lies there.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ingest.jobs import LOAD_METADATA, OPEN_TAR

from .errors import BundleError
from .headers import (
    BLOCK,
    GLOBAL_TYPE,
    LONGLINK_TYPE,
    LONGNAME_TYPE,
    NO_DATA,
    PAX_TYPES,
    SPARSE_TYPE,
    checksum_ok,
    decode_name,
    header_name,
    member_type,
    nts,
    padded,
    parse_pax,
    sniff_compression,
    tar_number,
)
from .index import METADATA_NAME, Member, MemberType
from .limits import Limits
from .names import normalise_member_name, opaque_member_name

ZERO_BLOCK: Final = bytes(BLOCK)

_CAPTURE_PLACES: Final = {
    "metadata": "inside metadata.txt",
    "pax": "inside a PAX extended header",
    "global": "inside a PAX global header",
    "longname": "inside a GNU long name",
    "longlink": "inside a GNU long link name",
}


class Framer:
    """The scanner's state between two chunks, and the rules that move it on."""

    def __init__(self, limits: Limits, *, before_metadata: Callable[[int], None] | None) -> None:
        self._limits = limits
        # Called with metadata.txt's size before its bytes are kept: the API reserves the memory
        # there, and whatever it raises (other than a BundleError) stops the scan before any allocation.
        self._before_metadata = before_metadata
        self.offset = 0  # absolute offset of the next byte `consume` will see
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
        self.members: list[Member] = []  # append-only: another thread may read it meanwhile
        self.metadata: bytes | bytearray | None = None
        self._metadata_offset: int | None = None
        self._current = ""  # the last member's name, for messages
        self._where = ""  # what the bytes being skipped or captured belong to, for messages
        self._zero_at: int | None = None  # offset of a first zero block (the end marker's first half)
        self._sparse_blocks: tuple[str, int, int] | None = None  # old GNU sparse: (name, header offset, size)
        self._ended = False

    # -- the byte loop -----------------------------------------------------------------------

    def consume(self, view: memoryview) -> None:
        """Frame the next bytes of the body; BundleError as soon as they are bad."""
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
                self._check_trailer(view[i:], self.offset + i)
                break
            start = self.offset + i - len(self._pending)
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
        self.offset += size

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
        if typeflag in PAX_TYPES or typeflag == GLOBAL_TYPE:
            self._start_extension("global" if typeflag == GLOBAL_TYPE else "pax", size, offset)
        elif typeflag == LONGNAME_TYPE:
            self._start_extension("longname", size, offset)
        elif typeflag == LONGLINK_TYPE:
            self._start_extension("longlink", size, offset)
        else:
            self._member(block, typeflag, size, offset)

    def _check_checksum(self, block: bytes, offset: int) -> None:
        if checksum_ok(block):
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
            self.metadata, self._capture_buffer = self._capture_buffer, None
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

        name = self._opaque_name(ext.get("path") or ext.get("longname") or header_name(block))
        kind = member_type(typeflag, name, sparse=bool(ext.get("sparse")))
        if "size" in ext:
            size = ext["size"]
        data_size = 0 if kind in NO_DATA else size
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
        if typeflag == SPARSE_TYPE and block[482]:
            # Extension blocks of the sparse map follow this header before the data.
            self._check_count()
            self._sparse_blocks = (normalised, header_offset, data_size)
            self._current = normalised
            self._where = f"inside the sparse map of member {normalised!r} (header at offset {header_offset})"
            return
        self._add(Member(normalised, kind, header_offset, data_offset, data_size, linkname, mode, mtime))

    def _opaque_name(self, name: str) -> str:
        return opaque_member_name(name, max_bytes=self._limits.max_name_bytes)

    def _check_count(self) -> None:
        if len(self.members) >= self._limits.max_members:
            raise BundleError(
                OPEN_TAR,
                f"the bundle has more than {self._limits.max_members} members (max_members)",
            )

    def _add(self, member: Member) -> None:
        self._check_count()
        self.members.append(member)
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

    def check_complete(self) -> None:
        """At the end of the body: BundleError unless the tar ended where a tar may end."""
        total = self.offset
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
