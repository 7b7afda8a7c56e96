"""Matching Files entries to members, archive keys, and whole bundles end to end."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.bundle import BundleError, TarIndex, archive_keys, final_document, hasher, match, parse_metadata
from ingest.jobs import INGEST_FILES, LOAD_METADATA

from .builders import files_entry, info, make_bundle, make_tar, metadata_for, scan

FILES = {"data/mywork/experiment/notes.txt": b"hello\n", "data/b.bin": bytes(5000), "data/Ünï/😀.txt": b"smile"}


def ingest(raw: bytes) -> list[tuple[str, bytes]]:
    """What the worker does with an index: parse, match, read by offset, verify the hash."""
    index = TarIndex.from_json(scan(raw, chunks=1000).to_json())
    manifest = parse_metadata(index.metadata)
    stored = []
    for entry, member in match(manifest, index):
        data = raw[member.data_offset : member.data_end]
        digest = hasher(entry.hashtype)()
        digest.update(data)
        assert digest.hexdigest() == entry.hashsum
        stored.append((entry.key(job_id=9), data))
    return stored


@pytest.mark.parametrize("fmt", ["ustar", "gnu", "pax"])
def test_end_to_end(fmt: str) -> None:
    raw, _ = make_bundle(FILES, fmt=fmt)
    assert ingest(raw) == [("9/mywork/experiment/notes.txt", b"hello\n"), ("9/b.bin", bytes(5000)),
                           ("9/Ünï/😀.txt", b"smile")]


def test_bundles_from_the_official_uploader() -> None:
    """pacifica-uploader's Bundler (metadata.txt written last) must ingest unchanged."""
    from pacifica.uploader.bundler import Bundler
    from pacifica.uploader.metadata import MetaData, MetaObj

    def metadata() -> MetaData:  # the Bundler appends Files entries to it: one per bundle
        return MetaData([
            MetaObj(destinationTable="Transactions.submitter", value=10),
            MetaObj(destinationTable="Transactions.project", value="1234a"),
            MetaObj(destinationTable="Transactions.instrument", value=54),
        ])

    contents = {"data/mywork/experiment/notes.txt": b"hello\n", "data/Ünï/file.bin": bytes(range(256)) * 40,
                "top.txt": b"top"}
    file_data = [{"name": name, "fileobj": io.BytesIO(data), "size": len(data), "mtime": 1_700_000_000} for name,
                 data in contents.items()]
    out = io.BytesIO()
    Bundler(metadata(), file_data, hashfunc="sha256").stream(out)
    raw = out.getvalue()
    index = scan(raw, chunks=4096)
    assert index.members[-1].name == "metadata.txt"
    manifest = parse_metadata(index.metadata)
    paths = [entry.path for entry in manifest.files]
    # The uploader strips "data/" from subdir; "top.txt" (not under data/) cannot be matched: that
    # is upstream's rule (data/<subdir>/<name>), so such a bundle fails at ingest files, as upstream.
    assert paths == ["data/mywork/experiment/notes.txt", "data/Ünï/file.bin", "data/top.txt"]
    with pytest.raises(BundleError) as caught:
        match(manifest, index)
    assert caught.value.task == INGEST_FILES and caught.value.message == (
        "1 of 3 files failed verification:\ndata/top.txt is listed in metadata.txt but not in the bundle")
    del contents["top.txt"]
    out = io.BytesIO()
    file_data = [{"name": name, "fileobj": io.BytesIO(data), "size": len(data), "mtime": 1_700_000_000} for name,
                 data in contents.items()]
    Bundler(metadata(), file_data).stream(out)
    assert [data for _key, data in ingest(out.getvalue())] == list(contents.values())


def test_unlisted_members_are_ignored() -> None:
    extra = [info("data/unlisted.txt", b"u"), info("../evil", b"e"),
             info("data/link", kind=tarfile.SYMTYPE, linkname="/etc/passwd")]
    raw, _ = make_bundle({"data/a.txt": b"a"}, extra=extra)
    assert [key for key, _ in ingest(raw)] == ["9/a.txt"]


def test_dot_slash_members_match() -> None:
    document = metadata_for({"data/a.txt": b"a"})
    raw = make_tar([info("./data/a.txt", b"a"), info("./metadata.txt", json.dumps(document).encode())])
    assert ingest(raw) == [("9/a.txt", b"a")]


def _refuse(raw: bytes, task: str) -> str:
    index = scan(raw)
    with pytest.raises(BundleError) as caught:
        match(parse_metadata(index.metadata), index)
    assert caught.value.task == task, caught.value.message
    return _lines(caught.value)


def _lines(error: BundleError) -> str:
    """The per-file lines of an error that lists files (its first line is the count)."""
    summary, _, lines = error.message.partition("\n")
    assert summary.endswith(":") and len(error.problems) == len(lines.split("\n"))
    return lines


def test_missing_member() -> None:
    document = metadata_for({"data/x/y.txt": b"y", "data/a.txt": b"a"})
    raw, _ = make_bundle({"data/a.txt": b"a"}, metadata=document)
    assert _refuse(raw, INGEST_FILES) == "data/x/y.txt is listed in metadata.txt but not in the bundle"


@pytest.mark.parametrize(
    ("member", "words"),
    [
        (info("data/f.txt", kind=tarfile.SYMTYPE, linkname="/etc/shadow"),
         "is a symbolic link to '/etc/shadow' in the bundle, not a regular file"),
        (info("data/f.txt", kind=tarfile.LNKTYPE, linkname="data/other"), "is a hard link to 'data/other'"),
        (info("data/f.txt", kind=tarfile.CHRTYPE), "is a character device"),
        (info("data/f.txt", kind=tarfile.BLKTYPE), "is a block device"),
        (info("data/f.txt", kind=tarfile.FIFOTYPE), "is a FIFO"),
        (info("data/f.txt", kind=tarfile.DIRTYPE), "is a directory"),
        (info("data/f.txt", b"x", kind=b"V"), "is a special member"),
    ],
)
def test_listed_special_members_are_hostile(member: tuple, words: str) -> None:
    document = [files_entry("data/f.txt", b"x")]
    raw, _ = make_bundle({}, metadata=document, extra=[member])
    message = _refuse(raw, LOAD_METADATA)
    assert message.startswith('data/f.txt (Files entry 0 ("f.txt")) ') and words in message


def test_size_mismatch() -> None:
    document = [files_entry("data/f.txt", b"twelve bytes")]
    raw, _ = make_bundle({"data/f.txt": b"ten bytes!"}, metadata=document)
    assert (
        _refuse(raw, INGEST_FILES)
        == 'data/f.txt is 10 bytes in the bundle but metadata.txt says 12 bytes (Files entry 0 ("f.txt"))'
    )


def test_duplicate_members_are_ambiguous() -> None:
    document = metadata_for({"data/f.txt": b"one"})
    raw, _ = make_bundle({}, metadata=document, extra=[info("data/f.txt", b"one"), info("./data//f.txt", b"two")])
    message = _refuse(raw, LOAD_METADATA)
    assert "in the bundle 2 times (headers at offsets 0, 1024)" in message and "ambiguous" in message
    raw, _ = make_bundle({"data/f.txt": b"one"}, metadata=document,
                         extra=[info("data/g.txt", b"1"), info("data/g.txt", b"2")])
    assert ingest(raw) == [("9/f.txt", b"one")]  # unlisted duplicates do not matter


def test_hostile_problems_come_before_missing_ones() -> None:
    document = [files_entry("data/missing.txt", b"m"), files_entry("data/link", b"l")]
    raw, _ = make_bundle({}, metadata=document, extra=[info("data/link", kind=tarfile.SYMTYPE, linkname="x")])
    assert "symbolic link" in _refuse(raw, LOAD_METADATA)


def test_archive_keys_and_collisions() -> None:
    manifest = parse_metadata(json.dumps(metadata_for({"data/a/x.txt": b"1", "data/b/x.txt": b"2"})).encode())
    assert archive_keys(manifest.files, job_id=4) == ["4/a/x.txt", "4/b/x.txt"]
    assert archive_keys(manifest.files, job_id=4, template="{job_id}/{file_id}", file_ids=[7, 8]) == ["4/7", "4/8"]
    with pytest.raises(BundleError) as caught:
        archive_keys(manifest.files, job_id=4, template="{job_id}/{name}")
    assert caught.value.task == INGEST_FILES and "would both be stored as '4/x.txt'" in caught.value.message
    with pytest.raises(ValueError):
        archive_keys(manifest.files, job_id=4, file_ids=[1])


def test_final_document_after_match() -> None:
    raw, document = make_bundle(FILES)
    index = scan(raw)
    manifest = parse_metadata(index.metadata)
    pairs = match(manifest, index)
    final = final_document(manifest, 55, [100 + n for n in range(len(pairs))])
    assert [item["_id"] for item in final if item["destinationTable"] == "Files"] == [100, 101, 102]
    assert final[-1] == {"destinationTable": "Transactions._id", "value": 55}
    assert len(final) == len(document) + 1


_BASE_BUNDLE = make_bundle(FILES, fmt="gnu")[0]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_bundles_end_to_end(data: st.DataObject) -> None:
    """Damage anywhere (tar structure, metadata bytes, member data): only BundleError, and
    whatever is accepted reads back members whose bytes lie inside the body."""
    raw = bytearray(_BASE_BUNDLE)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del raw[data.draw(st.integers(0, len(raw))) :]
    try:
        index = scan(bytes(raw), chunks=data.draw(st.integers(1, 5000)))
        manifest = parse_metadata(index.metadata)
        pairs = match(manifest, index)
    except BundleError:
        return
    for entry, member in pairs:
        assert member.data_end <= len(raw) and member.size == entry.size
        assert hashlib.new(entry.hashtype) is not None
