"""Real-world bundles through the whole local stack, as the scientist who sends them sees the result.

One test per numbered item of issue 14 ("Real-world bundles"), a handful of the producer corpus
(tests/bundle/corpus.py), and the archive-key safety of issue 12 item 4. Every test asserts what a
user sees: the job OK with every byte in the archive, or FAILED at the right step with a message
naming each file, and nothing archived.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import urllib3
from minio import Minio

from ingest.config import Settings
from ingest.local.launcher import Stack
from ingest.storage import ObjectExists, Storage
from tests.bundle.corpus import Case, case
from tests.integration.bundles import TRANSACTION, files_entry
from tests.integration.helpers import archive_keys, metadata_key, upload, wait_complete

pytestmark = pytest.mark.stack
BIN = Path(sys.executable).parent
README = Path(__file__).resolve().parents[2] / "README.md"


def tar_of(members: list[tuple[str, bytes]], *, fmt: int = tarfile.PAX_FORMAT, encoding: str = "utf-8") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt, encoding=encoding) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def metadata(*entries: dict[str, Any]) -> bytes:
    return json.dumps(TRANSACTION + list(entries)).encode()


def ingest(api: httpx.Client, body: bytes) -> dict[str, Any]:
    return wait_complete(api, upload(api, body)["job_id"], timeout=120)


def assert_archived(s3: Minio, final: dict[str, Any], files: dict[str, bytes]) -> None:
    """OK, and every listed file's bytes in the archive under `<job_id>/<path without data/>`."""
    assert (final["state"], final["task"], final["task_percent"], final["complete"]) == (
        "OK", "ingest metadata", "100.0", True), final
    job_id = final["job_id"]
    for path, data in files.items():
        key = f"{job_id}/{path.removeprefix('data/')}"
        assert s3.get_object("ingest-archive", key).read() == data, key
    keys = archive_keys(s3, job_id)
    assert sorted(keys) == sorted([f"{job_id}/{path.removeprefix('data/')}" for path in files] + [metadata_key(job_id)])


def assert_failed(s3: Minio, final: dict[str, Any], task: str, words: list[str] | tuple[str, ...]) -> None:
    """FAILED at `task`, the message says each of `words`, and nothing of the job is archived."""
    assert (final["state"], final["task"], final["complete"]) == ("FAILED", task, True), final
    for word in words:
        assert word in final["exception"], (word, final["exception"])
    assert archive_keys(s3, final["job_id"]) == []


# -- issue 14, item by item -----------------------------------------------------------------------

def test_1_pacifica_cli_relative_subdir_ingests(api: httpx.Client, s3: Minio) -> None:
    corpus = case("pacifica-cli-dot-subdir")
    assert_archived(s3, ingest(api, corpus.tar), corpus.files)


def test_2_a_data_file_named_metadata_json_is_the_users_and_the_document_is_ours(api: httpx.Client, s3: Minio) -> None:
    corpus = case("data-file-named-metadata-json")
    final = ingest(api, corpus.tar)
    assert_archived(s3, final, corpus.files)
    job_id = final["job_id"]
    assert s3.get_object("ingest-archive", f"{job_id}/metadata.json").read() == corpus.files["data/metadata.json"]
    document = json.loads(s3.get_object("ingest-archive", metadata_key(job_id)).read())
    assert {"destinationTable": "Transactions._id", "value": job_id} in document


def test_3_unlisted_members_the_service_cannot_read_are_ignored(api: httpx.Client, s3: Minio) -> None:
    corpus = case("gnu-latin1-unlisted")
    assert b"caf\xe9-notes.txt" in corpus.tar  # a Latin-1 name, written by GNU tar in a Latin-1 locale
    assert_archived(s3, ingest(api, corpus.tar), corpus.files)


def test_4_an_empty_file_before_a_large_one_is_ingested_without_unbounded_reads(
        api: httpx.Client, s3: Minio, stack: Stack) -> None:
    corpus = case("empty-before-large")
    assert_archived(s3, ingest(api, corpus.tar), corpus.files)
    # What the worker relies on, against the real S3 server: a read of 0 bytes makes no request
    # at all (the SDK would ask for `bytes=<offset>-`, the rest of the object), and no read is open-ended.
    counted: list[str] = []

    class Counting(urllib3.PoolManager):
        def urlopen(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            counted.append(f"{method} {(kwargs.get('headers') or {}).get('Range', '')}")
            return super().urlopen(method, url, *args, **kwargs)

    settings = Settings.from_env(stack.settings_env())
    storage = Storage(settings, Minio(settings.s3_endpoint, access_key=settings.s3_access_key,
                                      secret_key=settings.s3_secret_key, secure=False, region="us-east-1",
                                      http_client=Counting()))
    storage.put_bytes(settings.staging_bucket, "tests/ranges.bin", bytes(range(256)) * 40)
    counted.clear()
    assert storage.get_range(settings.staging_bucket, "tests/ranges.bin", 1000, 0) == b""
    assert storage.open_range(settings.staging_bucket, "tests/ranges.bin", 1000, 0).read() == b""
    assert counted == []
    expected = bytes([1000 % 256, 1001 % 256, 1002 % 256])
    assert storage.get_range(settings.staging_bucket, "tests/ranges.bin", 1000, 3) == expected
    assert counted == ["GET bytes=1000-1002"]
    with pytest.raises(ValueError):
        storage.get_range(settings.staging_bucket, "tests/ranges.bin", 1000, -1)
    storage.remove(settings.staging_bucket, ["tests/ranges.bin"])


def readme_move_example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- move-example -->\n```sh\n(.*?)```", text, re.S)
    assert match, "the README's /move example is marked <!-- move-example -->"
    return match.group(1)


def test_5_the_readme_move_example_works_verbatim_against_the_local_stack(
        api: httpx.Client, s3: Minio, stack: Stack, move_root: Path, tmp_path: Path) -> None:
    # `make run`'s stack takes /move sources from .local/move/ by default (tests/local/test_launcher.py);
    # this session's stack (its folder is a `.local` too) lists that folder first, beside per-user roots.
    assert move_root == stack.directory / "move"
    if stack.directory.name == ".local":
        where = stack.directory.parent
    else:  # INGEST_TEST_STACK_DIR named it otherwise
        where = tmp_path
        (where / ".local").mkdir()
        (where / ".local" / "move").symlink_to(move_root)
    script = readme_move_example().replace("http://127.0.0.1:8066", stack.api_url)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=where, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    accepted = json.loads(result.stdout.strip().splitlines()[-1])
    final = wait_complete(api, accepted["job_id"])
    assert (final["state"], final["task"], final["complete"]) == ("OK", "ingest metadata", True), final
    assert s3.get_object("ingest-archive", f"{final['job_id']}/run1/a.txt").read() == b"hello"
    assert not (move_root / "run1" / "a.txt").exists()  # moved: the source goes once the job succeeded


@pytest.mark.parametrize("label, entry, task, words", [
    ("malformed hashsum", {"hashsum": "not-a-digest"}, "load metadata", ["data/x/a.txt", "malformed sha1 hashsum"]),
    ("unknown hashtype", {"hashtype": "crc32"}, "load metadata", ["data/x/a.txt", "unknown hashtype 'crc32'"]),
])
def test_6_hash_problems_fail_at_load_metadata(api: httpx.Client, s3: Minio, label: str, entry: dict, task: str,
                                                words: list[str]) -> None:
    document = metadata({**files_entry("a.txt", "x", b"alpha"), **entry})
    body = tar_of([("data/x/a.txt", b"alpha"), ("metadata.txt", document)])
    assert_failed(s3, ingest(api, body), task, words)


def test_6_a_tar_of_only_zero_blocks_fails_at_load_metadata(api: httpx.Client, s3: Minio) -> None:
    corpus = case("empty-archive")
    assert_failed(s3, ingest(api, corpus.tar), "load metadata", ["metadata.txt not found"])


def test_6_an_absolute_member_is_named_when_a_files_entry_expected_it(api: httpx.Client, s3: Minio) -> None:
    corpus = case("gnu-absolute-names")
    assert_failed(s3, ingest(api, corpus.tar), "ingest files",
                  ["data/run/scan.dat", "'/data/run/scan.dat'", "absolute name"])


def test_7_every_bad_file_is_reported_and_nothing_is_kept(
        api: httpx.Client, s3: Minio, stack: Stack, kubectl: Callable[..., Any]) -> None:
    files = {f"run/{index:03}.dat": hashlib.sha256(str(index).encode()).digest() * (index + 1) for index in range(120)}
    entries = [files_entry(path.rpartition("/")[2], "run", data) for path, data in files.items()]
    sent = dict(files)
    sent["run/000.dat"] = bytes(len(files["run/000.dat"]))  # a digest mismatch, the very first file
    sent["run/059.dat"] = sent["run/059.dat"][::-1]       # another in the middle, same size
    del sent["run/119.dat"]                               # and the last one missing from the tar
    body = tar_of([(f"data/{path}", data) for path, data in sent.items()] + [("metadata.txt", metadata(*entries))])
    final = ingest(api, body)
    lines = final["exception"].split("\n")
    assert (final["state"], final["task"]) == ("FAILED", "ingest files"), final
    assert lines[0] == "3 of 120 files failed verification:", lines
    assert sorted(line.split(":")[0].split(" ")[0] for line in lines[1:]) == [
        "data/run/000.dat", "data/run/059.dat", "data/run/119.dat"], lines
    assert archive_keys(s3, final["job_id"]) == []
    # The same list, structured, on the resource: kubectl describe and IngestCMD get show it.
    name = f"ingest-{final['job_id']}"
    described = kubectl("describe", "ingestjob", name).stdout
    for reason in ("digest-mismatch", "missing-member"):
        assert reason in described, described
    assert "data/run/059.dat" in described and "data/run/119.dat" in described
    env = dict(os.environ, KUBECONFIG=str(stack.kubeconfig()), INGEST_NAMESPACE=stack.namespace)
    got = subprocess.run([str(BIN / "IngestCMD"), "get", "--job-id", str(final["job_id"])], env=env,
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    problems = json.loads(got.stdout)["problems"]
    assert {(problem["file"], problem["reason"]) for problem in problems} == {
        ("data/run/000.dat", "digest-mismatch"), ("data/run/059.dat", "digest-mismatch"),
        ("data/run/119.dat", "missing-member")}


def test_7_every_bad_files_entry_is_reported_at_load_metadata(api: httpx.Client, s3: Minio) -> None:
    good = files_entry("ok.txt", "x", b"ok")
    bad = [{**files_entry("a.txt", "x", b"a"), "hashtype": "crc32"}, {**files_entry("b.txt", "../x", b"b")},
           {**files_entry("c.txt", "x", b"c"), "hashsum": "abc"}]
    body = tar_of([("data/x/ok.txt", b"ok"), ("metadata.txt", metadata(good, *bad))])
    final = ingest(api, body)
    assert_failed(s3, final, "load metadata", ["3 of 4 files in metadata.txt are refused:", "data/x/a.txt", "crc32",
                                               "'..'", "data/x/c.txt"])
    assert len(final["exception"].split("\n")) == 4


# -- the corpus: a representative handful of producers --------------------------------------------

@pytest.mark.parametrize("name", [
    "macos-bsdtar-appledouble", "gnu-longlink", "gnu-base256", "gnu-sparse-unlisted",
    "pax-fractional-negative-times", "windows-tar-exe-ansi", "gnu-latin1-listed", "gnu-sparse-listed",
    "windows-backslash-separators", "gnu-concatenated",
])
def test_corpus_bundles_through_the_stack(api: httpx.Client, s3: Minio, name: str) -> None:
    corpus: Case = case(name)
    final = ingest(api, corpus.tar)
    if corpus.ingests:
        assert_archived(s3, final, corpus.files)
    else:
        assert_failed(s3, final, corpus.task or "", corpus.words)


# -- issue 12 item 4: archive keys are safe --------------------------------------------------------

def next_job_ids(api: httpx.Client, at_least: int) -> None:
    """Use up job ids until the service hands out ids of at least `at_least` (a long-lived service)."""
    for _ in range(50):
        if upload(api, b"")["job_id"] >= at_least - 1:
            return
    raise AssertionError("job ids did not grow")


def test_a_key_over_s3s_limit_fails_at_load_metadata(api: httpx.Client, s3: Minio, kubectl: Callable[..., Any]) -> None:
    # A path of 1,024 bytes passes the name limit; with a 6-digit job id its key is 1,026 bytes.
    counter = json.loads(kubectl("get", "configmap", "ingest-ids", "-o", "json").stdout)
    if int(counter["data"]["job-ids"]) < 100_000:
        kubectl("patch", "configmap", "ingest-ids", "--type=merge", "-p", json.dumps({"data": {"job-ids": "100000"}}))
    next_job_ids(api, 100_000)
    subdir = "/".join(["s" * 250] * 3) + "/" + "t" * 50
    name = "n" * (1024 - len("data/") - len(subdir) - 1)
    body = tar_of([(f"data/{subdir}/{name}", b"x"), ("metadata.txt", metadata(files_entry(name, subdir, b"x")))])
    final = ingest(api, body)
    assert final["job_id"] >= 100_000
    assert_failed(s3, final, "load metadata", [f"data/{subdir[:30]}", "1026 bytes", "limit of 1024 bytes"])


def test_a_file_and_a_folder_of_the_same_name_are_refused_naming_both(api: httpx.Client, s3: Minio) -> None:
    body = tar_of([("data/x", b"file"), ("data/x/y", b"below"),
                   ("metadata.txt", metadata(files_entry("x", "", b"file"), files_entry("y", "x", b"below")))])
    assert_failed(s3, ingest(api, body), "load metadata", ["data/x and data/x/y cannot both be stored"])


def test_an_existing_archive_object_is_never_overwritten(api: httpx.Client, s3: Minio, stack: Stack) -> None:
    # As after a reset id counter or a second installation on the same buckets: the keys the next
    # job will get already hold someone else's files.
    probe = upload(api, b"")["job_id"]
    planted = {f"{job_id}/x/a.txt" for job_id in range(probe + 1, probe + 8)}
    for key in planted:
        s3.put_object("ingest-archive", key, io.BytesIO(b"older job's file"), 16)
    try:
        final = ingest(api, tar_of([("data/x/a.txt", b"new bytes"), ("data/x/b.txt", b"b"),
                                    ("metadata.txt", metadata(files_entry("a.txt", "x", b"new bytes"),
                                                              files_entry("b.txt", "x", b"b")))]))
        key = f"{final['job_id']}/x/a.txt"
        assert key in planted
        assert (final["state"], final["task"]) == ("FAILED", "ingest files"), final
        assert "data/x/a.txt" in final["exception"] and "already holds an object" in final["exception"]
        assert s3.get_object("ingest-archive", key).read() == b"older job's file"  # untouched, not rolled back
        assert archive_keys(s3, final["job_id"]) == [key]  # nothing of the job was written
        # Between that check and the write, a conditional create guards the key where the store
        # honours If-None-Match (the service probes it; measured here: Ceph RGW 16.2 does, on PUT).
        storage = Storage(Settings.from_env(stack.settings_env()))
        assert storage.conditional_create() is True
        with pytest.raises(ObjectExists):
            storage.put_stream("ingest-archive", key, io.BytesIO(b"racing"), length=6, if_absent=True)
        assert s3.get_object("ingest-archive", key).read() == b"older job's file"
    finally:
        for key in planted:
            s3.remove_object("ingest-archive", key)
