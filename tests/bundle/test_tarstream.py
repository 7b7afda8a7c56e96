"""The push tar scanner: formats, offsets, chunking, damage, limits, and the index document."""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import random
import tarfile
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.scan import Repeated, synthetic_unit
from ingest.bundle import BundleError, Limits, Member, MemberType, TarIndex, TarScanner
from ingest.bundle.headers import tar_number as _tar_number
from ingest.jobs import LOAD_METADATA, OPEN_TAR

from .builders import END, info, make_bundle, make_tar, pad, patch_header, pax_record, raw_header, scan

FILES = {
    "data/mywork/experiment/notes.txt": b"hello\n",
    "data/empty.bin": b"",
    "data/block.bin": bytes(range(256)) * 2,  # exactly one block
    "data/odd.bin": os.urandom(1537),
}
LONG = "data/" + "/".join(["d" * 90] * 5) + "/file.txt"  # 467 bytes: needs ustar prefix, GNU L or PAX
LONG_USTAR = "data/" + "d" * 140 + "/" + "e" * 90 + ".txt"  # 240 bytes: the ustar prefix field
UNICODE = "data/Ünïcødé/数据/файл 😀.txt"


def assert_matches_tarfile(raw: bytes, index: TarIndex) -> None:
    """Every member where `tarfile` finds it: same name, offsets, size and data."""
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        expected = tar.getmembers()
        assert [m.name for m in index.members] == [t.name.rstrip("/") for t in expected]
        for member, ti in zip(index.members, expected, strict=True):
            assert member.header_offset == ti.offset
            assert member.data_offset == ti.offset_data
            if ti.isreg():
                assert member.type is MemberType.FILE
                assert member.size == ti.size
                assert raw[member.data_offset : member.data_end] == tar.extractfile(ti).read()
            assert member.mode == ti.mode
            assert member.mtime == int(ti.mtime)


@pytest.mark.parametrize("fmt", ["ustar", "gnu", "pax"])
@pytest.mark.parametrize("metadata_first", [False, True])
def test_formats_index_like_tarfile(fmt: str, metadata_first: bool) -> None:
    raw, document = make_bundle(FILES, fmt=fmt, metadata_first=metadata_first)
    index = scan(raw)
    assert_matches_tarfile(raw, index)
    assert json.loads(index.metadata) == document
    assert index.size == len(raw)
    assert [m.name for m in index.members if m.name != "metadata.txt"] == list(FILES)


@pytest.mark.parametrize("fmt", ["ustar", "gnu", "pax"])
def test_long_names(fmt: str) -> None:
    name = LONG_USTAR if fmt == "ustar" else LONG
    raw = make_tar([info(name, b"x" * 700), info("metadata.txt", b"[]")], fmt=fmt)
    index = scan(raw)
    assert index.members[0].name == name
    assert_matches_tarfile(raw, index)
    if fmt != "ustar":  # an extension header precedes the member's own header
        assert index.members[0].header_offset == 0 and index.members[0].data_offset > 1024


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_long_link_names(fmt: str) -> None:
    target = "t/" * 80 + "target"
    raw = make_tar([info("data/link", kind=tarfile.SYMTYPE, linkname=target), info("metadata.txt", b"[]")], fmt=fmt)
    member = scan(raw).members[0]
    assert member.type is MemberType.SYMLINK and member.linkname == target and member.size == 0


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_unicode_names(fmt: str) -> None:
    raw = make_tar([info(UNICODE, b"unicode"), info("metadata.txt", b"[]")], fmt=fmt)
    index = scan(raw)
    assert index.members[0].name == UNICODE
    assert_matches_tarfile(raw, index)


def test_member_types_are_recorded() -> None:
    raw = make_tar(
        [
            info("data/dir", kind=tarfile.DIRTYPE),
            info("data/sym", kind=tarfile.SYMTYPE, linkname="../etc/passwd"),
            info("data/hard", kind=tarfile.LNKTYPE, linkname="data/file"),
            info("data/chr", kind=tarfile.CHRTYPE, devmajor=1, devminor=3),
            info("data/blk", kind=tarfile.BLKTYPE, devmajor=8, devminor=0),
            info("data/fifo", kind=tarfile.FIFOTYPE),
            info("data/cont", b"contiguous", kind=tarfile.CONTTYPE),
            info("data/odd", b"unknown type data", kind=b"Z"),
            info("data/file", b"regular"),
        ]
    )
    index = scan(raw)
    kinds = {m.name: m.type for m in index.members}
    assert kinds == {
        "data/dir": MemberType.DIR,
        "data/sym": MemberType.SYMLINK,
        "data/hard": MemberType.HARDLINK,
        "data/chr": MemberType.CHARDEV,
        "data/blk": MemberType.BLOCKDEV,
        "data/fifo": MemberType.FIFO,
        "data/cont": MemberType.FILE,
        "data/odd": MemberType.OTHER,
        "data/file": MemberType.FILE,
    }
    assert index.metadata is None
    assert_matches_tarfile(raw, index)  # unknown types carry data, as tarfile reads them


def test_names_are_normalised_but_never_resolved() -> None:
    raw = make_tar(
        [
            info("./data//a/./b.txt", b"1"),
            info("./metadata.txt", b"[]"),
            info("data/x/../y.txt", b"2"),
            info("/abs/z.txt", b"3"),
            info("data/sub/", kind=tarfile.DIRTYPE),
        ],
        fmt="gnu",
    )
    names = [m.name for m in scan(raw).members]
    assert names == ["data/a/b.txt", "metadata.txt", "data/x/../y.txt", "/abs/z.txt", "data/sub"]
    assert scan(raw).metadata == b"[]"  # ./metadata.txt is the root metadata.txt


def test_v7_directory_by_trailing_slash() -> None:
    header = bytearray(raw_header(b"data/olddir/", typeflag=b"\x00", magic=b"\x00" * 8))
    raw = header + pad(b"") + raw_header(b"metadata.txt", size=2, magic=b"\x00" * 8) + pad(b"[]") + END
    index = scan(bytes(raw))
    assert index.members[0].type is MemberType.DIR and index.members[0].name == "data/olddir"


def test_ustar_prefix_field_only_for_posix_magic() -> None:
    raw = make_tar([info("p" * 120 + "/name.txt", b"data")], fmt="ustar")
    assert scan(raw).members[0].name == "p" * 120 + "/name.txt"
    # The same bytes in the prefix area of a GNU header are not a prefix (GNU keeps times there).
    gnu = patch_header(raw, 0, magic=b"ustar  \x00")
    assert scan(gnu).members[0].name == "name.txt"


def test_base256_and_signed_checksum() -> None:
    data = b"z" * 1000
    raw = make_tar([info("data/big", data)], fmt="gnu")
    size_field = b"\x80" + (1000).to_bytes(11, "big")
    raw = patch_header(raw, 0, size=size_field)
    assert scan(raw).members[0].size == 1000
    assert _tar_number(b"\xff" + b"\xff" * 11) == -1
    assert _tar_number(b"  0644 \x00") == 0o644
    assert _tar_number(b"\x00" * 8) == 0
    assert _tar_number(b"0x12\x00") is None
    # A header whose name holds bytes >= 0x80, checksummed the historic signed way, is accepted.
    block = bytearray(raw_header("data/é".encode()))
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + b" " * 8 + block[156:])
    block[148:156] = b"%06o\x00 " % signed
    assert scan(bytes(block) + END).members[0].name == "data/é"


def test_pax_overrides_and_global_headers() -> None:
    pax = pax_record("path", "data/from-pax.txt") + pax_record("mtime", "1700000000.5") + pax_record("comment", "x")
    glob = pax_record("comment", "global") + pax_record("path", "ignored")
    raw = (
        raw_header(b"pax_global_header", size=len(glob), typeflag=b"g") + pad(glob)
        + raw_header(b"PaxHeaders/x", size=len(pax), typeflag=b"x") + pad(pax)
        + raw_header(b"short-name", size=3) + pad(b"abc")
        + raw_header(b"plain.txt", size=1) + pad(b"!")
        + END
    )
    index = scan(raw)
    first, second = index.members
    assert first.name == "data/from-pax.txt" and first.mtime == 1_700_000_000
    assert first.header_offset == 512 + len(pad(glob)) and first.size == 3
    assert raw[first.data_offset : first.data_end] == b"abc"
    assert second.name == "plain.txt"  # the x header applied to one member only


def test_pax_size_override() -> None:
    payload = b"q" * 3000
    pax = pax_record("size", "3000")
    raw = raw_header(b"PaxHeaders/big", size=len(pax),
                     typeflag=b"x") + pad(pax) + raw_header(b"data/big", size=0) + pad(payload) + END
    member = scan(raw).members[0]
    assert member.size == 3000 and raw[member.data_offset : member.data_end] == payload


def test_trailing_record_padding_and_lone_zero_block_at_end() -> None:
    raw = make_tar([info("data/a", b"a")])
    assert len(raw) == 10240  # tarfile pads to a record
    assert scan(raw + bytes(4096)).size == len(raw) + 4096
    one_zero = raw[:1024] + bytes(512)
    assert scan(one_zero).members[0].name == "data/a"


def test_metadata_first_last_and_missing() -> None:
    for first in (False, True):
        raw, document = make_bundle({"data/a": b"a"}, metadata_first=first)
        assert json.loads(scan(raw, chunks=1).metadata) == document
    assert scan(make_tar([info("data/a", b"a")])).metadata is None
    assert scan(make_tar([info("data/metadata.txt", b"[]")])).metadata is None  # not at the root
    assert scan(make_tar([info("metadata.txt", b"")])).metadata == b""


# -- chunking ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 511, 512, 513, 4096, 8 * 1024 * 1024])
def test_chunk_sizes(chunk: int) -> None:
    raw, _ = make_bundle({**FILES, LONG: b"L" * 2000, UNICODE: b"u"})
    assert scan(raw, chunks=chunk) == scan(raw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=20),
       fmt=st.sampled_from(["ustar", "gnu", "pax"]))
def test_random_chunking_equals_one_shot(sizes: list[int], fmt: str) -> None:
    raw, _ = make_bundle({**FILES, "data/x/y.txt": b"y" * 900}, fmt=fmt)
    assert scan(raw, chunks=sizes) == scan(raw)


def test_memoryview_and_bytearray_chunks() -> None:
    raw, _ = make_bundle(FILES)
    scanner = TarScanner()
    scanner.feed(bytearray(raw[:1000]))
    scanner.feed(memoryview(raw)[1000:])
    assert scanner.finish() == scan(raw)


# -- refusals ------------------------------------------------------------------------------------


def refuse(raw: bytes, *, task: str = OPEN_TAR, chunks: int | None = None, limits: Limits | None = None) -> str:
    with pytest.raises(BundleError) as caught:
        scan(raw, chunks=chunks, limits=limits)
    assert caught.value.task == task, caught.value.message
    return caught.value.message


def test_empty_and_tiny_bodies() -> None:
    assert "empty" in refuse(b"")
    assert "not a tar archive" in refuse(b"hello")
    assert "not a tar archive" in refuse(b"hello" * 200)
    # A tar of only zero blocks is a tar: upstream fails it at load metadata (no metadata.txt).
    empty = scan(bytes(10240))
    assert empty.members == () and empty.metadata is None and empty.size == 10240


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        ("gzip", gzip.compress),
        ("bzip2", bz2.compress),
        ("xz", lzma.compress),
        ("zstd", lambda data: b"\x28\xb5\x2f\xfd" + data),
    ],
)
def test_compressed_bundles(name: str, compress) -> None:
    raw, _ = make_bundle(FILES)
    body = compress(raw)
    message = refuse(body)
    assert f"compressed ({name})" in message and "uncompressed tar" in message
    # Known from the first bytes, long before the body ends.
    scanner = TarScanner()
    with pytest.raises(BundleError, match="compressed"):
        for byte in body[:8]:
            scanner.feed(bytes([byte]))
    assert "compressed" in refuse(body[:6])  # short bodies too


def test_zip_body() -> None:
    assert "zip" in refuse(b"PK\x03\x04" + bytes(600))


def test_random_bytes() -> None:
    rng = random.Random(7)
    for size in (1, 100, 512, 5000):
        message = refuse(rng.randbytes(size))
        assert "not a tar archive" in message


def test_truncation_everywhere() -> None:
    """Cut a bundle at every block boundary and at odd bytes inside blocks: always refused."""
    raw, _ = make_bundle({"data/a.txt": b"a" * 700, LONG: b"l" * 30, "data/z": b""}, fmt="gnu")
    last = scan(raw).members[-1]
    content_end = last.data_offset + -(-last.size // 512) * 512  # where the end marker starts
    cuts = sorted({*range(512, content_end + 1, 512), *range(1, content_end, 97)})
    for cut in cuts:
        with pytest.raises(BundleError) as caught:
            scan(raw[:cut])
        assert caught.value.task == OPEN_TAR
        assert "truncated" in caught.value.message or "not a tar" in caught.value.message, (cut, caught.value.message)
    for cut in range(content_end + 1, content_end + 512):
        assert "truncated" in refuse(raw[:cut])  # half an end marker
    assert scan(raw[: content_end + 512]).members == scan(raw).members  # one zero block, then EOF


def test_truncation_messages_name_the_place() -> None:
    raw, _ = make_bundle({"data/a.txt": b"a" * 700})
    metadata = scan(raw).members[-1]
    assert "inside member 'data/a.txt' (header at offset 0)" in refuse(raw[:600])
    assert "inside the tar header at offset 1536" in refuse(raw[:1600])
    assert "inside metadata.txt (header at offset 1536)" in refuse(raw[: metadata.data_end - 1])
    content_end = metadata.data_offset + -(-metadata.size // 512) * 512
    assert "end-of-archive marker is missing" in refuse(raw[:content_end])


def test_corrupt_header_checksum() -> None:
    raw, _ = make_bundle({"data/a.txt": b"a" * 700})
    broken = bytearray(raw)
    broken[1536 + 10] ^= 0xFF  # inside metadata.txt's header
    message = refuse(bytes(broken))
    assert "offset 1536" in message and "checksum" in message and "data/a.txt" in message


def test_invalid_number_fields() -> None:
    raw = make_tar([info("data/a", b"a")])
    assert "invalid size field" in refuse(patch_header(raw, 0, size=b"12x45\x00"))
    # mode and mtime frame nothing: an odd value is recorded as 0, the member is read as usual
    odd = scan(patch_header(patch_header(raw, 0, mode=b"9999\x00"), 0, mtime=b"soon"))
    assert (odd.members[0].name, odd.members[0].mode, odd.members[0].mtime, odd.members[0].size) == ("data/a", 0, 0, 1)
    assert "negative size" in refuse(patch_header(raw, 0, size=b"\xff" * 12))


def test_sparse_members_are_recorded_not_refused() -> None:
    after = info("data/after.txt", b"after")
    raw = make_tar([info("data/sparse.img", b"s" * 10), after], fmt="gnu")
    index = scan(patch_header(raw, 0, typeflag=b"S"))
    assert [(m.name, m.type.value) for m in index.members] == [("data/sparse.img", "sparse"),
                                                               ("data/after.txt", "file")]
    pax = pax_record("GNU.sparse.major", "1") + pax_record("GNU.sparse.name", "data/real.img")
    raw = raw_header(b"PaxHeaders/x", size=len(pax),
                     typeflag=b"x") + pad(pax) + raw_header(b"GNUSparseFile.0/real.img", size=10) + pad(b"s" * 10) + END
    assert scan(raw).members[0].type.value == "sparse"
    sparse_info = info("data/x.img", b"abc", pax_headers={"GNU.sparse.size": "3"})
    assert scan(make_tar([sparse_info])).members[0].type.value == "sparse"


def test_old_gnu_sparse_extension_blocks_are_framed() -> None:
    # An `S` header with isextended set is followed by sparse-map blocks, then the data: a member
    # after it must still be found where tarfile finds it.
    header = bytearray(raw_header(b"data/holes.img", size=3, typeflag=b"S", magic=b"ustar  \x00"))
    header[482] = 1
    from .builders import header_checksum
    header_checksum(header)
    extension = bytearray(512)
    extension[504] = 0
    tail = make_tar([info("data/after.txt", b"after")], fmt="gnu")
    raw = bytes(header) + bytes(extension) + pad(b"abc") + tail
    index = scan(raw, chunks=100)
    assert [(m.name, m.type.value, m.data_offset) for m in index.members] == [
        ("data/holes.img", "sparse", 1024), ("data/after.txt", "file", 2048)]
    assert "truncated" in refuse(raw[:700])


def test_huge_declared_size_refused_at_once() -> None:
    member = tarfile.TarInfo("data/huge")
    member.size = 2**60  # GNU writes it base-256
    header = member.tobuf(tarfile.GNU_FORMAT)
    scanner = TarScanner()
    with pytest.raises(BundleError) as caught:
        scanner.feed(header)  # refused on the header alone, no need to wait for 2**60 bytes
    assert (
        caught.value.task == OPEN_TAR
        and "max_total_bytes" in caught.value.message
        and "data/huge" in caught.value.message
    )
    small = Limits(max_total_bytes=4096)
    assert "max_total_bytes" in refuse(make_tar([info("data/a", b"a" * 5000)]), limits=small)


def test_too_many_members() -> None:
    raw = make_tar([info(f"data/{n}", b"") for n in range(5)])
    assert scan(raw, limits=Limits(max_members=5)).members[-1].name == "data/4"
    message = refuse(raw, limits=Limits(max_members=4))
    assert "more than 4 members" in message and "max_members" in message


def test_overlong_names_are_cut_and_never_match() -> None:
    long_name = "data/" + "a/" * 520 + "f"  # 1046 bytes: no Files entry can name it
    kept = scan(make_tar([info(long_name, b"")])).members[0].name
    assert len(kept) < 300 and "\\...(a name of 1046 bytes)" in kept
    long_segment = "data/" + "s" * 256  # refused in metadata.txt, harmless in the tar
    assert scan(make_tar([info(long_segment, b"")])).members[0].name == long_segment
    ok = "data/" + "é" * 127  # 254 bytes in one segment
    assert scan(make_tar([info(ok, b"")])).members[0].name == ok


def test_names_that_are_not_utf8_are_kept_escaped() -> None:
    latin = make_tar([info("data/caf\xe9", b"x"), info("\xe9" * 120, b"")], fmt="gnu", encoding="latin-1")
    assert [m.name for m in scan(latin).members] == ["data/caf\\xe9", "\\xe9" * 120]
    pax = pax_record("path", b"data/a\x00b")
    raw = raw_header(b"PaxHeaders/x", size=len(pax), typeflag=b"x") + pad(pax) + raw_header(b"x", size=0) + END
    assert scan(raw).members[0].name == "data/a\\x00b"
    bad_value = pax_record("path", b"data/\xff") + pax_record("linkpath",
                                                              b"\xfe") + pax_record("SCHILY.xattr.\xff", b"\x00")
    raw = raw_header(b"PaxHeaders/x", size=len(bad_value),
                     typeflag=b"x") + pad(bad_value) + raw_header(b"x", typeflag=b"2") + END
    member = scan(raw).members[0]
    assert (member.name, member.linkname) == ("data/\\xff", "\\xfe")


@pytest.mark.parametrize(
    "payload",
    [b"garbage", b"11 path=x\n", b"5 a=b\n", b"0 path=x\n", b"9 =value\n", b"99999999999 path=x\n",
     pax_record("size", "12a"), pax_record("size", "9" * 30)],
)
def test_malformed_pax_records(payload: bytes) -> None:
    raw = raw_header(b"PaxHeaders/x", size=len(payload), typeflag=b"x") + pad(payload) + raw_header(b"x") + END
    assert "PAX extended header at offset 0 is malformed" in refuse(raw)


def test_extension_header_limits_and_orphans() -> None:
    big = pax_record("comment", "c" * 5000)
    raw = raw_header(b"PaxHeaders/x", size=len(big), typeflag=b"x") + pad(big) + raw_header(b"x") + END
    assert "max_extended_header_bytes" in refuse(raw, limits=Limits(max_extended_header_bytes=4096))
    pax = pax_record("path", "data/a")
    orphan = raw_header(b"PaxHeaders/x", size=len(pax), typeflag=b"x") + pad(pax) + END
    assert "not followed by a member" in refuse(orphan)
    assert "not followed by a member" in refuse(raw_header(b"PaxHeaders/x", size=len(pax), typeflag=b"x") + pad(pax))
    glob = pax_record("size", "10")
    assert "global" in refuse(raw_header(b"g", size=len(glob), typeflag=b"g") + pad(glob) + raw_header(b"x") + END)


def test_data_after_the_end_marker() -> None:
    raw = make_tar([info("data/a", b"a")])
    message = refuse(raw + make_tar([info("data/b", b"b")]))
    assert "after the tar end-of-archive marker" in message
    lone = raw[:1024] + bytes(512) + raw_header(b"data/b") + END
    assert "lone zero block at offset 1024" in refuse(lone)


def test_metadata_member_problems() -> None:
    twice = make_tar([info("metadata.txt", b"[]"), info("./metadata.txt", b"[]")])
    message = refuse(twice, task=LOAD_METADATA)
    assert "metadata.txt twice" in message and "offsets 0 and 1024" in message
    link = make_tar([info("metadata.txt", kind=tarfile.SYMTYPE, linkname="/etc/passwd")])
    assert "metadata.txt in the bundle is a symlink" in refuse(link, task=LOAD_METADATA)
    folder = make_tar([info("metadata.txt", kind=tarfile.DIRTYPE)])
    assert "is a dir" in refuse(folder, task=LOAD_METADATA)
    big = make_tar([info("metadata.txt", b"[" * 2000)])
    message = refuse(big, task=LOAD_METADATA, limits=Limits(max_metadata_bytes=1000))
    assert "2000 bytes" in message and "max_metadata_bytes" in message


def test_errors_are_sticky_and_finish_is_once() -> None:
    scanner = TarScanner()
    with pytest.raises(BundleError) as first:
        scanner.feed(b"x" * 600)
    with pytest.raises(BundleError) as again:
        scanner.feed(b"more")
    assert again.value is first.value
    with pytest.raises(BundleError):
        scanner.finish()
    done = TarScanner()
    done.feed(make_tar([info("data/a", b"a")]))
    done.finish()
    with pytest.raises(RuntimeError):
        done.finish()
    with pytest.raises(RuntimeError):
        done.feed(b"")


# -- the index document --------------------------------------------------------------------------


def test_index_json_round_trip() -> None:
    raw, _ = make_bundle({**FILES, UNICODE: b"u"}, extra=[info("data/sym", kind=tarfile.SYMTYPE, linkname="x")])
    index = scan(raw)
    text = index.to_json()
    assert TarIndex.from_json(text) == index
    assert TarIndex.from_json(text.encode()) == index
    assert UNICODE in text  # names stay readable


def test_index_json_of_5000_members_is_cheap() -> None:
    members = tuple(Member(f"data/dir/file-{n:05d}.dat", MemberType.FILE, n * 2048, n * 2048 + 512, 1000, "", 0o644,
                           1_700_000_000) for n in range(5000))
    index = TarIndex(members=members, metadata=b"[" + b"{}," * 5000 + b"{}]", size=5000 * 2048 + 1024)
    text = index.to_json()  # its speed is measured by `python -m benchmarks.scan`, not asserted here
    assert TarIndex.from_json(text) == index
    assert len(text) < 5000 * 80


@pytest.mark.parametrize(
    "text",
    ["", "[]", "{}", '{"format": "other"}', "not json",
     '{"format":"ingest.bundle.index/1","size":1,"metadata":"!!","fields":["name","type","header_offset","data_offset","size","linkname","mode","mtime"],"members":[]}',
     '{"format":"ingest.bundle.index/1","size":1,"metadata":null,"fields":["name","type","header_offset","data_offset","size","linkname","mode","mtime"],"members":[["a","weird",0,512,0,"",0,0]]}',
     '{"format":"ingest.bundle.index/1","size":-1,"metadata":null,"fields":["name","type","header_offset","data_offset","size","linkname","mode","mtime"],"members":[]}',
     '{"format":"ingest.bundle.index/1","size":1,"metadata":null,"fields":["name","type","header_offset","data_offset","size","linkname","mode","mtime"],"members":[["a","file",0,512,true,"",0,0]]}'],
)
def test_corrupt_index_json(text: str) -> None:
    with pytest.raises(BundleError) as caught:
        TarIndex.from_json(text)
    assert caught.value.task == OPEN_TAR and "index" in caught.value.message


# -- memory and speed ----------------------------------------------------------------------------


def test_memory_is_independent_of_member_data() -> None:
    """64 MiB of member data streamed in 1 MiB chunks: the scanner keeps none of it."""
    header = tarfile.TarInfo("data/big.bin")
    header.size = 64 * 1024 * 1024
    chunk = bytes(1024 * 1024)
    scanner = TarScanner()
    tracemalloc.start()
    try:
        scanner.feed(header.tobuf(tarfile.PAX_FORMAT))
        for _ in range(64):
            scanner.feed(chunk)
        scanner.feed(END)
        index = scanner.finish()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert index.members[0].size == 64 * 1024 * 1024
    assert peak < 256 * 1024, peak


@pytest.mark.parametrize(("member_size", "chunk"), [(1 << 20, 8 << 20), (4096, 1 << 20), (4096, 777)])
def test_scan_of_a_long_stream_in_any_chunking_finds_every_member(member_size: int, chunk: int) -> None:
    """The same members as Python's own tar reader finds, whatever the chunk boundaries. (Its speed
    against that reader is a benchmark, `python -m benchmarks.scan`, never a timed assertion.)"""
    unit = synthetic_unit((2 << 20) // (member_size + 512), member_size)
    repeats = 8
    view = memoryview(unit)
    scanner = TarScanner()
    for _ in range(repeats):
        for at in range(0, len(unit), chunk):
            scanner.feed(view[at : at + chunk])
    scanner.feed(END)
    index = scanner.finish()
    with tarfile.open(fileobj=io.BufferedReader(Repeated(unit, repeats), 1 << 20), mode="r|") as tar:
        sizes = [member.size for member in tar]
    assert [member.size for member in index.members] == sizes


# -- property: damage is only ever a BundleError -------------------------------------------------

_BASE = [make_bundle(FILES, fmt=fmt)[0] for fmt in ("ustar", "gnu",
                                                    "pax")] + [make_tar([info(LONG, b"x" * 600), info(UNICODE, b"u")],
                                                                        fmt="gnu")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_tars_fail_only_with_bundle_error(data: st.DataObject) -> None:
    raw = bytearray(data.draw(st.sampled_from(_BASE)))
    operation = data.draw(st.sampled_from(["flip", "truncate", "splice", "insert", "fields"]))
    if operation == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    elif operation == "truncate":
        del raw[data.draw(st.integers(0, len(raw))) :]
    elif operation == "splice":
        start = data.draw(st.integers(0, len(raw)))
        other = data.draw(st.sampled_from(_BASE))
        other_start = data.draw(st.integers(0, len(other)))
        raw[start:] = other[other_start:]
    elif operation == "insert":
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=600))
    else:
        # Corrupt a header field but keep the checksum valid, so the field parsers are exercised.
        block_start = data.draw(st.sampled_from(list(range(0, min(len(raw), 8192), 512))))
        field = data.draw(st.sampled_from(["name", "mode", "size", "mtime", "typeflag", "linkname", "magic", "prefix"]))
        raw = bytearray(patch_header(bytes(raw), block_start, **{field: data.draw(st.binary(max_size=160))}))
    chunks = data.draw(st.one_of(st.none(), st.lists(st.integers(1, 2000), min_size=1, max_size=5)))
    try:
        index = scan(bytes(raw), chunks=chunks, limits=Limits(max_total_bytes=1 << 24))
    except BundleError as error:
        assert error.task in (OPEN_TAR, LOAD_METADATA) and error.message
    else:
        for member in index.members:
            assert member.data_end <= index.size
