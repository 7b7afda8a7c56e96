"""Every error the package raises: its task, and the key words a person needs to act on it.

One row per raising site, so a reworded message that loses the member, the limit or the remedy
fails here. The messages end up in the `exception` field of a failed job.
"""
from __future__ import annotations

import gzip
import json
import pickle
import tarfile
from collections.abc import Callable
from typing import Any

import pytest

from ingest.bundle import (
    BundleError,
    Limits,
    TarIndex,
    archive_keys,
    entry_path,
    match,
    parse_metadata,
    parse_move_document,
)
from ingest.bundle.digests import normalise_hashsum, normalise_hashtype
from ingest.jobs import INGEST_FILES, LOAD_METADATA, MOVE_FILES, OPEN_TAR

from .builders import END, files_entry, info, make_bundle, make_tar, pad, patch_header, pax_record, raw_header, scan

_A = make_tar([info("data/a.txt", b"a" * 700)])


def _pax(payload: bytes, then: bytes = raw_header(b"x") + END, kind: bytes = b"x") -> bytes:
    return raw_header(b"PaxHeaders/x", size=len(payload), typeflag=kind) + pad(payload) + then


def _match(files: dict[str, bytes], document: list[dict[str, Any]], extra: tuple = ()) -> Callable[[], object]:
    raw, _ = make_bundle(files, metadata=document, extra=list(extra))

    def run() -> object:
        index = scan(raw)
        return match(parse_metadata(index.metadata), index)

    return run


def _doc(raw: bytes, limits: Limits | None = None) -> Callable[[], object]:
    limits = Limits() if limits is None else limits
    return lambda: parse_metadata(raw, limits)


_ENTRY = files_entry("data/a/b.txt", b"b")

CASES: list[tuple[str, Callable[[], object], str, list[str]]] = [
    # open tar: what the body is
    ("empty body", lambda: scan(b""), OPEN_TAR, ["empty", "uncompressed tar"]),
    ("short body", lambda: scan(b"abc"), OPEN_TAR, ["not a tar archive", "3 bytes"]),
    ("not a tar", lambda: scan(b"x" * 1024), OPEN_TAR, ["not a tar archive", "first 512 bytes"]),
    ("gzip", lambda: scan(gzip.compress(_A)), OPEN_TAR, ["compressed (gzip)", "send an uncompressed tar"]),
    ("zip", lambda: scan(b"PK\x03\x04" + bytes(1000)), OPEN_TAR, ["zip archive", "uncompressed tar"]),
    ("empty tar", lambda: parse_metadata(scan(bytes(1024)).metadata, members=len(scan(bytes(1024)).members)),
     LOAD_METADATA, ["metadata.txt not found", "empty tar archive", "no members"]),
    # open tar: damage
    ("truncated data", lambda: scan(_A[:700]), OPEN_TAR, ["truncated at byte 700", "inside member 'data/a.txt'"]),
    ("truncated header", lambda: scan(_A[:1600]), OPEN_TAR, ["truncated at byte 1600", "tar header at offset 1536"]),
    ("truncated PAX", lambda: scan(_pax(pax_record("path", "p" * 600))[:800]), OPEN_TAR,
     ["truncated", "PAX extended header"]),
    ("no end marker", lambda: scan(_A[:1536]), OPEN_TAR,
     ["truncated at byte 1536", "end-of-archive marker is missing"]),
    ("orphan extension", lambda: scan(_pax(pax_record("path", "a"), then=END)), OPEN_TAR,
     ["extension header at offset 0", "not followed by a member"]),
    ("orphan at EOF", lambda: scan(_pax(pax_record("path", "a"), then=b"")), OPEN_TAR,
     ["truncated", "not followed by a member"]),
    ("lone zero block", lambda: scan(_A[:1536] + bytes(512) + _A[:1536] + END), OPEN_TAR,
     ["lone zero block at offset 1536", "two tars joined"]),
    ("trailing data", lambda: scan(_A + b"junk"), OPEN_TAR,
     [f"offset {len(_A)}", "after the tar end-of-archive marker"]),
    ("checksum", lambda: scan(_A[:1536] + b"\x01" + bytes(511) + END), OPEN_TAR,
     ["header at offset 1536", "checksum mismatch", "after member 'data/a.txt'"]),
    ("negative size", lambda: scan(patch_header(_A, 0, size=b"\xff" * 12)), OPEN_TAR, ["offset 0", "negative size"]),
    ("PAX malformed", lambda: scan(_pax(b"13 path=abc\n")), OPEN_TAR,
     ["PAX extended header at offset 0", "malformed", "does not end where its length says"]),
    ("PAX bad size", lambda: scan(_pax(pax_record("size", "x"))), OPEN_TAR,
     ["malformed", "size 'x' is not a decimal number"]),
    ("PAX global size", lambda: scan(_pax(pax_record("size", "3"), kind=b"g")), OPEN_TAR,
     ["PAX global header at offset 0", "size"]),
    # open tar: limits
    ("max_total_bytes", lambda: scan(_A, limits=Limits(max_total_bytes=1000)), OPEN_TAR,
     ["'data/a.txt'", "declares 700 bytes", "limit of 1000 bytes (max_total_bytes)"]),
    ("max_total_bytes via PAX", lambda: scan(_pax(pax_record("size", "99999")), limits=Limits(max_total_bytes=20000)),
     OPEN_TAR, ["declares 99999 bytes", "max_total_bytes"]),
    ("max_members", lambda: scan(make_tar([info("a", b""), info("b", b"")]), limits=Limits(max_members=1)), OPEN_TAR,
     ["more than 1 members", "max_members"]),
    ("max_extended_header_bytes",
     lambda: scan(_pax(pax_record("path", "p" * 100)), limits=Limits(max_extended_header_bytes=64)), OPEN_TAR,
     ["extension header at offset 0", "limit of 64 bytes", "max_extended_header_bytes"]),
    ("corrupt index", lambda: TarIndex.from_json("{}"), OPEN_TAR, ["recorded index", "corrupt"]),
    # load metadata: the metadata.txt member
    ("metadata twice", lambda: scan(make_tar([info("metadata.txt", b"[]"), info("metadata.txt", b"[]")])),
     LOAD_METADATA, ["metadata.txt twice", "offsets 0 and 1024", "ambiguous"]),
    ("metadata symlink", lambda: scan(make_tar([info("metadata.txt", kind=tarfile.SYMTYPE, linkname="x")])),
     LOAD_METADATA, ["metadata.txt", "symlink", "not a regular file"]),
    ("metadata too big (tar)",
     lambda: scan(make_tar([info("metadata.txt", b"[]" * 100)]), limits=Limits(max_metadata_bytes=10)), LOAD_METADATA,
     ["metadata.txt is 200 bytes", "limit of 10 bytes", "max_metadata_bytes"]),
    # load metadata: the document
    ("no metadata", _doc(None), LOAD_METADATA, ["no metadata.txt", "root"]),  # type: ignore[arg-type]
    ("metadata too big", _doc(b"[]" * 10, Limits(max_metadata_bytes=5)), LOAD_METADATA,
     ["20 bytes", "max_metadata_bytes"]),
    ("not UTF-8", _doc(b"[\xff]"), LOAD_METADATA, ["metadata.txt is not UTF-8", "byte 1", "line 1"]),
    ("not JSON", _doc(b"[\n  {,}]"), LOAD_METADATA, ["not valid JSON", "line 2 column 4"]),
    ("huge integer", _doc(b"[" + b"9" * 5000 + b"]"), LOAD_METADATA, ["not valid JSON", "digits"]),
    ("too deep", _doc(b"[" * 100_000), LOAD_METADATA, ["nests deeper than 64 levels", "max_metadata_depth"]),
    ("not a list", _doc(b'{"destinationTable": "Files"}'), LOAD_METADATA,
     ["must be a JSON list of objects", "not an object"]),
    ("item not object", _doc(b'["x"]'), LOAD_METADATA, ["item 0", "a string, not an object"]),
    ("no destinationTable", _doc(b'[{"a": 1}]'), LOAD_METADATA, ["item 0", "no destinationTable"]),
    ("bad destinationTable", _doc(b'[{"destinationTable": null}]'), LOAD_METADATA, ["item 0", "no destinationTable"]),
    ("duplicate key", _doc(b'[{"destinationTable": "Files", "destinationTable": "X"}]'), LOAD_METADATA,
     ["key 'destinationTable' twice", "ambiguous"]),
    ("NaN", _doc(b"[NaN]"), LOAD_METADATA, ["NaN is not a JSON number"]),
    ("inf", _doc(b"[1e400]"), LOAD_METADATA, ["number out of range", "1e400"]),
    ("transaction without value", _doc(b'[{"destinationTable": "Transactions.submitter"}]'), LOAD_METADATA,
     ["item 0", "Transactions.submitter", "no value"]),
    ("transaction twice",
     _doc(b'[{"destinationTable": "Transactions.project", "value": 1}, '
          b'{"destinationTable": "Transactions.project", "value": 1}]'),
     LOAD_METADATA, ["Transactions.project twice", "ambiguous"]),
    ("missing fields", _doc(json.dumps([{"destinationTable": "Files", "name": "n.txt"}]).encode()), LOAD_METADATA,
     ['Files entry 0 ("n.txt")', "missing subdir, size, hashtype, hashsum"]),
    ("wrong type", _doc(json.dumps([{**_ENTRY, "subdir": 3}]).encode()), LOAD_METADATA,
     ['Files entry 0 ("b.txt")', "subdir", "a number, not a string"]),
    ("bad size", _doc(json.dumps([{**_ENTRY, "size": -4}]).encode()), LOAD_METADATA,
     ['Files entry 0 ("b.txt")', "size", "non-negative integer", "-4"]),
    ("unsafe path", _doc(json.dumps([{**_ENTRY, "subdir": "a/../../x"}]).encode()), LOAD_METADATA,
     ['Files entry 0 ("b.txt")', "'..' component", "a/../../x"]),
    ("absolute", lambda: entry_path("/etc", "passwd", what="Files entry 2"), LOAD_METADATA,
     ["Files entry 2", "absolute subdir '/etc'"]),
    ("backslash", lambda: entry_path("a", "..\\..\\x", what="Files entry 2"), LOAD_METADATA,
     ["Files entry 2", "backslash", "name"]),
    ("control", lambda: entry_path("a", "x\ny", what="Files entry 2"), LOAD_METADATA,
     ["Files entry 2", "control character", "'\\n'"]),
    ("no name", lambda: entry_path("a", "", what="Files entry 2"), LOAD_METADATA, ["Files entry 2", "no file name"]),
    ("entry too long",
     lambda: entry_path("a" * 250 + "/" + "b" * 250, "c" * 250 + "/" + "d" * 250 + "/" + "e" * 250,
                        what="Files entry 2"), LOAD_METADATA, ["Files entry 2", "1259 bytes", "max_name_bytes"]),
    ("segment too long", lambda: entry_path("a", "f" * 300, what="Files entry 2"), LOAD_METADATA,
     ["Files entry 2", "segment of 300 bytes", "max_segment_bytes"]),
    ("duplicate files", _doc(json.dumps([_ENTRY, {**_ENTRY, "subdir": "data/a"}]).encode()), LOAD_METADATA,
     ['Files entry 0 ("b.txt")', 'Files entry 1 ("b.txt")', "both name data/a/b.txt"]),
    # load metadata: hostile bundles
    ("symlink listed", _match({}, [_ENTRY], (info("data/a/b.txt", kind=tarfile.SYMTYPE, linkname="/etc/passwd"),)),
     LOAD_METADATA,
     ["data/a/b.txt", 'Files entry 0 ("b.txt")', "symbolic link to '/etc/passwd'", "not a regular file"]),
    ("device listed", _match({}, [_ENTRY], (info("data/a/b.txt", kind=tarfile.CHRTYPE),)), LOAD_METADATA,
     ["data/a/b.txt", "character device", "not a regular file"]),
    ("member twice", _match({}, [_ENTRY], (info("data/a/b.txt", b"b"), info("data/a/b.txt", b"b"))), LOAD_METADATA,
     ["data/a/b.txt", "2 times", "offsets 0, 1024", "ambiguous"]),
    ("sparse listed", _match({}, [_ENTRY], (info("data/a/b.txt", b"b", kind=tarfile.GNUTYPE_SPARSE),)), LOAD_METADATA,
     ["data/a/b.txt", "a sparse file", "not a regular file"]),
    # ingest files
    ("absolute member", _match({}, [_ENTRY], (info("/data/a/b.txt", b"b"),)), INGEST_FILES,
     ["data/a/b.txt is listed in metadata.txt but not in the bundle", "'/data/a/b.txt'", "absolute name",
      "relative names"]),
    ("dot-dot member", _match({}, [_ENTRY], (info("x/../data/a/b.txt", b"b"),)), INGEST_FILES,
     ["data/a/b.txt is listed", "'x/../data/a/b.txt'", "'..' component"]),
    ("Latin-1 member",
     lambda: match(parse_metadata(json.dumps([files_entry("data/a/caf\xe9.txt", b"b")]).encode()),
                   scan(make_tar([info("data/a/caf\xe9.txt", b"b")], fmt="gnu", encoding="latin-1"))), INGEST_FILES,
                   ["data/a/caf\xe9.txt is listed", "'data/a/caf\\xe9.txt'", "not UTF-8", "UTF-8 names"]),
    ("member missing", _match({}, [_ENTRY]), INGEST_FILES,
     ["data/a/b.txt is listed in metadata.txt but not in the bundle"]),
    ("size mismatch", _match({"data/a/b.txt": b"bbb"}, [_ENTRY]), INGEST_FILES,
     ["data/a/b.txt", "3 bytes in the bundle", "metadata.txt says 1 bytes"]),
    # load metadata: what no byte could be verified against
    ("unknown hashtype", lambda: normalise_hashtype("crc32", what="Files entry 1"), LOAD_METADATA,
     ["Files entry 1", "unknown hashtype 'crc32'", "sha1"]),
    ("malformed hashsum", lambda: normalise_hashsum("xyz", hashtype="md5", what="Files entry 1"), LOAD_METADATA,
     ["Files entry 1", "malformed md5 hashsum 'xyz'", "32 hex digits"]),
    ("key collision",
     lambda: archive_keys(parse_metadata(json.dumps([_ENTRY, files_entry("data/c/b.txt", b"b")]).encode()).files,
                          job_id=1, template="{job_id}/{name}"), INGEST_FILES,
                          ["data/a/b.txt", 'Files entry 1 ("b.txt")', "both be stored as '1/b.txt'",
                           "{job_id}/{name}"]),
    # move files
    ("no source", lambda: parse_move_document(json.dumps([_ENTRY])), MOVE_FILES,
     ['Files entry 0 ("b.txt")', "no source"]),
]


@pytest.mark.parametrize(("label", "produce", "task", "words"), CASES, ids=[case[0] for case in CASES])
def test_error_message(label: str, produce: Callable[[], object], task: str, words: list[str]) -> None:
    with pytest.raises(BundleError) as caught:
        produce()
    error = caught.value
    assert error.task == task, error.message
    for word in words:
        assert word in error.message, f"{word!r} not in {error.message!r}"
    assert str(error) == error.message and "Traceback" not in error.message
    lines = error.message.split("\n")
    if error.problems:  # a summary line, then one line per file at fault
        assert lines[0].startswith(f"{len(error.problems)} of ") and len(lines) == len(error.problems) + 1
        assert [problem.line() for problem in error.problems] == lines[1:]
    else:
        assert len(lines) == 1
    assert all(len(line) < 400 for line in lines)
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.task, clone.message) == (error.task, error.message)


def test_bundle_error_refuses_unknown_tasks() -> None:
    with pytest.raises(ValueError):
        BundleError("UPLOADING", "not ours")
    assert repr(BundleError(OPEN_TAR, "m")) == "BundleError(task='open tar', message='m')"
