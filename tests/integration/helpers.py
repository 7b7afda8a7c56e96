"""What integration tests do again and again: upload, wait, look into the archive."""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
from minio import Minio

from tests.integration.bundles import bundle


def wait_complete(api: httpx.Client, job_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        document = api.get("/get_state", params={"job_id": job_id}).json()
        if document.get("complete"):
            return document
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} not complete after {timeout} s: {document}")
        time.sleep(0.2)


def metadata_key(job_id: int) -> str:
    """Where a job's metadata document is (INGEST_METADATA_KEY_TEMPLATE's default): beside its folder."""
    return f"{job_id}.metadata.json"


def archive_keys(s3: Minio, job_id: int) -> list[str]:
    """Everything a job has in the archive: its files and its metadata document."""
    keys = [item.object_name for item in s3.list_objects("ingest-archive", prefix=f"{job_id}/", recursive=True)]
    return keys + [item.object_name for item in s3.list_objects("ingest-archive", prefix=metadata_key(job_id))
                   if item.object_name == metadata_key(job_id)]


def upload(api: httpx.Client, body: bytes) -> dict[str, Any]:
    response = api.post("/upload", content=body, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    return response.json()


def big_bundle(megabytes: int = 24) -> bytes:
    files = {f"big/part{index}.bin": os.urandom(1024 * 1024) for index in range(megabytes)}
    return bundle(files)[0]


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def worker_pids(job_id: int) -> list[int]:
    output = subprocess.run(["pgrep", "-f", "ingest.worker"], capture_output=True, text=True).stdout.split()
    pids = []
    for pid in map(int, output):
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"INGEST_JOB_NAME=ingest-{job_id}".encode() in environ:
            pids.append(pid)
    return pids
