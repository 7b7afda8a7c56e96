"""Resumable uploads (tus 1.0.0) end to end: the real tuspy client, cut connections, a second API replica.

The module runs its own stack: the shared one caps bodies at 32 MiB, and these tests need a
300 MiB bundle and a short INGEST_UPLOAD_EXPIRY_SECONDS.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from minio import Minio
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed

from ingest import jobs, resumable
from ingest.kube import JobStore, api_client
from ingest.local.launcher import Stack, parse_ports
from tests.integration.bundles import bundle
from tests.integration.conftest import TEST_SETTINGS
from tests.integration.helpers import wait_complete, wait_for
from tests.integration.tus_helpers import (
    TUS,
    ApiReplica,
    CuttingProxy,
    bundle_file,
    checksum,
    create,
    offset_of,
    parts_gone,
    patch,
)

pytestmark = pytest.mark.stack
MiB = 1024 * 1024
EXPIRY = 8


@pytest.fixture(scope="module")
def tus_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {**TEST_SETTINGS, "INGEST_MAX_BODY_BYTES": str(1024 * MiB), "INGEST_UPLOAD_EXPIRY_SECONDS": str(EXPIRY),
           "INGEST_WORKER_DEADLINE_SECONDS": "900"}
    local = Stack(tmp_path_factory.mktemp("tus-stack"), ports=parse_ports("auto"), env=env)
    try:
        local.up()
        yield local
    finally:
        local.down()


@pytest.fixture(scope="module")
def api(tus_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tus_stack.api_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def s3(tus_stack: Stack) -> Minio:
    config = tus_stack.s3()
    return Minio(config["endpoint"], access_key=config["access_key"], secret_key=config["secret_key"],
                 secure=config["secure"], region="us-east-1")


@pytest.fixture(scope="module")
def store(tus_stack: Stack) -> JobStore:
    return JobStore(api_client(config_file=str(tus_stack.kubeconfig())), tus_stack.namespace)


def small_bundle(megabytes: int = 3) -> bytes:
    return bundle({f"a/f{index}.bin": os.urandom(MiB) for index in range(megabytes)})[0]


def test_options_advertises_the_protocol(api: httpx.Client) -> None:
    response = api.options("/uploads/")
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) >= {
        "creation", "creation-with-upload", "termination", "expiration", "checksum"}
    assert response.headers["Tus-Max-Size"] == str(1024 * MiB)
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256"}
    asking = {"Origin": "http://example.test", "Access-Control-Request-Method": "PATCH"}
    preflight = api.options("/uploads/", headers=asking)
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Upload-Offset" in preflight.headers["Access-Control-Expose-Headers"]


def test_an_upload_is_a_job_from_its_creation(api: httpx.Client, s3: Minio) -> None:
    body = small_bundle(12)
    created = create(api, len(body), Origin="http://example.test")
    assert created.status_code == 201, created.text
    job_id = int(created.headers["Ingest-Job-Id"])
    assert created.json()["job_id"] == job_id and created.json()["task"] == "UPLOADING"
    assert created.headers["Upload-Expires"].endswith("GMT")
    assert "Ingest-Job-Id" in created.headers["Access-Control-Expose-Headers"]
    url = created.headers["Location"]
    assert api.get(f"/get_state/{job_id}").json()["state"] == "OK"

    assert create(api, 10, **{"Tus-Resumable": "0.2.2"}).status_code == 412
    json_body = {**TUS, "Upload-Offset": "0", "Content-Type": "application/json"}
    assert api.patch(url, content=b"x", headers=json_body).status_code == 415
    assert patch(api, url, 5, body[:10]).status_code == 409
    first = body[: 9 * MiB]
    wrong = patch(api, url, 0, first, **{"Upload-Checksum": checksum("sha1", b"something else")})
    assert wrong.status_code == 460, wrong.text
    assert offset_of(api, url) == 0

    answer = patch(api, url, 0, first, **{"Upload-Checksum": checksum("sha256", first)})
    assert answer.status_code == 204, answer.text
    assert int(answer.headers["Upload-Offset"]) == len(first) == offset_of(api, url)
    percent = float(api.get(f"/get_state/{job_id}").json()["task_percent"])
    assert percent == pytest.approx(100 * len(first) / len(body), abs=0.1)
    assert patch(api, url, len(first), body[len(first):]).status_code == 204
    document = wait_complete(api, job_id, timeout=120)
    assert document["state"] == "OK", document
    assert sorted(s3.list_objects("ingest-staging", prefix=resumable.prefix(job_id))) == []


def test_a_body_that_is_not_a_tar_fails_at_the_first_patch(api: httpx.Client) -> None:
    created = create(api, 4 * MiB)
    answer = patch(api, created.headers["Location"], 0, b"\x1f\x8b" + os.urandom(MiB))
    assert answer.status_code == 400
    assert "open tar" in answer.json()["message"] and "gzip" in answer.json()["message"]
    document = api.get(f"/get_state/{created.headers['Ingest-Job-Id']}").json()
    assert (document["state"], document["task"]) == ("FAILED", "open tar")


def test_creation_with_upload_and_termination(api: httpx.Client, s3: Minio, store: JobStore) -> None:
    body = small_bundle(12)
    created = api.post("/uploads/", content=body[: 10 * MiB], headers={
        **TUS, "Upload-Length": str(len(body)), "Content-Type": "application/offset+octet-stream"})
    assert created.status_code == 201, created.text
    assert int(created.headers["Upload-Offset"]) == 10 * MiB
    job_id = int(created.headers["Ingest-Job-Id"])
    upload_id = resumable.record(store.get(jobs.job_name(job_id)))["uploadId"]
    assert api.delete(created.headers["Location"], headers=TUS).status_code == 204
    document = api.get(f"/get_state/{job_id}").json()
    assert (document["state"], document["task"]) == ("FAILED", "UPLOADING")
    assert document["exception"] == "upload terminated by the client"
    assert parts_gone(s3, jobs.staged_bundle_key(job_id), upload_id)
    assert list(s3.list_objects("ingest-staging", prefix=resumable.prefix(job_id))) == []
    assert api.head(created.headers["Location"], headers=TUS).status_code == 410


def test_another_users_upload_does_not_exist(tus_stack: Stack, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice-token alice\nbob-token bob\n")
    replica = ApiReplica(tus_stack, {"INGEST_AUTH_TOKENS_FILE": str(tokens)})
    try:
        with httpx.Client(base_url=replica.url, timeout=60) as client:
            assert create(client, 1000).status_code == 401
            alice = {"Authorization": "Bearer alice-token"}
            created = create(client, 1000, **alice)
            assert created.status_code == 201
            url = created.headers["Location"]
            bob = {"Authorization": "Bearer bob-token"}
            assert client.head(url, headers={**TUS, **bob}).status_code == 404
            assert patch(client, url, 0, b"x" * 10, **bob).status_code == 404
            assert client.delete(url, headers={**TUS, **bob}).status_code == 404
            assert client.head(url, headers={**TUS, **alice}).status_code == 200
            assert client.options("/uploads/").status_code == 204  # a browser's preflight carries no token
    finally:
        replica.stop()


def test_two_clients_patching_one_upload_through_two_replicas(api: httpx.Client, tus_stack: Stack) -> None:
    body = small_bundle(12)
    url = create(api, len(body)).headers["Location"]
    start = threading.Barrier(2)
    replica = ApiReplica(tus_stack)

    def slow_body() -> Iterator[bytes]:
        start.wait()
        for offset in range(0, 8 * MiB, MiB):
            yield body[offset:offset + MiB]
            time.sleep(0.3)

    def send(base_url: str) -> int:
        with httpx.Client(base_url=base_url, timeout=120) as client:
            return patch(client, url, 0, slow_body()).status_code

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            codes = sorted(pool.map(send, [tus_stack.api_url, replica.url]))
    finally:
        replica.stop()
    assert codes[0] == 204 and codes[1] in (409, 423), codes
    assert offset_of(api, url) == 8 * MiB


def test_an_abandoned_upload_expires(api: httpx.Client, s3: Minio, store: JobStore) -> None:
    body = small_bundle(12)
    created = create(api, len(body))
    job_id = int(created.headers["Ingest-Job-Id"])
    assert patch(api, created.headers["Location"], 0, body[: 9 * MiB + 7]).status_code == 204
    upload_id = resumable.record(store.get(jobs.job_name(job_id)))["uploadId"]
    assert list(s3.list_objects("ingest-staging", prefix=resumable.prefix(job_id)))  # the pending bytes
    document = wait_complete(api, job_id, timeout=EXPIRY + 60)
    assert (document["state"], document["task"]) == ("FAILED", "UPLOADING")
    assert "INGEST_UPLOAD_EXPIRY_SECONDS" in document["exception"], document
    def cleaned_up() -> bool:  # the operator removes them just after it failed the job
        return (parts_gone(s3, jobs.staged_bundle_key(job_id), upload_id)
                and not list(s3.list_objects("ingest-staging", prefix=resumable.prefix(job_id))))

    wait_for(cleaned_up, 30, "the parts and checkpoints to go")


def test_tuspy_through_cut_connections_and_a_second_replica(api: httpx.Client, tus_stack: Stack, s3: Minio,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "bundle.tar"
    sums = bundle_file(path, 300)
    size = path.stat().st_size
    proxy = CuttingProxy(tus_stack.ports["api"], [int(size * 0.3), int(size * 0.7)])
    replica = ApiReplica(tus_stack)
    try:
        client = tus_client.TusClient(f"{proxy.url}/uploads/")
        uploader = client.uploader(str(path), chunk_size=8 * MiB, metadata={"filename": "bundle.tar"})
        failures = 0
        while uploader.offset < size:
            try:
                uploader.upload_chunk()
            except (TusCommunicationError, TusUploadFailed) as error:
                if error.status_code in (409, 423):  # the cut PATCH is still being committed: ask again
                    time.sleep(0.5)
                else:
                    failures += 1
                    assert failures <= 2, error
                    if failures == 2:  # the second time, go on through the other replica
                        uploader.url = uploader.url.replace(proxy.url, replica.url)
                uploader.offset = uploader.get_offset()
        assert proxy.cut_count == 2 and failures == 2
        job_id = int(uploader.url.rsplit("/", 1)[1].split("-")[0])
        document = wait_complete(api, job_id, timeout=600)
        assert (document["state"], document["task"]) == ("OK", "ingest metadata"), document
        for name, digest in sums.items():
            stored = s3.get_object("ingest-archive", f"{job_id}/{name}")
            assert hashlib.sha1(stored.read()).hexdigest() == digest, name
            stored.close()
    finally:
        proxy.close()
        replica.stop()


def tree(root: Path, megabytes: int) -> Path:
    root.mkdir()
    for index in range(megabytes // 4):
        (root / f"file{index:02d}.bin").write_bytes(os.urandom(4 * MiB))
    return root


def ingest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest.cli.client", "upload", *args, "--resumable-threshold", "1M",
            "--chunk-size", "8M", "--project", "1234a", "--submitter", "10", "--instrument", "54"]


def test_ingest_upload_of_a_directory_through_a_cut_connection(tus_stack: Stack, tmp_path: Path) -> None:
    source = tree(tmp_path / "run", 40)
    proxy = CuttingProxy(tus_stack.ports["api"], [14 * MiB, 30 * MiB])
    try:
        result = subprocess.run(ingest_command(str(source), "--url", proxy.url, "--wait", "--timeout", "300"),
                                capture_output=True, text=True, timeout=600)
    finally:
        proxy.close()
    assert result.returncode == 0, result.stderr
    assert proxy.cut_count == 2
    assert result.stderr.count("resuming in") >= 2, result.stderr
    assert json.loads(result.stdout)["task"] == "ingest metadata"


def test_resume_finishes_an_upload_after_the_command_was_killed(tus_stack: Stack, api: httpx.Client,
                                                                tmp_path: Path) -> None:
    source = tree(tmp_path / "run", 40)
    proxy = CuttingProxy(tus_stack.ports["api"], [], delay=0.004)  # ~15 MB/s: time to kill it mid-way
    try:
        command = subprocess.Popen(ingest_command(str(source), "--url", proxy.url), stderr=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        line = command.stderr.readline()
        url = re.search(r"--resume (\S+)\)", line).group(1)
        wait_for(lambda: offset_of(api, urllib.parse.urlsplit(url).path) >= 8 * MiB, 120, "the first chunk")
        command.kill()
        command.communicate(timeout=30)
    finally:
        proxy.close()
    path = urllib.parse.urlsplit(url).path
    assert offset_of(api, path) < 40 * MiB
    resumed = subprocess.run(ingest_command(str(source), "--url", tus_stack.api_url, "--resume",
                                            tus_stack.api_url + path, "--wait", "--timeout", "300"),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["state"] == "OK"
