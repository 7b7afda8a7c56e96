"""A corpus of small bundles as the tar tools scientists use really write them.

Each `Case` is a whole bundle (data files plus metadata.txt) made the way one producer makes it,
down to the header bytes where `tarfile` would not write them that way, and what the service must
do with it: ingest it (`files` are then every byte the archive must hold), or fail it at `task`
with a message holding `words` that tell the user what to change. The quirks come from the
producers' own bug trackers and manuals:

* macOS bsdtar (libarchive) writes an AppleDouble `._name` member before every file that carries
  extended attributes - and since macOS 13 nearly every file carries `com.apple.provenance`
  (libarchive#2510, bufbuild/buf#2504) - and the attributes themselves as PAX
  `LIBARCHIVE.xattr.*` / `SCHILY.xattr.*` records; `tar -C dir -cf - .` gives `./` prefixes and
  directory entries.
* GNU tar: `././@LongLink` members for names over 100 bytes, names in the locale's encoding (a
  Latin-1 locale writes Latin-1 bytes), base-256 numbers for values octal cannot hold (uids of
  directory services, dates before 1970 or after 2242), `--sparse` members with extension blocks,
  `-P` absolute names, concatenated archives (`cat a.tar b.tar`, the `-A` pitfall), hard links.
* PAX (`--format=pax`, Python 3.8+'s default): UTF-8 paths of any length, fractional and
  negative `mtime` (Go's archive/tar writes sub-second times, golang/go#11171; libarchive#2634),
  global headers (`git archive` writes `comment=<commit>`), `hdrcharset=BINARY`.
* Python's tarfile: ustar names split into prefix + name; GNU format; the v7 format of old tools.
* Apache commons-compress: space-terminated octal fields, `LONGFILE_GNU` long names, non-ASCII
  names in the platform encoding (its default before 1.21), star-style base-256 sizes.
* Go's archive/tar with `FormatGNU`: atime/ctime in the old GNU header, where ustar keeps its
  name prefix (a reader that takes them for a prefix reads a wrong name).
* Windows' tar.exe (bsdtar 3.5): names in the ANSI code page (libarchive#2092); other Windows
  tools (7-Zip, .NET before 7) write `\\` separators.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable
from typing import Any

from ingest.jobs import INGEST_FILES, LOAD_METADATA, OPEN_TAR

from .builders import END, HEADER_ITEMS, header_checksum, pad, pax_record, raw_header

MTIME = 1_700_000_000
APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(40)


@dataclasses.dataclass(frozen=True)
class Case:
    """One producer's bundle and what the service must make of it."""

    name: str
    producer: str
    tar: bytes
    files: dict[str, bytes]  # member path -> bytes the archive must hold (when it ingests)
    task: str | None = None  # the step it fails at; None: it ingests
    words: tuple[str, ...] = ()  # what the failure's message must say

    @property
    def ingests(self) -> bool:
        return self.task is None


def entry(path: str, data: bytes, *, subdir: str | None = None, name: str | None = None) -> dict[str, Any]:
    """A Files entry as pacifica-uploader writes it (`subdir`/`name` overridable as a client spells them)."""
    default_subdir, _, default_name = path.removeprefix("data/").rpartition("/")
    return {
        "destinationTable": "Files", "name": default_name if name is None else name,
        "subdir": default_subdir if subdir is None else subdir, "size": len(data), "hashtype": "sha1",
        "hashsum": hashlib.sha1(data).hexdigest(), "mimetype": "application/octet-stream",
        "ctime": "2026-11-27T17:31:26", "mtime": "2026-11-27T17:31:26",
    }


def metadata(*entries: dict[str, Any]) -> bytes:
    return json.dumps([*HEADER_ITEMS, *entries], ensure_ascii=False).encode()


Member = tuple[tarfile.TarInfo, bytes | None]


def member(name: str, data: bytes | None = None, *, kind: bytes = tarfile.REGTYPE, **attrs: Any) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = MTIME
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if data is not None:
        info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def write(members: Iterable[Member], *, fmt: int = tarfile.PAX_FORMAT, encoding: str = "utf-8",
          errors: str = "surrogateescape") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt, encoding=encoding, errors=errors) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def rewrite_headers(raw: bytes, change: Callable[[bytearray], None]) -> bytes:
    """Apply `change` to every header block of a tar `tarfile` wrote (found by walking it)."""
    out = bytearray(raw)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        offsets = [info.offset for info in tar.getmembers()]
    for offset in offsets:
        block = out[offset:offset + 512]
        change(block)
        header_checksum(block)
        out[offset:offset + 512] = block
    return bytes(out)


# -- the cases ------------------------------------------------------------------------------------

SCAN = b"scan-001 " * 300
NOTES = "Résumé of run 42\n".encode()


def _macos_bsdtar() -> Case:
    xattrs = {"LIBARCHIVE.xattr.com.apple.provenance": "AQIAt4M1hFe6ZRE=",
              "SCHILY.xattr.com.apple.quarantine": "0083;65a1b2c3;Safari;"}
    members = [
        member("./", kind=tarfile.DIRTYPE), member("./data/", kind=tarfile.DIRTYPE),
        member("./data/._scan.dat", APPLEDOUBLE), member("./data/scan.dat", SCAN, pax_headers=xattrs),
        member("./._metadata.txt", APPLEDOUBLE), member("./metadata.txt", metadata(entry("data/scan.dat", SCAN))),
    ]
    return Case("macos-bsdtar-appledouble", "macOS bsdtar: ./ prefixes, directories, ._ AppleDouble members, xattrs",
                write(members), {"data/scan.dat": SCAN})


def _macos_listed_appledouble() -> Case:
    # A folder copied from a FAT/exFAT stick holds real ._ files; the bundler lists them like any file.
    members = [member("data/._scan.dat", APPLEDOUBLE), member("data/scan.dat", SCAN),
               member("metadata.txt", metadata(entry("data/._scan.dat", APPLEDOUBLE), entry("data/scan.dat", SCAN)))]
    return Case("macos-appledouble-listed", "macOS: ._ files the scientist's folder really holds, listed",
                write(members), {"data/._scan.dat": APPLEDOUBLE, "data/scan.dat": SCAN})


def _gnu_long_names() -> Case:
    path = "data/" + "/".join(f"level-{index:02}-of-a-deep-instrument-tree" for index in range(6)) + "/frame.bin"
    members = [member(path, SCAN), member("metadata.txt", metadata(entry(path, SCAN)))]
    return Case("gnu-longlink", "GNU tar: ././@LongLink for a 250-byte name", write(members, fmt=tarfile.GNU_FORMAT),
                {path: SCAN})


def _gnu_latin1_unlisted() -> Case:
    members = [member("data/run/scan.dat", SCAN), member("data/run/caf\xe9-notes.txt", NOTES),
               member("metadata.txt", metadata(entry("data/run/scan.dat", SCAN)))]
    return Case("gnu-latin1-unlisted", "GNU tar in a Latin-1 locale: an unlisted member's name is not UTF-8",
                write(members, fmt=tarfile.GNU_FORMAT, encoding="latin-1"), {"data/run/scan.dat": SCAN})


def _gnu_latin1_listed() -> Case:
    members = [member("data/run/caf\xe9.txt", NOTES),
               member("metadata.txt", metadata(entry("data/run/café.txt", NOTES)))]
    return Case("gnu-latin1-listed", "GNU tar in a Latin-1 locale: a listed member's name is not UTF-8",
                write(members, fmt=tarfile.GNU_FORMAT, encoding="latin-1"), {}, INGEST_FILES,
                ("data/run/café.txt", "not UTF-8", "UTF-8 names"))


def _gnu_base256() -> Case:
    # Directory-service uids/gids above octal's 2,097,151 and dates before 1970 or after 2242 are
    # written in base-256 by GNU tar.
    old, future = b"digitised 1969 plate", b"a date from the year 3000"
    members = [member("data/plate.tif", old, mtime=-86_400 * 365, uid=3_000_000_000, gid=2**31),
               member("data/future.txt", future, mtime=32_503_680_000),
               member("metadata.txt", metadata(entry("data/plate.tif", old), entry("data/future.txt", future)))]
    return Case("gnu-base256", "GNU tar: base-256 uid, gid and mtime (before 1970, after 2242)",
                write(members, fmt=tarfile.GNU_FORMAT), {"data/plate.tif": old, "data/future.txt": future})


def _gnu_sparse(listed: bool) -> Case:
    image = b"disk image bytes"
    header = bytearray(raw_header(b"data/vm/disk.img", size=len(image), typeflag=b"S", magic=b"ustar  \x00"))
    header[386:398] = b"00000000000\x00"  # sparse map entry 0: offset 0 ...
    header[398:410] = b"%011o\x00" % len(image)  # ... numbytes
    header[482] = 1  # isextended: one more block of sparse map follows
    header[483:495] = b"%011o\x00" % (1 << 30)  # realsize: the 1 GiB the file claims
    header_checksum(header)
    extension = bytearray(512)
    extension[0:12] = b"%011o\x00" % (1 << 29)
    extension[12:24] = b"00000000000\x00"
    sparse = bytes(header) + bytes(extension) + pad(image)
    listed_entries = [entry("data/vm/disk.img", image)] if listed else []
    tail = write([member("data/run/scan.dat", SCAN),
                  member("metadata.txt", metadata(entry("data/run/scan.dat", SCAN), *listed_entries))],
                 fmt=tarfile.GNU_FORMAT)
    if listed:
        return Case("gnu-sparse-listed", "GNU tar --sparse: a listed sparse member", sparse + tail, {}, LOAD_METADATA,
                    ("data/vm/disk.img", "sparse file", "not a regular file"))
    return Case("gnu-sparse-unlisted", "GNU tar --sparse: an unlisted sparse VM image, its sparse map extended",
                sparse + tail, {"data/run/scan.dat": SCAN})


def _gnu_absolute() -> Case:
    members = [member("/data/run/scan.dat", SCAN), member("metadata.txt", metadata(entry("data/run/scan.dat", SCAN)))]
    return Case("gnu-absolute-names", "GNU tar -P: absolute member names", write(members, fmt=tarfile.GNU_FORMAT), {},
                INGEST_FILES, ("data/run/scan.dat", "'/data/run/scan.dat'", "absolute name", "relative names"))


def _gnu_concatenated() -> Case:
    first = write([member("data/a.txt", b"a")], fmt=tarfile.GNU_FORMAT)
    second = write([member("metadata.txt", metadata(entry("data/a.txt", b"a")))], fmt=tarfile.GNU_FORMAT)
    return Case("gnu-concatenated", "cat a.tar b.tar (or tar -A misused): two archives joined", first + second, {},
                OPEN_TAR, ("end-of-archive marker", "single uncompressed tar"))


def _gnu_hardlink() -> Case:
    members = [member("data/a.dat", SCAN), member("data/b.dat", kind=tarfile.LNKTYPE, linkname="data/a.dat"),
               member("metadata.txt", metadata(entry("data/a.dat", SCAN), entry("data/b.dat", SCAN)))]
    return Case("gnu-hardlink-listed", "GNU tar: a listed file stored as a hard link to another", write(members), {},
                LOAD_METADATA, ("data/b.dat", "hard link to 'data/a.dat'", "not a regular file"))


def _only_zero_blocks() -> Case:
    return Case("empty-archive", "tar -cf x.tar -T /dev/null: only zero blocks", bytes(10240), {}, LOAD_METADATA,
                ("metadata.txt not found", "empty tar archive"))


def _pax_unicode() -> Case:
    path = "data/Ünïcødé/数据/" + "長い名前" * 20 + "/файл 😀.txt"
    members = [member(path, NOTES), member("metadata.txt", metadata(entry(path, NOTES)))]
    return Case("pax-unicode-long", "PAX (Python 3.8+, tar --format=pax): UTF-8 names over 255 bytes", write(members),
                {path: NOTES})


def _pax_global_git_archive() -> Case:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "5b1f3c0e2d4a6b8c9d0e1f2a3b4c5d6e7f8a9b0c"}) as tar:
        for info, data in [member("data/src/run.py", b"print(42)\n"),
                           member("metadata.txt", metadata(entry("data/src/run.py", b"print(42)\n")))]:
            tar.addfile(info, io.BytesIO(data))
    return Case("pax-global-git-archive", "git archive: a PAX global header with the commit id", buffer.getvalue(),
                {"data/src/run.py": b"print(42)\n"})


def _pax_times() -> Case:
    # Go's archive/tar and libarchive write sub-second and negative PAX times; atime/ctime too.
    members = [member("data/go.bin", SCAN, pax_headers={"mtime": "1700000000.123456789", "atime": "1700000001.5",
                                                          "ctime": "1700000002.25"}),
               member("data/old.bin", NOTES, pax_headers={"mtime": "-1.5"}),
               member("metadata.txt", metadata(entry("data/go.bin", SCAN), entry("data/old.bin", NOTES)))]
    return Case("pax-fractional-negative-times", "Go archive/tar and libarchive: fractional and negative PAX mtime",
                write(members), {"data/go.bin": SCAN, "data/old.bin": NOTES})


def _pax_binary_charset() -> Case:
    members = [member("data/ok.txt", b"ok", pax_headers={"hdrcharset": "BINARY"}),
               member("data/ok.txt.orig", b"x"), member("metadata.txt", metadata(entry("data/ok.txt", b"ok")))]
    raw = write(members)
    # A PAX path of raw bytes in another charset (what hdrcharset=BINARY announces), unlisted:
    record = pax_record("hdrcharset", "BINARY") + pax_record("path", b"data/\xe9t\xe9.txt")
    odd = (raw_header(b"PaxHeaders/x", size=len(record), typeflag=b"x") + pad(record)
           + raw_header(b"x", size=1) + pad(b"e"))
    return Case("pax-hdrcharset-binary", "PAX hdrcharset=BINARY: an unlisted path that is not UTF-8", odd + raw,
                {"data/ok.txt": b"ok"})


def _pacifica_cli_dot_subdir() -> Case:
    # pacifica-cli uploading `./run42` writes subdir `./run42` and members `data/./run42/...`.
    files = {f"scan-{index:03}.dat": bytes([index]) * (100 + index) for index in range(1, 4)}
    members = [member(f"data/./run42/{name}", data) for name, data in files.items()]
    entries = [entry(f"data/run42/{name}", data, subdir="./run42") for name, data in files.items()]
    members.append(member("metadata.txt", metadata(*entries)))
    return Case("pacifica-cli-dot-subdir", "pacifica-cli: subdir ./run42, members data/./run42/...", write(members),
                {f"data/run42/{name}": data for name, data in files.items()})


def _dot_slash_directories() -> Case:
    members = [member("./", kind=tarfile.DIRTYPE), member("./data/", kind=tarfile.DIRTYPE),
               member("./data/run/", kind=tarfile.DIRTYPE), member("./data/run/empty/", kind=tarfile.DIRTYPE),
               member("./data/run/scan.dat", SCAN),
               member("./metadata.txt", metadata(entry("data/run/scan.dat", SCAN)))]
    return Case("gnu-dot-slash-directories", "tar -C dir -cf - . (GNU): ./ prefixes and directory entries",
                write(members, fmt=tarfile.GNU_FORMAT), {"data/run/scan.dat": SCAN})


def _python_ustar_prefix() -> Case:
    path = "data/" + "d" * 90 + "/" + "e" * 60 + "/frame.bin"  # over 100 bytes: split into prefix + name
    members = [member(path, SCAN), member("metadata.txt", metadata(entry(path, SCAN)))]
    return Case("python-ustar-prefix", "Python tarfile USTAR_FORMAT: a name split into prefix and name",
                write(members, fmt=tarfile.USTAR_FORMAT), {path: SCAN})


def _v7() -> Case:
    data_header = raw_header(b"data/run/scan.dat", size=len(SCAN), magic=bytes(8))
    document = metadata(entry("data/run/scan.dat", SCAN))
    raw = (raw_header(b"data/run/", typeflag=b"\x00", magic=bytes(8)) + data_header + pad(SCAN)
           + raw_header(b"metadata.txt", size=len(document), magic=bytes(8)) + pad(document) + END)
    return Case("v7-old-tar", "an old v7 tar: no magic, a directory marked by a trailing slash only", raw,
                {"data/run/scan.dat": SCAN})


def _commons_compress_spaces() -> Case:
    def space_terminated(block: bytearray) -> None:
        # commons-compress (and old Unix tars) end octal fields with a space, or lead with spaces.
        block[100:108] = b"   644 \x00"
        block[108:116] = b"  1750 \x00"
        block[136:148] = b"%11o " % MTIME

    members = [member("data/x.csv", b"1,2,3\n"), member("metadata.txt", metadata(entry("data/x.csv", b"1,2,3\n")))]
    return Case("commons-compress-space-fields", "Apache commons-compress: space-terminated and space-led octal fields",
                rewrite_headers(write(members, fmt=tarfile.USTAR_FORMAT), space_terminated), {"data/x.csv": b"1,2,3\n"})


def _commons_compress_platform_encoding() -> Case:
    members = [member("data/r\xe9sum\xe9.txt", NOTES),
               member("metadata.txt", metadata(entry("data/résumé.txt", NOTES)))]
    return Case("commons-compress-iso-8859-1", "commons-compress before 1.21: a listed name in ISO-8859-1",
                write(members, fmt=tarfile.GNU_FORMAT, encoding="iso-8859-1"), {}, INGEST_FILES,
                ("data/résumé.txt", "not UTF-8", "UTF-8 names"))


def _commons_compress_star_size() -> Case:
    def base256_size(block: bytearray) -> None:
        size = int(bytes(block[124:136]).strip(b" \x00") or b"0", 8)
        block[124:136] = b"\x80" + size.to_bytes(11, "big")  # BIGNUMBER_STAR/POSIX: binary size field

    members = [member("data/big.bin", SCAN), member("metadata.txt", metadata(entry("data/big.bin", SCAN)))]
    return Case("commons-compress-bignumber-star", "commons-compress BIGNUMBER_STAR: a base-256 size field",
                rewrite_headers(write(members, fmt=tarfile.GNU_FORMAT), base256_size), {"data/big.bin": SCAN})


def _go_gnu_atime() -> Case:
    def atime_ctime(block: bytearray) -> None:
        if block[257:265] == b"ustar  \x00":  # old GNU header: atime and ctime where ustar has its prefix
            block[345:357] = b"%011o\x00" % (MTIME + 1)
            block[357:369] = b"%011o\x00" % (MTIME + 2)

    members = [member("data/go/out.bin", SCAN), member("metadata.txt", metadata(entry("data/go/out.bin", SCAN)))]
    return Case("go-formatgnu-atime", "Go archive/tar FormatGNU: atime/ctime in the old GNU header",
                rewrite_headers(write(members, fmt=tarfile.GNU_FORMAT), atime_ctime), {"data/go/out.bin": SCAN})


def _windows_tar_ansi() -> Case:
    members = [member("data/run/na\xefve.txt", NOTES, mode=0o666, uname="", gname=""),
               member("data/run/scan.dat", SCAN, mode=0o666, uname="", gname=""),
               member("metadata.txt", metadata(entry("data/run/scan.dat", SCAN)))]
    return Case("windows-tar-exe-ansi", "Windows tar.exe (bsdtar 3.5): an unlisted name in the ANSI code page",
                write(members, fmt=tarfile.USTAR_FORMAT, encoding="cp1252"), {"data/run/scan.dat": SCAN})


def _windows_backslashes() -> Case:
    members = [member("data\\run1\\a.txt", b"hello"),
               member("metadata.txt", metadata(entry("data/run1/a.txt", b"hello")))]
    return Case("windows-backslash-separators", "7-Zip / .NET on Windows: \\ as the path separator", write(members), {},
                INGEST_FILES, ("data/run1/a.txt", "backslash", "/ separators"))


def _empty_listed_before_large() -> Case:
    large = bytes(range(256)) * 8192  # 2 MiB: read on its own, after an empty file
    members = [member("data/.keep", b""), member("data/large.bin", large),
               member("metadata.txt", metadata(entry("data/.keep", b""), entry("data/large.bin", large)))]
    return Case("empty-before-large", "an empty listed file (.keep) before a large one", write(members),
                {"data/.keep": b"", "data/large.bin": large})


def _metadata_json_data_file() -> Case:
    own = json.dumps({"dataset": "run 42", "instrument": 54}).encode()
    members = [member("data/metadata.json", own), member("metadata.txt", metadata(entry("data/metadata.json", own)))]
    return Case("data-file-named-metadata-json", "a dataset's own metadata.json among its files", write(members),
                {"data/metadata.json": own})


BUILDERS: tuple[Callable[[], Case], ...] = (
    _macos_bsdtar, _macos_listed_appledouble, _gnu_long_names, _gnu_latin1_unlisted, _gnu_latin1_listed,
    _gnu_base256, lambda: _gnu_sparse(False), lambda: _gnu_sparse(True), _gnu_absolute, _gnu_concatenated,
    _gnu_hardlink, _only_zero_blocks, _pax_unicode, _pax_global_git_archive, _pax_times, _pax_binary_charset,
    _pacifica_cli_dot_subdir, _dot_slash_directories, _python_ustar_prefix, _v7, _commons_compress_spaces,
    _commons_compress_platform_encoding, _commons_compress_star_size, _go_gnu_atime, _windows_tar_ansi,
    _windows_backslashes, _empty_listed_before_large, _metadata_json_data_file,
)


def corpus() -> list[Case]:
    return [build() for build in BUILDERS]


def case(name: str) -> Case:
    return next(item for item in corpus() if item.name == name)
