"""The fields of a tar header block and the records of PAX extension headers, decoded.

`tarstream` frames members with these; each helper reads one field the way `tarfile` does
(NUL/space-terminated octal, GNU base-256, PAX `"<length> <key>=<value>\\n"` records, the checksum
both unsigned and in the historic signed variant, which member types carry data), and says
clearly, as an `open tar` BundleError, when a field that frames the archive is malformed. Names are
decoded leniently (`decode_name`): what cannot be UTF-8 is kept with `\\xNN` escapes, because a
member no Files entry lists must never fail a bundle.
"""
from __future__ import annotations

import re
import struct
from typing import Any, Final

from ingest.jobs import OPEN_TAR

from .errors import BundleError
from .index import MemberType

BLOCK: Final = 512
PAX_TYPES: Final = frozenset({b"x", b"X"})  # X: the Solaris spelling tarfile also accepts
GLOBAL_TYPE: Final = b"g"
LONGNAME_TYPE: Final = b"L"
LONGLINK_TYPE: Final = b"K"
SPARSE_TYPE: Final = b"S"
_POSIX_MAGIC: Final = b"ustar\x00"
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
NO_DATA: Final = frozenset(
    {MemberType.HARDLINK, MemberType.SYMLINK, MemberType.CHARDEV, MemberType.BLOCKDEV, MemberType.DIR, MemberType.FIFO}
)
_SIGNED_HEAD: Final = struct.Struct("148b")
_SIGNED_TAIL: Final = struct.Struct("356b")
_OCTAL: Final = re.compile(rb"[0-7]+")
_PAX_LENGTH: Final = re.compile(rb"([1-9][0-9]{0,8}) ")
_PAX_MTIME: Final = re.compile(r"-?[0-9]{1,20}(\.[0-9]{0,20})?")
# (name, magic bytes) of the compressed formats a client might send by mistake.
_COMPRESSION_MAGIC: Final = (
    ("gzip", b"\x1f\x8b"),
    ("bzip2", b"BZh"),
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("lz4", b"\x04\x22\x4d\x18"),
    ("zip", b"PK\x03\x04"),
)


def padded(size: int) -> int:
    """Bytes a payload of `size` occupies, rounded up to whole blocks."""
    return (size + BLOCK - 1) // BLOCK * BLOCK


def nts(field: bytes) -> bytes:
    """A NUL-terminated string field, without the NUL and what follows."""
    end = field.find(b"\x00")
    return field if end < 0 else field[:end]


def octal(field: bytes) -> int | None:
    """An octal number field (NUL/space terminated, blank = 0), or None if it is not one."""
    text = nts(field).strip(b" ")
    if not text:
        return 0
    if not _OCTAL.fullmatch(text):
        return None
    return int(text, 8)


def tar_number(field: bytes) -> int | None:
    """An octal field, or a GNU base-256 one (first byte 0x80 positive, 0xff negative)."""
    lead = field[0]
    if lead == 0x80:
        return int.from_bytes(field[1:], "big")
    if lead == 0xFF:
        return int.from_bytes(field[1:], "big") - (1 << (8 * (len(field) - 1)))
    return octal(field)


def checksum_ok(block: bytes) -> bool:
    """Whether the header block's checksum holds, as tarfile checks it (unsigned, or signed)."""
    field = block[148:156]
    stored = octal(field)
    # The checksum field itself counts as eight spaces (8 * 0x20 = 256).
    if stored == sum(block) - sum(field) + 256:
        return True
    signed = sum(_SIGNED_HEAD.unpack(block[:148])) + sum(_SIGNED_TAIL.unpack(block[156:])) + 256
    return stored is not None and stored == signed


def header_name(block: bytes) -> str:
    """The name in the header block itself (ustar's prefix joined), for a member without PAX/GNU names."""
    raw = nts(block[0:100])
    if block[257:263] == _POSIX_MAGIC and block[345] != 0:
        raw = nts(block[345:500]) + b"/" + raw
    return decode_name(raw)


def member_type(typeflag: bytes, name: str, *, sparse: bool) -> MemberType:
    """What a header's typeflag makes the member, as tarfile reads it."""
    if typeflag == SPARSE_TYPE or sparse:
        return MemberType.SPARSE
    if typeflag == b"\x00" and name.endswith("/"):
        return MemberType.DIR  # old v7 tars mark directories by a trailing slash only
    return _TYPEFLAGS.get(typeflag, MemberType.OTHER)


def decode_name(raw: bytes) -> str:
    """UTF-8, or - for a name some other encoding wrote - UTF-8 with `\\xNN` for the bytes that are not."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def sniff_compression(prefix: bytes) -> None:
    for name, magic in _COMPRESSION_MAGIC:
        if prefix[: len(magic)] == magic:
            if name == "zip":
                raise BundleError(OPEN_TAR, "the bundle is a zip archive; send an uncompressed tar")
            raise BundleError(OPEN_TAR, f"the bundle is compressed ({name}); send an uncompressed tar")


def parse_pax(payload: bytes, offset: int, *, is_global: bool) -> dict[str, Any]:
    """The values of a PAX header that matter to us; malformed records are an `open tar` error.

    Each record is `"<length> <key>=<value>\\n"`, where length counts the whole record. A record
    with an empty value deletes the key (POSIX). Trailing NUL padding is tolerated.
    """
    header = "PAX global header" if is_global else "PAX extended header"

    def corrupt(detail: str) -> BundleError:
        return BundleError(OPEN_TAR, f"the {header} at offset {offset} is malformed ({detail})")

    values: dict[str, Any] = {}
    pos, end = 0, len(payload)
    while pos < end:
        if payload[pos] == 0 and payload.count(0, pos) == end - pos:
            break
        match = _PAX_LENGTH.match(payload, pos)
        if match is None:
            raise corrupt(f"no record length at byte {pos}")
        length = int(match.group(1))
        stop = pos + length
        if stop > end or payload[stop - 1] != 0x0A:
            raise corrupt(f"the record at byte {pos} does not end where its length says")
        record = payload[match.end() : stop - 1]
        key_bytes, equals, value = record.partition(b"=")
        if not equals or not key_bytes:
            raise corrupt(f"the record at byte {pos} has no key=value")
        key = key_bytes.decode("utf-8", "backslashreplace")  # e.g. SCHILY.xattr.<a non-UTF-8 name>: not ours
        pos = stop
        if key.startswith("GNU.sparse."):
            values["sparse"] = True
            continue
        if key not in ("path", "linkpath", "size", "mtime"):
            continue  # uid, gid, uname, atime, ctime, comment, hdrcharset, SCHILY.*, LIBARCHIVE.*: not ours
        if not value:
            values.pop(key, None)
            continue
        text = decode_name(value)  # a path in another charset (hdrcharset=BINARY) is kept, escaped
        if key == "size":
            if len(text) > 20 or not text.isascii() or not text.isdigit():
                raise corrupt(f"size {text[:40]!r} is not a decimal number")
            values["size"] = int(text)
        elif key == "mtime":
            if _PAX_MTIME.fullmatch(text):  # an odd mtime frames nothing: ignored, not refused
                values["mtime"] = int(float(text)) if "." in text else int(text)
        else:
            values[key] = text
    return values
