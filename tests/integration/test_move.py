"""POST /move: files already on reachable storage, verified, copied, sources removed only on success."""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio import Minio

from ingest.kube import JobStore
from tests.integration.bundles import TRANSACTION, files_entry
from tests.integration.conftest import SHARED_BUCKET
from tests.integration.helpers import archive_keys, wait_complete, wait_for

pytestmark = pytest.mark.stack


def post_move(api: httpx.Client, document: Any) -> httpx.Response:
    return api.post("/move", content=json.dumps(document), headers={"Content-Type": "application/json"})


def place(folder: Path, files: dict[str, bytes]) -> list[dict[str, Any]]:
    """Write files under `folder` and return their Files entries with `source`."""
    entries = []
    for relative, data in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        subdir, _, name = relative.rpartition("/")
        entries.append(files_entry(name, subdir, data, source=str(path)))
    return entries


def test_move_of_three_files_completes_and_removes_sources(api: httpx.Client, s3: Minio, move_root: Path,
                                                           tmp_path: Path) -> None:
    folder = move_root / tmp_path.name
    files = {"run/a.txt": b"alpha", "run/b.txt": b"beta" * 1000, "c.bin": os.urandom(70000)}
    response = post_move(api, TRANSACTION + place(folder, files))
    assert response.status_code == 200, response.text
    final = wait_complete(api, response.json()["job_id"])
    assert (final["state"], final["task"], final["task_percent"],
            final["complete"]) == ("OK", "ingest metadata", "100.0", True)
    job_id = final["job_id"]
    for relative, data in files.items():
        assert s3.get_object("ingest-archive", f"{job_id}/{relative}").read() == data
    # Sources go only after the success is recorded (a crash in between keeps them, never loses them).
    wait_for(lambda: not any((folder / relative).exists() for relative in files), timeout=30,
             what="the moved sources to be removed")


@pytest.mark.parametrize("case",
                         ["no source", "absent", "symlink out", "symlinked folder", "a folder", "digest", "size"])
def test_move_failures_leave_sources_and_archive_untouched(api: httpx.Client, s3: Minio, move_root: Path,
                                                           tmp_path: Path, case: str) -> None:
    folder = move_root / f"{tmp_path.name}-{case.replace(' ', '-')}"
    entries = place(folder, {"good.txt": b"good", "bad.txt": b"bad file"})
    bad = entries[1]
    refused = (f"source {str(folder / 'x')!r} cannot be moved: it does not exist, "
               "or it is not a file this service may read for you")
    words = {"no source": "source", "absent": refused, "symlink out": refused, "symlinked folder": refused,
             "a folder": refused,
             "digest": "mismatch", "size": "size mismatch"}[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_bytes(b"bad file")
    if case == "no source":
        del bad["source"]
    elif case == "absent":
        bad["source"] = str(folder / "x")
    elif case == "symlink out":
        (folder / "x").symlink_to(outside / "x")
        bad["source"] = str(folder / "x")
    elif case == "symlinked folder":  # a link in the middle of the path is not followed either
        (folder / "link").symlink_to(outside)
        bad["source"] = str(folder / "link" / "x")
        words = words.replace(str(folder / "x"), str(folder / "link" / "x"))
    elif case == "a folder":
        (folder / "x").mkdir()
        bad["source"] = str(folder / "x")
    elif case == "digest":
        bad["hashsum"] = hashlib.sha1(b"something else").hexdigest()
    elif case == "size":
        bad["size"] = 3
    response = post_move(api, TRANSACTION + entries)
    assert response.status_code == 200, response.text
    final = wait_complete(api, response.json()["job_id"])
    assert (final["state"], final["task"], final["complete"]) == ("FAILED", "move files", True), final
    assert words in final["exception"], final["exception"]
    assert archive_keys(s3, final["job_id"]) == []
    assert (folder / "good.txt").read_bytes() == b"good", "a failed move must leave its sources"
    assert (folder / "bad.txt").read_bytes() == b"bad file"
    assert (outside / "x").read_bytes() == b"bad file"


@pytest.mark.parametrize("source", [
    "/etc/passwd", "relative/path.txt", "{root}/../escape.txt", "{root}/./a.txt", "{root}//a.txt",
    "s3://ingest-staging/1/bundle.tar", "s3://ingest-archive/1/a.txt", "s3://ingest-shared/elsewhere/a.txt",
    "s3://ingest-shared/shared/../elsewhere/a.txt", "s3://other-bucket/shared/a.txt",
])
def test_sources_outside_the_scope_are_400_without_a_job(api: httpx.Client, job_store: JobStore, move_root: Path,
                                                         source: str) -> None:
    before = {job["metadata"]["name"] for job in job_store.list()}
    entry = files_entry("a.txt", "scoped", b"data", source=source.replace("{root}", str(move_root)))
    response = post_move(api, TRANSACTION + [entry])
    assert response.status_code == 400, response.text
    assert response.json()["message"].endswith(
        "cannot be moved: it does not exist, or it is not a file this service may read for you"
    )
    assert {job["metadata"]["name"] for job in job_store.list()} == before


@pytest.mark.parametrize("body, content_type, status", [
    ("{}", "application/json", 400),
    ('["x"]', "application/json", 400),
    ("[1]", "application/json", 400),
    ('[{"value": 1}]', "application/json", 400),
    ("[{", "application/json", 400),
    ("[]", "text/plain", 415),
])
def test_bad_move_documents_are_refused_without_a_job(api: httpx.Client, job_store: JobStore, body: str,
                                                      content_type: str, status: int) -> None:
    before = {job["metadata"]["name"] for job in job_store.list()}
    response = api.post("/move", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert set(response.json()) == {"status", "message"} and response.json()["message"]
    assert {job["metadata"]["name"] for job in job_store.list()} == before, (
        "no job may be created for a refused document"
    )


def test_s3_source_is_copied_server_side(api: httpx.Client, s3: Minio) -> None:
    data = os.urandom(300000)
    if not s3.bucket_exists(SHARED_BUCKET):
        s3.make_bucket(SHARED_BUCKET)
    s3.put_object(SHARED_BUCKET, "shared/sample.bin", io.BytesIO(data), len(data))
    entry = files_entry("sample.bin", "from-s3", data, source=f"s3://{SHARED_BUCKET}/shared/sample.bin")
    response = post_move(api, TRANSACTION + [entry])
    final = wait_complete(api, response.json()["job_id"])
    assert final["state"] == "OK", final
    assert s3.get_object("ingest-archive", f"{final['job_id']}/from-s3/sample.bin").read() == data
    assert s3.stat_object(SHARED_BUCKET, "shared/sample.bin").size == len(data), "s3 sources are kept by default"


def test_hundred_file_move(api: httpx.Client, s3: Minio, move_root: Path, tmp_path: Path) -> None:
    folder = move_root / f"{tmp_path.name}-100"
    files = {f"many/f{index:03}.txt": f"file {index}".encode() for index in range(100)}
    response = post_move(api, TRANSACTION + place(folder, files))
    final = wait_complete(api, response.json()["job_id"])
    assert final["state"] == "OK", final
    print(f"100-file move: created {final['created']}, completed {final['updated']}")
    assert len(archive_keys(s3, final["job_id"])) == 101  # 100 files and the metadata document
