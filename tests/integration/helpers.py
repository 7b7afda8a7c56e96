"""What integration tests do again and again: upload, wait, look into the archive."""
from __future__ import annotations

import time
from typing import Any

import httpx
from minio import Minio


def wait_complete(api: httpx.Client, job_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        document = api.get("/get_state", params={"job_id": job_id}).json()
        if document.get("complete"):
            return document
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} not complete after {timeout} s: {document}")
        time.sleep(0.2)


def archive_keys(s3: Minio, job_id: int) -> list[str]:
    return [item.object_name for item in s3.list_objects("ingest-archive", prefix=f"{job_id}/", recursive=True)]


def upload(api: httpx.Client, body: bytes) -> dict[str, Any]:
    response = api.post("/upload", content=body, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    return response.json()
