"""Hostile bundles through HTTP against the running stack: each one is refused, says why, writes nothing.

Every case here ends FAILED at `open tar` or `load metadata` (or with a 4xx at upload), with a
sentence in `exception` that names what is wrong, and with no object under `<job_id>/` in the
archive. The pure parser's unit tests (tests/bundle/) prove the scanner's verdicts; these prove the
service acts on them: the API, the staged index, the worker and the rollback all together.
The limits are the stack's (`TEST_SETTINGS` in conftest.py).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from minio import Minio
from minio.error import S3Error

from ingest.local.launcher import Stack
from tests.bundle.builders import pax_record, raw_header
from tests.integration import hostile
from tests.integration.bundles import TRANSACTION
from tests.integration.conftest import TEST_SETTINGS
from tests.integration.helpers import archive_keys, wait_complete
from tests.integration.hostile import chunked, entry, gnu_longname, listed, member, metadata, pax, tar

pytestmark = pytest.mark.stack

MAX_MEMBERS = int(TEST_SETTINGS["INGEST_MAX_MEMBERS"])
MAX_METADATA = int(TEST_SETTINGS["INGEST_MAX_METADATA_BYTES"])
MAX_BODY = int(TEST_SETTINGS["INGEST_MAX_BODY_BYTES"])
LONG = "/".join(letter * 200 for letter in "defghi")  # 1,205 bytes, no segment over 255
SECRET = b"root:x:0:0:root:/root:/bin/bash\n"

# (case, bundle maker, task, words the exception must contain)
CASES: list[tuple[str, Callable[[], bytes], str, list[str]]] = [
    # Absolute and escaping paths, listed as Files.
    ("absolute member listed", lambda: listed("/etc/passwd", member("/etc/passwd", SECRET), data=SECRET),
     "load metadata", ["absolute", "/etc"]),
    ("absolute via ustar prefix",
     lambda: listed("/etc/passwd", hostile.with_prefix(b"/etc", b"passwd", SECRET), data=SECRET),
     "load metadata", ["absolute", "/etc"]),
    ("dot-dot member listed", lambda: listed("data/../../escape.txt", member("data/../../escape.txt", b"x"), data=b"x"),
     "load metadata", ["'..'", "escape.txt"]),
    ("dot-dot in the name field", lambda: tar(member("data/a/../../b.txt", b"x"),
                                              metadata([{**entry("data/a/b.txt", b"x"), "name": "../../b.txt"}])),
     "load metadata", ["'..'", "b.txt"]),
    # NUL and control characters.
    ("NUL in a PAX path",
     lambda: listed("data/a.txt", pax([pax_record("path", b"data/a.txt\x00.sh")]), member("x", b"x"), data=b"x"),
     "ingest files", ["data/a.txt", "not in the bundle"]),  # the member's name is not data/a.txt
    ("NUL in a listed name",
     lambda: tar(member("data/a.txt", b"x"), metadata([{**entry("data/a.txt", b"x"), "name": "a.txt\x00.sh"}])),
     "load metadata", ["control character", "a.txt"]),
    # Names and segments over the limits (1,024 / 255 bytes).
    # (an unlisted member's long name is ignored; listing it is refused at load metadata)
    ("PAX name over 1024 bytes", lambda: listed(f"data/{LONG}", pax([pax_record("path", f"data/{LONG}")]), member("x")),
     "load metadata", ["1024", "max_name_bytes"]),
    ("GNU long name over 1024 bytes",
     lambda: listed(f"data/{LONG}", gnu_longname(f"data/{LONG}".encode()), member("x")),
     "load metadata", ["1024", "max_name_bytes"]),
    ("PAX segment over 255 bytes",
     lambda: listed("data/" + "s" * 256, pax([pax_record("path", "data/" + "s" * 256)]), member("x")),
     "load metadata", ["255", "max_segment_bytes"]),
    ("listed name over 1024 bytes", lambda: tar(metadata([entry(f"data/{LONG}")])),
     "load metadata", ["1024", "max_name_bytes"]),
    ("listed segment over 255 bytes", lambda: tar(metadata([entry("data/" + "s" * 256)])),
     "load metadata", ["255", "max_segment_bytes"]),
    # Members that are not regular files, listed as Files.
    ("symlink listed", lambda: listed("data/link.txt", member("data/link.txt", typeflag=b"2", linkname=b"/etc/passwd")),
     "load metadata", ["symbolic link", "/etc/passwd", "data/link.txt"]),
    ("hardlink listed",
     lambda: listed("data/hard.txt", member("data/hard.txt", typeflag=b"1", linkname=b"/etc/shadow")),
     "load metadata", ["hard link", "data/hard.txt"]),
    ("character device listed", lambda: listed("data/tty", member("data/tty", typeflag=b"3")),
     "load metadata", ["character device", "data/tty"]),
    ("block device listed", lambda: listed("data/sda", member("data/sda", typeflag=b"4")),
     "load metadata", ["block device", "data/sda"]),
    ("FIFO listed", lambda: listed("data/pipe", member("data/pipe", typeflag=b"6")),
     "load metadata", ["FIFO", "data/pipe"]),
    ("directory listed", lambda: listed("data/dir", member("data/dir/", typeflag=b"5")),
     "load metadata", ["directory", "data/dir"]),
    ("metadata.txt is a symlink", lambda: tar(member("metadata.txt", typeflag=b"2", linkname=b"/etc/passwd")),
     "load metadata", ["metadata.txt", "symlink"]),
    # Tar bombs and sparse members.
    ("header claims 8 GiB", lambda: tar(raw_header(b"data/bomb.bin", size=8 * 1024**3 - 1)),
     "open tar", ["data/bomb.bin", str(MAX_BODY), "max_total_bytes"]),
    ("base-256 size claims 2**60",
     lambda: tar(hostile.with_size_field(raw_header(b"data/bomb.bin"), b"\x80" + (2**60).to_bytes(11, "big"))),
     "open tar", ["data/bomb.bin", str(MAX_BODY), "max_total_bytes"]),
    ("PAX size claims 10**18",
     lambda: listed("data/bomb.bin", pax([pax_record("size", str(10**18))]), member("data/bomb.bin")),
     "open tar", ["data/bomb.bin", str(MAX_BODY), "max_total_bytes"]),
    ("header claims more than the body holds", lambda: raw_header(b"data/short.bin", size=MAX_BODY // 2) + bytes(4096),
     "open tar", ["truncated", "data/short.bin"]),
    ("GNU sparse member",
     lambda: listed("data/sparse.bin", member("data/sparse.bin", bytes(512), typeflag=b"S"), data=bytes(512)),
     "load metadata", ["sparse", "data/sparse.bin"]),
    ("PAX sparse member",
     lambda: listed("data/sparse.bin", pax([pax_record("GNU.sparse.major", "1"), pax_record("GNU.sparse.minor", "0")]),
                                         member("data/sparse.bin", bytes(512)), data=bytes(512)),
     "load metadata", ["sparse", "data/sparse.bin"]),
    # The configured limits.
    ("one member over max_members", lambda: hostile.many_members(MAX_MEMBERS),
     "open tar", [str(MAX_MEMBERS), "max_members"]),
    ("metadata.txt over max_metadata_bytes", lambda: hostile.oversized_metadata(MAX_METADATA),
     "load metadata", [str(MAX_METADATA + 1), str(MAX_METADATA), "max_metadata_bytes"]),
    # PAX and GNU tricks.
    ("PAX header over max_extended_header_bytes",
     lambda: tar(pax([pax_record("comment", "c" * (1024 * 1024))]), member("x"), metadata()),
     "open tar", ["extension header", "max_extended_header_bytes"]),
    ("GNU long names chained past the limit",
     lambda: tar(*(gnu_longname(b"n" * 300_000) for _ in range(4)), member("x"), metadata()),
     "open tar", ["extension header", "max_extended_header_bytes"]),
    ("PAX header with no member after it", lambda: tar(metadata(), pax([pax_record("path", "data/ghost.txt")])),
     "open tar", ["extension header", "not followed by a member"]),
    ("PAX global header sets a size", lambda: tar(pax([pax_record("size", "0")], typeflag=b"g"), metadata()),
     "open tar", ["global", "size"]),
    ("PAX path is not UTF-8",
     lambda: listed("data/a.txt", pax([pax_record("path", b"data/\xff\xfe.txt")]), member("x")),
     "ingest files", ["data/a.txt", "not in the bundle"]),
    ("PAX record length lies", lambda: tar(pax([b"99 path=data/a.txt\n"]), member("x"), metadata()),
     "open tar", ["PAX", "malformed"]),
    ("PAX path renames a member to metadata.txt",
     lambda: tar(metadata(), pax([pax_record("path", "metadata.txt")]), member("data/innocent.txt", b"[]")),
     "load metadata", ["metadata.txt twice"]),
    ("GNU long name makes metadata.txt a symlink",
     lambda: tar(gnu_longname(b"metadata.txt"), member("data/x", typeflag=b"2", linkname=b"/etc/passwd")),
     "load metadata", ["metadata.txt", "symlink"]),
    ("GNU long link to an absolute target",
     lambda: listed("data/l.txt", gnu_longname(b"/etc/" + b"p" * 200, typeflag=b"K"),
                                                           member("data/l.txt", typeflag=b"2", linkname=b"x")),
     "load metadata", ["symbolic link", "/etc/ppp"]),
    # Metadata values that cannot be written where they go (found by this suite: the worker crashed).
    ("mimetype with CR LF (header injection)", lambda: tar(member("data/a.txt", b"x"), metadata([
        {**entry("data/a.txt", b"x"), "mimetype": "text/plain\r\nX-Amz-Meta-Evil: 1"}])),
     "load metadata", ["mimetype", "a.txt", "Content-Type"]),
    ("mimetype not ASCII",
     lambda: tar(member("data/a.txt", b"x"), metadata([{**entry("data/a.txt", b"x"), "mimetype": "ü/ü"}])),
     "load metadata", ["mimetype", "a.txt", "Content-Type"]),
    ("lone surrogate in metadata", lambda: tar(member("metadata.txt", json.dumps(
        [*TRANSACTION, {"destinationTable": "TransactionKeyValue", "key": "k", "value": "ok\ud800"}]).encode())),
     "load metadata", ["surrogate", "\\ud800"]),
    # Deep and huge JSON.
    ("metadata nested 100,000 deep", lambda: hostile.nested_json(100_000),
     "load metadata", ["nests deeper", "max_metadata_depth"]),
    ("metadata nested 65 deep", lambda: hostile.nested_json(65),
     "load metadata", ["nests deeper than 64"]),
    ("metadata with a 5,000-digit number", lambda: tar(member("metadata.txt", b"[" + b"9" * 5000 + b"]")),
     "load metadata", ["metadata.txt", "not valid JSON"]),
    ("metadata with a number out of range",
     lambda: tar(member("metadata.txt", b'[{"destinationTable": "x", "value": 1e999}]')),
     "load metadata", ["out of range", "1e999"]),
]


def post(api: httpx.Client, body: bytes | Iterator[bytes], path: str = "/upload",
         content_type: str = "application/octet-stream") -> httpx.Response:
    response = api.post(path, content=body, headers={"Content-Type": content_type})
    assert "Traceback" not in response.text, response.text
    return response


def assert_nothing_written(s3: Minio, job_id: int) -> None:
    assert archive_keys(s3, job_id) == []


@pytest.mark.parametrize("case, make, task, words", CASES, ids=[case[0] for case in CASES])
def test_hostile_bundle_fails_at_its_step_and_writes_nothing(api: httpx.Client, s3: Minio, case: str,
                                                              make: Callable[[], bytes], task: str,
                                                              words: list[str]) -> None:
    response = post(api, make())
    assert response.status_code == 200, response.text
    final = wait_complete(api, response.json()["job_id"])
    assert (final["state"], final["task"], final["task_percent"],
            final["complete"]) == ("FAILED", task, "0.0", True), final
    for word in words:
        assert word.lower() in final["exception"].lower(), (word, final["exception"])
    assert "Traceback" not in final["exception"]
    assert_nothing_written(s3, final["job_id"])


def test_absolute_member_is_not_a_listed_relative_file(api: httpx.Client, s3: Minio) -> None:
    """`/data/a.txt` in the tar is not `data/a.txt`: the listed file is missing, upstream's `ingest files`."""
    body = tar(member("/data/a.txt", SECRET), metadata([entry("data/a.txt", SECRET)]))
    final = wait_complete(api, post(api, body).json()["job_id"])
    assert (final["state"], final["task"], final["complete"]) == ("FAILED", "ingest files", True), final
    assert "data/a.txt" in final["exception"] and "not in the bundle" in final["exception"]
    assert_nothing_written(s3, final["job_id"])


def job_count(kubectl: Callable[..., object]) -> int:
    result = kubectl("get", "ingestjobs", "-n", "ingest", "-o", "name")
    return len(result.stdout.split())  # type: ignore[attr-defined]


def test_declared_length_over_the_limit_is_413_before_any_byte(stack: Stack, kubectl: Callable[..., object]) -> None:
    before = job_count(kubectl)
    head = (f"POST /upload HTTP/1.1\nHost: ingest\nContent-Type: application/octet-stream\n"
            f"Content-Length: {MAX_BODY + 1}\n")
    status, text = hostile.raw_exchange(stack.api_url, head)  # not one byte of the body is sent
    assert status == 413, text
    assert str(MAX_BODY) in json.loads(text)["message"] and "Traceback" not in text
    assert job_count(kubectl) == before


def big_tar_stream(total: int) -> Iterator[bytes]:
    """A valid tar (one member declared just under the limit, then zero padding) `total` bytes long."""
    header = raw_header(b"data/big.bin", size=MAX_BODY - 4096)
    yield header
    block = bytes(1024 * 1024)
    sent = len(header)
    while sent < total:
        piece = block[: total - sent]
        sent += len(piece)
        yield piece


def test_chunked_body_over_the_limit_is_413_and_the_job_fails(api: httpx.Client, s3: Minio) -> None:
    response = post(api, big_tar_stream(MAX_BODY + 2 * 1024 * 1024))  # a generator: httpx sends it chunked
    assert response.status_code == 413, response.text
    message = response.json()["message"]
    assert str(MAX_BODY) in message
    job_id = int(message.split()[1])  # "job N failed: ..."
    final = wait_complete(api, job_id)
    assert (final["state"], final["task"], final["complete"]) == ("FAILED", "UPLOADING", True), final
    assert str(MAX_BODY) in final["exception"]
    assert_nothing_written(s3, job_id)
    with pytest.raises(S3Error):
        s3.stat_object("ingest-staging", f"bundles/{job_id}.tar")


def test_chunked_body_is_refused_the_moment_it_passes_the_limit(stack: Stack) -> None:
    """The 413 comes while the client is still sending: the stream is never finished here."""
    head = "POST /upload HTTP/1.1\nHost: ingest\nContent-Type: application/x-tar\nTransfer-Encoding: chunked\n"
    status, text = hostile.raw_exchange(stack.api_url, head, chunked(big_tar_stream(MAX_BODY + 1)))
    assert status == 413, text
    assert str(MAX_BODY) in json.loads(text)["message"] and "Traceback" not in text


def test_move_document_over_the_limit_is_413(api: httpx.Client) -> None:
    document = json.dumps([{"destinationTable": "TransactionKeyValue", "key": "pad", "value": "x" * MAX_METADATA}])
    response = post(api, document.encode(), "/move", "application/json")
    assert response.status_code == 413, response.text
    assert str(MAX_METADATA) in response.json()["message"]


def test_move_document_nested_deep_is_400(api: httpx.Client) -> None:
    response = post(api, b"[" * 100_000 + b"]" * 100_000, "/move", "application/json")
    assert response.status_code == 400, response.text
    assert "nests deeper" in response.json()["message"]


def test_move_document_with_a_lone_surrogate_is_400(api: httpx.Client) -> None:
    response = post(api, b'[{"destinationTable": "TransactionKeyValue", "key": "k", "value": "\\udc00"}]', "/move",
                    "application/json")
    assert response.status_code == 400, response.text
    assert "surrogate" in response.json()["message"]


def test_stalled_move_document_is_408_not_500(stack: Stack) -> None:
    """A /move client that stops sending gets the upload's answer (408 after the stall time), not a 500."""
    head = "POST /move HTTP/1.1\nHost: ingest\nContent-Type: application/json\nContent-Length: 100\n"
    status, text = hostile.raw_exchange(stack.api_url, head, [b'[{"destinationTable": '])
    assert status == 408, text
    assert "stalled" in json.loads(text)["message"] and "Traceback" not in text
