"""metadata.txt and /move documents: parsing, validation, and the final document."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.bundle import BundleError, FileEntry, Limits, final_document, parse_metadata, parse_move_document
from ingest.jobs import INGEST_FILES, LOAD_METADATA, MOVE_FILES

from .builders import HEADER_ITEMS, files_entry, metadata_for

UPLOADER_EXAMPLE = [
    {"destinationTable": "Transactions.submitter", "value": 10},
    {"destinationTable": "Transactions.project", "value": "1234a"},
    {"destinationTable": "Transactions.instrument", "value": 54},
    {"destinationTable": "TransactionKeyValue", "key": "Tag", "value": "run-42"},
    {"destinationTable": "Files", "name": "notes.txt", "subdir": "mywork/experiment", "size": 6,
     "hashtype": "sha1", "hashsum": "f572d396fae9206628714fb2ce00f72e94f2258f",
     "mimetype": "text/plain", "ctime": "2026-11-27T17:31:26", "mtime": "2026-11-27T17:31:26"},
]


def encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def refuse(raw: bytes | None, task: str = LOAD_METADATA, **kwargs: Any) -> str:
    with pytest.raises(BundleError) as caught:
        parse_metadata(raw, **kwargs)
    assert caught.value.task == task, caught.value.message
    if caught.value.problems:  # a count line, then a line per Files entry at fault
        summary, _, lines = caught.value.message.partition("\n")
        assert summary.endswith(":") and len(lines.split("\n")) == len(caught.value.problems)
        return lines
    return caught.value.message


def test_the_uploader_example() -> None:
    manifest = parse_metadata(encode(UPLOADER_EXAMPLE))
    assert manifest.document == UPLOADER_EXAMPLE
    assert manifest.transactions == {"submitter": 10, "project": "1234a", "instrument": 54}
    assert manifest.files == (
        FileEntry(index=4, name="notes.txt", subdir="mywork/experiment", path="data/mywork/experiment/notes.txt",
                  size=6, hashtype="sha1", hashsum="f572d396fae9206628714fb2ce00f72e94f2258f", mimetype="text/plain"),
    )
    assert manifest.total_size == 6
    assert manifest.files[0].key(job_id=12) == "12/mywork/experiment/notes.txt"


def test_unknown_tables_and_fields_pass_through() -> None:
    document = [*UPLOADER_EXAMPLE, {"destinationTable": "SomethingNew", "x": [1, {"y": None}]},
                {"destinationTable": "FileKeyValue", "key": "k", "value": "v", "file_id": 1}]
    document[4] = {**document[4], "extra": {"nested": True}}
    manifest = parse_metadata(encode(document))
    assert manifest.document == document and len(manifest.files) == 1


def test_unicode_names_bom_and_case() -> None:
    entry = files_entry("data/Ünï/数据/😀.txt", b"x")
    entry["hashsum"] = entry["hashsum"].upper()
    entry["hashtype"] = "SHA1"
    manifest = parse_metadata(b"\xef\xbb\xbf" + encode([entry]))
    parsed = manifest.files[0]
    assert (
        parsed.path == "data/Ünï/数据/😀.txt"
        and parsed.hashtype == "sha1"
        and parsed.hashsum == entry["hashsum"].lower()
    )
    assert manifest.document[0]["hashsum"] == entry["hashsum"]  # the document keeps what the client wrote


def test_no_files_is_fine() -> None:
    assert parse_metadata(encode(HEADER_ITEMS)).files == ()
    assert parse_metadata(b"[]").files == ()


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (None, "no metadata.txt at its root"),
        (b"", "not valid JSON: Expecting value at line 1 column 1"),
        (b'[{"destinationTable": "Files",\n "name": }]', "not valid JSON: Expecting value at line 2 column 10"),
        (b"[1, 2", "not valid JSON"),
        (b"\xff\xfe[]", "not UTF-8 (byte 0, line 1)"),
        (b'[\n\n"\xc3"]', "not UTF-8 (byte 4, line 3)"),
        (b"{}", "must be a JSON list of objects, not an object"),
        (b'"x"', "must be a JSON list of objects, not a string"),
        (b"null", "not null"),
        (b'[{"destinationTable": "X"}, 3]', "item 1 of metadata.txt is a number, not an object"),
        (b'[["x"]]', "item 0 of metadata.txt is a list, not an object"),
        (b'[{"value": 1}]', "item 0 of metadata.txt has no destinationTable"),
        (b'[{"destinationTable": 5}]', "destinationTable that is a number"),
        (b'[{"destinationTable": "X", "a": 1, "a": 2}]', "key 'a' twice"),
        (b'[{"destinationTable": "X", "a": NaN}]', "NaN is not a JSON number"),
        (b'[{"destinationTable": "X", "a": -Infinity}]', "-Infinity is not a JSON number"),
        (b'[{"destinationTable": "X", "a": 1e999}]', "number out of range"),
        (b'[{"destinationTable": "X", "a": ' + b"1" * 5000 + b"}]", "not valid JSON"),
        (b'[{"destinationTable": "Transactions.project"}]', "(Transactions.project) has no value"),
        (
            b'[{"destinationTable": "Transactions.project", "value": 1}, '
            b'{"destinationTable": "Transactions.project", "value": 2}]',
            "gives Transactions.project twice",
        ),
    ],
)
def test_document_errors(raw: bytes | None, words: str) -> None:
    assert words in refuse(raw)


def test_deep_nesting_never_reaches_the_recursion_limit() -> None:
    for raw in (b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000,
                b'[{"destinationTable":"X","a":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001 + b"]"):
        assert "nests deeper than 64 levels" in refuse(raw)
    just_over = b"[" * 65 + b"]" * 65
    assert "max_metadata_depth" in refuse(just_over)
    assert parse_metadata(b'[{"destinationTable":"X","a":' + b"[" * 62 + b"]" * 62 + b"}]").files == ()


def test_size_limit() -> None:
    raw = encode(metadata_for({"data/a": b"a"}))
    message = refuse(raw, limits=Limits(max_metadata_bytes=len(raw) - 1))
    assert f"{len(raw)} bytes" in message and "max_metadata_bytes" in message
    assert parse_metadata(raw, limits=Limits(max_metadata_bytes=len(raw))).files


@pytest.mark.parametrize("field", ["name", "subdir", "size", "hashtype", "hashsum"])
def test_missing_required_file_fields(field: str) -> None:
    entry = files_entry("data/a/b.txt", b"b")
    del entry[field]
    message = refuse(encode([*HEADER_ITEMS, entry]))
    assert "Files entry 4" in message and f"is missing {field}" in message
    entry[field] = None
    assert f"is missing {field}" in refuse(encode([*HEADER_ITEMS, entry]))


def test_missing_fields_are_all_named() -> None:
    assert 'Files entry 0 ("a") is missing subdir, size, hashtype, hashsum' in refuse(
        b'[{"destinationTable": "Files", "name": "a"}]'
    )


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("name", 5, "name that is a number, not a string"),
        ("subdir", ["a"], "subdir that is a list"),
        ("hashtype", {"a": 1}, "hashtype that is an object"),
        ("hashsum", True, "hashsum that is a boolean"),
        ("size", -1, "size that is not a non-negative integer: -1"),
        ("size", 6.0, "size that is not a non-negative integer: 6.0"),
        ("size", "6", 'size that is not a non-negative integer: "6"'),
        ("size", True, "not a non-negative integer: true"),
    ],
)
def test_ill_typed_file_fields(field: str, value: Any, words: str) -> None:
    entry = {**files_entry("data/a/b.txt", b"b"), field: value}
    assert words in refuse(encode([entry]))


def test_hash_problems_fail_loading() -> None:
    # Pacifica's contract puts them at load metadata: no byte of such a file could be verified.
    unknown = {**files_entry("data/a/b.txt", b"b"), "hashtype": "crc32"}
    message = refuse(encode([unknown]))
    assert 'Files entry 0 ("b.txt") has the unknown hashtype \'crc32\'' in message
    malformed = {**files_entry("data/a/b.txt", b"b"), "hashsum": "abc"}
    assert "malformed sha1 hashsum 'abc'" in refuse(encode([malformed]))


def test_every_bad_entry_is_reported() -> None:
    good = files_entry("data/ok.txt", b"ok")
    unknown = {**files_entry("data/a.txt", b"a"), "hashtype": "crc32"}
    malformed = {**files_entry("data/b.txt", b"b"), "hashsum": "abc"}
    unsafe = {**files_entry("data/c.txt", b"c"), "subdir": "../x"}
    with pytest.raises(BundleError) as caught:
        parse_metadata(encode([unknown, good, malformed, unsafe]))
    lines = caught.value.message.split("\n")
    assert lines[0] == "3 of 4 files in metadata.txt are refused:"
    assert [problem.reason for problem in caught.value.problems] == ["unknown-hashtype", "malformed-hashsum",
                                                                     "unsafe-path"]
    assert [problem.file for problem in caught.value.problems] == ["data/a.txt", "data/b.txt", "data/../x/c.txt"]
    assert "crc32" in lines[1] and "abc" in lines[2] and "'..'" in lines[3]


def test_listed_problems_are_capped() -> None:
    bad = [{**files_entry(f"data/{index}.txt", b"x"), "hashsum": "abc"} for index in range(30)]
    with pytest.raises(BundleError) as caught:
        parse_metadata(encode(bad), Limits(max_listed_problems=5))
    lines = caught.value.message.split("\n")
    assert lines[0] == "30 of 30 files in metadata.txt are refused:" and len(lines) == 7
    assert lines[-1] == "... and 25 more problems (not listed)" and len(caught.value.problems) == 30


def test_load_metadata_problems_come_first() -> None:
    unknown = {**files_entry("data/a/b.txt", b"b"), "hashtype": "crc32"}
    later_missing = files_entry("data/c.txt", b"c")
    del later_missing["hashsum"]
    assert "is missing hashsum" in refuse(encode([unknown, later_missing]), task=LOAD_METADATA)


def test_duplicate_files() -> None:
    first = files_entry("data/a/b.txt", b"b")
    same_member = {**files_entry("data/a/b.txt", b"other"), "subdir": "data//a/"}
    message = refuse(encode([first, same_member]))
    assert message == 'Files entry 0 ("b.txt") and Files entry 1 ("b.txt") of metadata.txt both name data/a/b.txt'


def test_unsafe_paths_fail_loading() -> None:
    entry = {**files_entry("data/a/b.txt", b"b"), "subdir": "../../etc"}
    assert "'..' component" in refuse(encode([entry]))


def test_transaction_id_from_the_client_is_replaced() -> None:
    document = [*UPLOADER_EXAMPLE, {"destinationTable": "Transactions._id", "value": 1}]
    manifest = parse_metadata(encode(document))
    final = final_document(manifest, 77, [5])
    assert [item for item in final if item["destinationTable"] == "Transactions._id"] == [
        {"destinationTable": "Transactions._id", "value": 77}
    ]


def test_final_document() -> None:
    files = {"data/a.txt": b"a", "data/sub/b.txt": b"bb"}
    document = metadata_for(files)
    document.insert(5, {"destinationTable": "Unknown", "q": 1})
    manifest = parse_metadata(encode(document))
    before = copy.deepcopy(manifest.document)
    final = final_document(manifest, 1234, range(900, 902))
    assert manifest.document == before  # not modified
    assert final[:-1] == [
        {**item, "_id": 900} if item.get("name") == "a.txt" else {**item,
                                                                  "_id": 901} if item.get("name") == "b.txt" else item
        for item in document
    ]
    assert final[-1] == {"destinationTable": "Transactions._id", "value": 1234}
    with pytest.raises(ValueError):
        final_document(manifest, 1234, [1])


# -- /move ---------------------------------------------------------------------------------------


def test_move_document() -> None:
    entry = {**files_entry("data/a/b.txt", b"b"), "source": "/srv/data/b.txt"}
    manifest = parse_move_document(json.dumps([*HEADER_ITEMS, entry]))
    assert manifest.files[0].source == "/srv/data/b.txt" and manifest.files[0].path == "data/a/b.txt"
    assert parse_move_document(encode([entry])).files[0].key(job_id=3) == "3/a/b.txt"


@pytest.mark.parametrize(("source", "words"),
                         [(None, "has no source"), ("", "has no source"), (5, "not a usable path: 5"),
                          ("a\x00b", "not a usable path")])
def test_move_source_problems(source: Any, words: str) -> None:
    entry = files_entry("data/a/b.txt", b"b")
    if source is not None:
        entry["source"] = source
    with pytest.raises(BundleError) as caught:
        parse_move_document(encode([entry]))
    assert (
        caught.value.task == MOVE_FILES
        and words in caught.value.message
        and 'Files entry 0 ("b.txt")' in caught.value.message
    )


def test_move_document_names_itself() -> None:
    for raw, task in ((b"{}", LOAD_METADATA), (b'["x"]', LOAD_METADATA), (b"[", LOAD_METADATA)):
        with pytest.raises(BundleError) as caught:
            parse_move_document(raw)
        assert caught.value.task == task and "the move document" in caught.value.message


# -- properties ----------------------------------------------------------------------------------

_SEED = encode(metadata_for({"data/a/b.txt": b"b", "data/c.txt": b"cc"}))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_metadata_fails_only_with_bundle_error(data: st.DataObject) -> None:
    raw = bytearray(_SEED)
    for _ in range(data.draw(st.integers(1, 6))):
        operation = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate", "dup"]))
        at = data.draw(st.integers(0, len(raw)))
        if operation == "flip" and at < len(raw):
            raw[at] = data.draw(st.sampled_from(b'{}[]",:0123456789-.eE \\u\xff\xc3nultrfa'))
        elif operation == "delete":
            del raw[at : at + data.draw(st.integers(1, 20))]
        elif operation == "insert":
            raw[at:at] = data.draw(st.binary(max_size=10) | st.sampled_from([b"[" * 2000, b'{"a":' * 100, b'"\\ud800"',
                                                                             b"1e400"]))
        elif operation == "truncate":
            del raw[at:]
        else:
            raw[at:at] = raw[at : at + data.draw(st.integers(1, 60))]
    for parse in (parse_metadata, parse_move_document):
        try:
            manifest = parse(bytes(raw))
        except BundleError as error:
            assert error.task in (LOAD_METADATA, INGEST_FILES, MOVE_FILES) and error.message
        else:
            final = final_document(manifest, 1, list(range(len(manifest.files))))
            json.dumps(final)  # whatever parses can be written back


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_files_item = st.fixed_dictionaries(
    {"destinationTable": st.just("Files")},
    optional={"name": _json | st.text(max_size=10), "subdir": _json | st.text(max_size=10),
              "size": _json | st.integers(-2, 9),
              "hashtype": _json | st.sampled_from(["sha1", "md5", "SHA256"]),
              "hashsum": _json | st.text("0123456789abcdef", min_size=32, max_size=40),
              "source": _json},
)


@settings(max_examples=300, deadline=None)
@given(document=st.lists(_files_item | st.dictionaries(st.sampled_from(["destinationTable", "value", "key"]), _json),
                         max_size=6) | _json)
def test_arbitrary_documents_fail_only_with_bundle_error(document: Any) -> None:
    raw = encode(document)
    try:
        manifest = parse_metadata(raw)
    except BundleError as error:
        assert error.task in (LOAD_METADATA, INGEST_FILES)
        return
    for entry in manifest.files:
        assert entry.path.startswith("data/") and entry.size >= 0
