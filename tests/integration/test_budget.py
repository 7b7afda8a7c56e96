"""The replica's memory budget: requests that do not fit get 503 + Retry-After, never an OOM.

An API replica with a 64 MiB budget (56 MiB for large reservations). Clients that send their
headers and then hold the body open keep their reservations (what a slow client on a real network
does), so the test can fill the budget exactly and watch `ingest_api_memory_budget_used_bytes`.
"""
from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from ingest.api.budget import MOVE_DOCUMENT_COST
from ingest.kube import JobStore
from ingest.local.launcher import Stack
from tests.integration.bundles import TRANSACTION, bundle, files_entry
from tests.integration.helpers import wait_complete, wait_for
from tests.integration.replica import api_replica

pytestmark = pytest.mark.stack
MiB = 1024 * 1024
BUDGET = 64 * MiB


@pytest.fixture(scope="module")
def replica(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"INGEST_API_MEMORY_BUDGET_BYTES": str(BUDGET), "INGEST_MAX_METADATA_BYTES": str(16 * MiB)}
    with api_replica(stack, tmp_path_factory.mktemp("budget"), env) as url:
        yield url


def used(url: str) -> int:
    text = httpx.get(f"{url}/metrics").text
    return int(float(re.search(r"^ingest_api_memory_budget_used_bytes (\S+)$", text, re.M).group(1)))


class Held:
    """A request whose headers and first bytes were sent; the rest never comes until `close`."""

    def __init__(self, url: str, path: str, content_type: str, length: int, first: bytes) -> None:
        where = urlsplit(url)
        self.socket = socket.create_connection((where.hostname, where.port))
        head = (f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {length}\r\n\r\n").encode()
        self.socket.sendall(head + first)

    def close(self) -> None:
        self.socket.close()


def move_document(size: int) -> bytes:
    """A valid move document padded to about `size` bytes."""
    document = TRANSACTION + [files_entry("a.txt", "budget", b"a", source="/nowhere/a.txt")]
    text = json.dumps(document)
    return (text[:-1] + ", " + " " * max(0, size - len(text) - 3) + "]").encode()


def test_move_documents_past_the_budget_get_503_and_make_no_job(replica: str, job_store: JobStore) -> None:
    size = 4 * MiB  # each reserves 24 MiB: two fit in 56, the third does not
    held = []
    try:
        for count in (1, 2):
            held.append(Held(replica, "/move", "application/json", size, b"["))
            wait_for(lambda count=count: used(replica) >= count * size * MOVE_DOCUMENT_COST, timeout=30,
                     what=f"{count} reservations")
        before = {job["metadata"]["name"] for job in job_store.list()}
        response = httpx.post(f"{replica}/move", content=move_document(size),
                              headers={"Content-Type": "application/json"}, timeout=60)
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"].isdigit() and "busy" in response.json()["message"]
        assert {job["metadata"]["name"] for job in job_store.list()} == before, "no job for a request refused as busy"
        small = httpx.post(f"{replica}/move", content=move_document(10_000),
                           headers={"Content-Type": "application/json"}, timeout=60)
        assert small.status_code in (200, 400) and "busy" not in small.text, small.text  # small requests still fit
    finally:
        for request in held:
            request.close()
    wait_for(lambda: used(replica) == 0, timeout=30, what="the reservations to be returned")
    response = httpx.post(f"{replica}/move", content=move_document(size), headers={"Content-Type": "application/json"},
                          timeout=120)
    assert response.status_code in (200, 400) and "busy" not in response.text, response.text


def test_a_move_document_the_budget_can_never_parse_is_413(replica: str) -> None:
    size = 12 * MiB  # under INGEST_MAX_METADATA_BYTES, but 72 MiB to parse: more than the replica's budget
    response = httpx.post(f"{replica}/move", content=move_document(size), headers={"Content-Type": "application/json"},
                          timeout=60)
    assert response.status_code == 413 and "INGEST_API_MEMORY_BUDGET_BYTES" in response.json()["message"], response.text


def test_small_uploads_complete_while_large_ones_are_refused(replica: str, job_store: JobStore) -> None:
    large = 20 * MiB  # staging buffers: 9 MiB of pipe + three 8 MiB parts = 33 MiB: one fits, two do not
    def names() -> set[str]:
        return {job["metadata"]["name"] for job in job_store.list()}

    earlier = names()
    held = Held(replica, "/upload", "application/octet-stream", large, b"\0" * 512)
    try:
        wait_for(lambda: used(replica) >= 33 * MiB, timeout=30, what="the held upload's reservation")
        # The held upload reserves its buffers before it creates its job: wait for that job too.
        wait_for(lambda: len(names() - earlier) == 1, timeout=30, what="the held upload's job")
        before = names()
        body, _ = bundle({"big/a.bin": b"\0" * (large - 10 * 1024)})
        refused = httpx.post(f"{replica}/upload", content=body, timeout=60)
        assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit(), refused.text
        assert names() == before
        small, _ = bundle({"small/a.txt": b"small upload"})
        with httpx.Client(base_url=replica, timeout=60) as client:
            accepted = client.post("/upload", content=small)
            assert accepted.status_code == 200, accepted.text
            assert wait_complete(client, accepted.json()["job_id"])["state"] == "OK"
    finally:
        held.close()
    wait_for(lambda: used(replica) == 0, timeout=30, what="the held upload's reservation to be returned")


def test_metadata_that_does_not_fit_now_fails_the_upload_with_503(replica: str) -> None:
    """Two move documents hold 18 MiB, the upload's staging buffers fit (33 MiB), its metadata.txt (10 MiB) does not."""
    size = 3 * MiB // 2
    held = [Held(replica, "/move", "application/json", size, b"[") for _ in range(2)]
    try:
        wait_for(lambda: used(replica) >= 2 * size * MOVE_DOCUMENT_COST, timeout=30,
                 what="the move documents' reservations")
        metadata = json.dumps(TRANSACTION + [{"destinationTable": "TransactionKeyValue", "key": "pad",
                                              "value": "x" * (10 * MiB)}]).encode()
        body, _ = bundle({"meta/a.txt": b"a"}, metadata=metadata, metadata_last=False)
        with httpx.Client(base_url=replica, timeout=60) as client:
            response = client.post("/upload", content=body)
            assert response.status_code == 503 and response.headers["Retry-After"].isdigit(), response.text
            job_id = int(re.search(r"job (\d+) failed", response.json()["message"]).group(1))
            final = wait_complete(client, job_id)
        assert (final["state"], final["task"]) == ("FAILED", "UPLOADING") and "busy" in final["exception"], final
    finally:
        for request in held:
            request.close()
    wait_for(lambda: used(replica) == 0, timeout=30, what="every reservation to be returned")
