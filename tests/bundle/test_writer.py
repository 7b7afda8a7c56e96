"""The bundle writer against the two writers it must equal: pacifica-uploader's `Bundler` and `tarfile`.

Generated trees (names long, non-ASCII, at the top or deep; sizes around the 512-byte block; data
in chunks of any size) are written by both and compared byte for byte; the service's own parser
then reads the bundle back and finds every file with the sum metadata.txt gives it.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pacifica.uploader.bundler import Bundler
from pacifica.uploader.metadata import MetaData, MetaObj

from ingest.bundle import match, parse_metadata
from ingest.bundle.writer import (
    RECORD,
    FileData,
    WriteError,
    bundle,
    bundle_size,
    coalesce,
    files_entry,
    tar,
    tar_size,
)

from .builders import scan

TRANSACTION: list[dict[str, Any]] = [
    {"destinationTable": "Transactions.submitter", "value": 10},
    {"destinationTable": "Transactions.project", "value": "1234a"},
    {"destinationTable": "Transactions.instrument", "value": 54},
    {"destinationTable": "TransactionKeyValue", "key": "Tag", "value": "run-42"},
]
MTIME = 1_700_000_000

segment = st.text(st.characters(codec="utf-8", exclude_characters="/\\\x00", exclude_categories=("Cc", "Cs")),
                  min_size=1, max_size=40)
names = st.lists(segment, min_size=1, max_size=4).map(lambda parts: "data/" + "/".join(parts))
contents = st.one_of(st.binary(max_size=1100), st.sampled_from([b"", bytes(511), bytes(512), bytes(513), bytes(5000)]))
trees = st.dictionaries(names, contents, min_size=1, max_size=6)


def pieces(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` cut in pieces of the given sizes (cycled), empty pieces included."""
    out, position, turn = [], 0, 0
    while position < len(data):
        step = sizes[turn % len(sizes)]
        out.append(data[position:position + step])
        position += step
        turn += 1
    return [b"", *out, b""]


def files_of(tree: dict[str, bytes], sizes: list[int] | None = None) -> list[FileData]:
    return [FileData(name, len(data), MTIME + index, pieces(data, sizes or [len(data) or 1]))
            for index, (name, data) in enumerate(tree.items())]


def uploader_bundle(tree: dict[str, bytes], hashtype: str) -> bytes:
    metadata = MetaData([MetaObj(**item) for item in TRANSACTION])
    file_data = [{"name": name, "size": len(data), "mtime": MTIME + index, "fileobj": io.BytesIO(data)}
                 for index, (name, data) in enumerate(tree.items())]
    out = io.BytesIO()
    Bundler(metadata, file_data, hashfunc=hashtype).stream(out)
    return out.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, sizes=st.lists(st.integers(1, 700), min_size=1, max_size=4),
       hashtype=st.sampled_from(["sha1", "md5", "sha256"]))
def test_a_bundle_is_what_pacificas_bundler_writes(tree: dict[str, bytes], sizes: list[int], hashtype: str) -> None:
    files = files_of(tree, sizes)
    ours = b"".join(bundle(files, transaction=TRANSACTION, hashtype=hashtype))
    assert ours == uploader_bundle(tree, hashtype)
    assert len(ours) == bundle_size(files, transaction=TRANSACTION, hashtype=hashtype)
    assert len(ours) % RECORD == 0


@settings(max_examples=30, deadline=None)
@given(tree=trees)
def test_the_service_reads_every_file_back_with_its_sum(tree: dict[str, bytes]) -> None:
    raw = b"".join(bundle(files_of(tree), transaction=TRANSACTION))
    index = scan(raw, chunks=700)
    assert index.members[-1].name == "metadata.txt"
    manifest = parse_metadata(index.metadata)
    found = {}
    for entry, member in match(manifest, index):
        data = raw[member.data_offset:member.data_end]
        assert hashlib.sha1(data).hexdigest() == entry.hashsum and len(data) == entry.size
        found[member.name] = data
    assert found == tree


@pytest.mark.parametrize("hashtype", ["sha1", "md5", "sha256", "sha512", "blake2b", "sha3_256"])
def test_the_size_is_known_before_the_first_byte_for_every_hashtype(hashtype: str) -> None:
    files = files_of({"data/a.txt": b"a" * 700, "data/x/ü.bin": bytes(10_000), "data/e": b""}, [333])
    announced = bundle_size(files, transaction=TRANSACTION, hashtype=hashtype)
    assert len(b"".join(bundle(files, transaction=TRANSACTION, hashtype=hashtype))) == announced


@settings(max_examples=40, deadline=None)
@given(members=st.lists(st.tuples(st.one_of(names, segment), contents), max_size=5),
       sizes=st.lists(st.integers(1, 900), min_size=1, max_size=3))
def test_a_tar_is_what_tarfile_writes_to_a_stream(members: list[tuple[str, bytes]], sizes: list[int]) -> None:
    files = [FileData(name, len(data), MTIME, pieces(data, sizes)) for name, data in members]
    theirs = io.BytesIO()
    with tarfile.open(fileobj=theirs, mode="w|", format=tarfile.PAX_FORMAT) as stream:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            stream.addfile(info, io.BytesIO(data))
    ours = b"".join(tar(files))
    assert ours == theirs.getvalue()
    assert len(ours) == tar_size(files)


def test_a_member_that_gives_fewer_bytes_than_declared_stops_the_stream() -> None:
    stream = tar([FileData("data/a", 10, MTIME, [b"12345"]), FileData.of("metadata.txt", b"[]", mtime=0)])
    with pytest.raises(WriteError, match=r"data/a: 5 bytes, its header declares 10"):
        b"".join(stream)


def test_a_member_that_gives_more_bytes_than_declared_stops_before_the_excess() -> None:
    written: list[bytes] = []
    with pytest.raises(WriteError, match=r"data/a: more than the 4 bytes"):
        for piece in tar([FileData("data/a", 4, MTIME, [b"123", b"45"])]):
            written.append(piece)
    assert b"45" not in written and written[-1] == b"123"


def test_files_are_read_one_after_another_while_the_stream_goes() -> None:
    read: list[str] = []

    def chunks(name: str) -> Any:
        read.append(name)
        yield b"x"

    stream = bundle([FileData("data/a", 1, MTIME, chunks("a")), FileData("data/b", 1, MTIME, chunks("b"))],
                    transaction=[])
    next(stream)  # the first header is out before any file is read
    assert read == []
    list(stream)
    assert read == ["a", "b"]


@pytest.mark.parametrize("name, subdir, base", [
    ("data/a.txt", "", "a.txt"),
    ("data/x/y/z.csv", "x/y", "z.csv"),
    ("data//x//z", "x", "z"),
    ("other/z", "other", "z"),
])
def test_a_files_entry_names_the_file_as_the_uploader_does(name: str, subdir: str, base: str) -> None:
    entry = files_entry(name, size=3, mtime=MTIME, hashtype="sha1", hashsum="0" * 40)
    assert (entry["subdir"], entry["name"]) == (subdir, base)
    assert entry["mtime"] == entry["ctime"] == "2023-11-14T22:13:20"
    assert list(entry) == ["destinationTable", "name", "subdir", "size", "hashtype", "hashsum", "mimetype", "ctime",
                           "mtime"]


def test_mimetypes_are_guessed_from_the_name() -> None:
    def mimetype(name: str) -> str:
        return str(files_entry(name, size=0, mtime=0, hashtype="sha1", hashsum="")["mimetype"])

    assert mimetype("data/a.txt") == "text/plain"
    assert mimetype("data/raw.no-such-extension") == "application/octet-stream"


@given(parts=st.lists(st.binary(max_size=300), max_size=20), size=st.integers(1, 1000))
def test_coalesce_keeps_every_byte_in_order_in_chunks_of_about_the_size(parts: list[bytes], size: int) -> None:
    chunks = list(coalesce(parts, size))
    assert b"".join(chunks) == b"".join(parts)
    assert all(len(chunk) >= size for chunk in chunks[:-1])
    assert all(len(chunk) < size + max(map(len, parts)) for chunk in chunks)  # never more than one piece held back
