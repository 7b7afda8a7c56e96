"""POST /upload to files in the archive, through the whole local stack, as a Pacifica client sees it."""
from __future__ import annotations

import hashlib
import json
import os

import httpx
import pytest
from minio import Minio

from tests.integration.bundles import TRANSACTION, bundle, files_entry, tar_bytes
from tests.integration.helpers import archive_keys, upload, wait_complete

pytestmark = pytest.mark.stack


def test_root_answers_like_pacifica(api: httpx.Client) -> None:
    assert api.get("/").json() == {"message": "Pacifica Ingest Up and Running"}


def test_bundle_is_ingested_and_files_are_in_the_archive(api: httpx.Client, s3: Minio) -> None:
    files = {"mywork/experiment/notes.txt": b"hello\n", "mywork/raw/data.bin": bytes(range(256)) * 1000,
             "empty.txt": b"", "ünïcødé/файл.txt": b"unicode works"}
    body, metadata = bundle(files)
    accepted = upload(api, body)
    assert accepted["state"] == "OK" and accepted["task"] == "UPLOADING"
    assert set(accepted) == {"job_id", "state", "task", "task_percent", "complete", "updated", "created", "exception"}
    final = wait_complete(api, accepted["job_id"])
    assert (final["state"], final["task"], final["task_percent"],
            final["complete"]) == ("OK", "ingest metadata", "100.0", True)
    job_id = final["job_id"]
    for path, data in files.items():
        response = s3.get_object("ingest-archive", f"{job_id}/{path}")
        assert response.read() == data
        stat = s3.stat_object("ingest-archive", f"{job_id}/{path}")
        assert stat.metadata["x-amz-meta-hashsum"] == hashlib.sha1(data).hexdigest()
    document = json.loads(s3.get_object("ingest-archive", f"{job_id}.metadata.json").read())
    ids = [entry["_id"] for entry in document if entry["destinationTable"] == "Files"]
    assert len(ids) == len(set(ids)) == len(files) and all(isinstance(value, int) for value in ids)
    assert {"destinationTable": "Transactions._id", "value": job_id} in document


def test_get_state_by_path_and_errors(api: httpx.Client) -> None:
    body, _ = bundle({"a.txt": b"a"})
    job_id = upload(api, body)["job_id"]
    assert api.get(f"/get_state/{job_id}").json()["job_id"] == job_id
    missing = api.get("/get_state", params={"job_id": 987654321})
    assert missing.status_code == 404
    assert missing.json()["message"] == "job ID 987654321 does not exist."
    assert api.get("/get_state").status_code == 400
    assert api.get("/get_state", params={"job_id": "abc"}).status_code == 400
    assert api.put("/upload").status_code == 405


@pytest.mark.parametrize("case, body, task, words", [
    ("not a tar", b"this is not a tar archive at all" * 40, "open tar", ["not a tar"]),
    ("empty", b"", "open tar", ["empty"]),
    ("gzip", b"\x1f\x8b\x08\x00" + bytes(600), "open tar", ["compressed"]),
    ("no metadata", tar_bytes([("data/a.txt", b"a")]), "load metadata", ["metadata.txt"]),
    ("invalid json", tar_bytes([("metadata.txt", b"[{\"destinationTable\": ")]), "load metadata", ["JSON", "line"]),
    ("not a list", tar_bytes([("metadata.txt", b"{}")]), "load metadata", ["list"]),
    ("no destinationTable", tar_bytes([("metadata.txt", b"[{\"value\": 1}]")]), "load metadata", ["destinationTable"]),
])
def test_bad_bundles_fail_at_their_step(api: httpx.Client, s3: Minio, case: str, body: bytes, task: str,
                                        words: list[str]) -> None:
    job_id = upload(api, body)["job_id"]
    final = wait_complete(api, job_id)
    assert (final["state"], final["task"], final["complete"]) == ("FAILED", task, True), final
    for word in words:
        assert word.lower() in final["exception"].lower(), final["exception"]
    assert archive_keys(s3, job_id) == []


def test_digest_mismatch_fails_and_rolls_back(api: httpx.Client, s3: Minio) -> None:
    good = b"good bytes"
    metadata = TRANSACTION + [files_entry("a.txt", "x", good), files_entry("b.txt", "x", b"what was promised")]
    body = tar_bytes([("data/x/a.txt", good), ("data/x/b.txt", b"what was sent!!!!"),
                      ("metadata.txt", json.dumps(metadata).encode())])
    job_id = upload(api, body)["job_id"]
    final = wait_complete(api, job_id)
    assert (final["state"], final["task"]) == ("FAILED", "ingest files"), final
    assert "b.txt" in final["exception"]
    assert archive_keys(s3, job_id) == []


def entry(**override: object) -> dict:
    return {**files_entry("a.txt", "x", b"alpha"), **override}


def without(field: str) -> dict:
    item = entry()
    del item[field]
    return item


@pytest.mark.parametrize("case, metadata, members, task, words", [
    ("truncated", None, None, "open tar", ["truncated"]),
    ("missing name", [without("name")], [("data/x/a.txt", b"alpha")], "load metadata", ["name"]),
    ("missing subdir", [without("subdir")], [("data/x/a.txt", b"alpha")], "load metadata", ["subdir"]),
    ("missing hashtype", [without("hashtype")], [("data/x/a.txt", b"alpha")], "load metadata", ["hashtype"]),
    ("missing hashsum", [without("hashsum")], [("data/x/a.txt", b"alpha")], "load metadata", ["hashsum"]),
    ("missing size", [without("size")], [("data/x/a.txt", b"alpha")], "load metadata", ["size"]),
    ("unknown hashtype", [entry(hashtype="crc99")], [("data/x/a.txt", b"alpha")], "load metadata", ["crc99"]),
    ("malformed hashsum", [entry(hashsum="xyz")], [("data/x/a.txt", b"alpha")], "load metadata", ["hashsum"]),
    ("duplicate files", [entry(), entry()], [("data/x/a.txt", b"alpha")], "load metadata", ["a.txt"]),
    ("same member twice", [entry(), entry(subdir="data//x/")], [("data/x/a.txt", b"alpha")], "load metadata",
     ["data/x/a.txt"]),
    ("member missing", [entry()], [("data/x/other.txt", b"alpha")], "ingest files",
     ["data/x/a.txt", "not in the bundle"]),
    ("size mismatch", [entry(size=4)], [("data/x/a.txt", b"alpha")], "ingest files", ["5 bytes", "says 4 bytes"]),
])
def test_each_validation_case_fails_at_its_step(api: httpx.Client, s3: Minio, case: str, metadata: list | None,
                                                 members: list | None, task: str, words: list[str]) -> None:
    if case == "truncated":
        body = bundle({"a.txt": bytes(5000)})[0][:3000]
    else:
        body = tar_bytes(list(members) + [("metadata.txt", json.dumps(TRANSACTION + metadata).encode())])
    job_id = upload(api, body)["job_id"]
    final = wait_complete(api, job_id)
    assert (final["state"], final["task"], final["complete"]) == ("FAILED", task, True), (case, final)
    for word in words:
        assert word in final["exception"], (case, final["exception"])
    assert archive_keys(s3, job_id) == []


@pytest.mark.parametrize("subdir", ["data/a/b/", "data//a/b", "a/b", "/a//b/"])
def test_subdir_spellings_name_the_same_member(api: httpx.Client, s3: Minio, subdir: str) -> None:
    metadata = TRANSACTION + [files_entry("f.txt", subdir, b"same")]
    body = tar_bytes([("data/a/b/f.txt", b"same"), ("metadata.txt", json.dumps(metadata).encode())])
    final = wait_complete(api, upload(api, body)["job_id"])
    if subdir.startswith("/"):
        assert (final["state"], final["task"]) == ("FAILED", "load metadata"), final  # absolute: refused
        return
    assert final["state"] == "OK", final
    assert s3.get_object("ingest-archive", f"{final['job_id']}/a/b/f.txt").read() == b"same"


def test_small_files_read_together_and_large_files_alone_all_arrive_intact(api: httpx.Client, s3: Minio) -> None:
    """Neighbouring small members share one ranged read; unlisted and large members break the run."""
    small = {f"s/{index:04}.bin": os.urandom(index * 37 % 5000) for index in range(600)}
    large = {"l/big.bin": os.urandom(3 * 1024 * 1024 + 17)}
    listed = {**dict(list(small.items())[:300]), **large, **dict(list(small.items())[300:])}
    metadata = TRANSACTION + [files_entry(path.rpartition("/")[2], path.rpartition("/")[0], data) for path,
                              data in listed.items()]
    members = [(f"data/{path}", data) for path, data in list(listed.items())[:150]]
    members.append(("data/unlisted/filler.bin", os.urandom(2 * 1024 * 1024)))  # a gap in the run
    members += [(f"data/{path}", data) for path, data in list(listed.items())[150:]]
    members.append(("metadata.txt", json.dumps(metadata).encode()))
    final = wait_complete(api, upload(api, tar_bytes(members))["job_id"])
    assert final["state"] == "OK", final
    for path, data in listed.items():
        assert s3.get_object("ingest-archive", f"{final['job_id']}/{path}").read() == data, path


def test_a_large_file_with_a_wrong_sha1_is_refused_before_anything_is_copied(api: httpx.Client, s3: Minio) -> None:
    """Large sha1 members are hashed by the API while staging and copied server-side; a wrong sum
    is caught from that hash, at ingest files, and nothing reaches the archive."""
    good, bad = os.urandom(2 * 1024 * 1024), os.urandom(3 * 1024 * 1024)
    metadata = TRANSACTION + [files_entry("good.bin", "l", good),
                              files_entry("bad.bin", "l", bad, hashsum=hashlib.sha1(b"x").hexdigest())]
    body = tar_bytes([("data/l/good.bin", good), ("data/l/bad.bin", bad),
                      ("metadata.txt", json.dumps(metadata).encode())])
    final = wait_complete(api, upload(api, body)["job_id"])
    assert (final["state"], final["task"]) == ("FAILED", "ingest files"), final
    assert "data/l/bad.bin: sha1 mismatch" in final["exception"] and hashlib.sha1(bad).hexdigest() in final["exception"]
    assert archive_keys(s3, final["job_id"]) == []
