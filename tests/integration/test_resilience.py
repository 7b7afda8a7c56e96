"""Jobs survive what clusters do: Pacifica's own client, worker crashes, operator restarts, concurrency."""
from __future__ import annotations

import concurrent.futures
import io
import json
import os
import signal
import time
from urllib.parse import urlparse

import httpx
import pytest
from minio import Minio

from ingest.kube import JobStore
from ingest.local.launcher import Stack
from tests.integration.bundles import bundle
from tests.integration.helpers import archive_keys, big_bundle, upload, wait_complete, wait_for, worker_pids

pytestmark = pytest.mark.stack


def test_bundle_from_pacificas_own_client(stack: Stack, api: httpx.Client, s3: Minio) -> None:
    """pacifica-uploader's Bundler and Uploader, unchanged, against this service."""
    from pacifica.uploader.bundler import Bundler
    from pacifica.uploader.metadata import MetaData, MetaObj
    from pacifica.uploader.uploader import Uploader

    metadata = MetaData([
        MetaObj(destinationTable="Transactions.submitter", value=10),
        MetaObj(destinationTable="Transactions.project", value="1234a"),
        MetaObj(destinationTable="Transactions.instrument", value=54),
    ])
    contents = {"data/mywork/experiment/notes.txt": b"hello\n", "data/Ünï/file.bin": bytes(range(256)) * 400}
    file_data = [{"name": name, "fileobj": io.BytesIO(data), "size": len(data), "mtime": 1_700_000_000}
                 for name, data in contents.items()]
    out = io.BytesIO()
    Bundler(metadata, file_data).stream(out)
    url = urlparse(stack.api_url)
    uploader = Uploader(addr=url.hostname, port=url.port)
    job_id = uploader.upload(io.BytesIO(out.getvalue()), content_length=len(out.getvalue()))
    deadline = time.monotonic() + 60
    while True:  # pacifica-uploader's own polling rule
        state = uploader.getstate(job_id)
        if state["state"] != "OK" or (state["task"] == "ingest metadata" and int(float(state["task_percent"])) == 100):
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert (state["state"], state["task"], state["task_percent"],
            state["complete"]) == ("OK", "ingest metadata", "100.0", True)
    for name, data in contents.items():
        assert s3.get_object("ingest-archive", f"{job_id}/{name.removeprefix('data/')}").read() == data


def test_killed_worker_is_retried_and_the_job_completes(api: httpx.Client, s3: Minio, job_store: JobStore) -> None:
    job_id = upload(api, big_bundle())["job_id"]
    pids = wait_for(lambda: worker_pids(job_id), what="the worker process")
    os.kill(pids[0], signal.SIGKILL)  # a crash: no clean-up runs
    final = wait_complete(api, job_id, timeout=120)
    job = job_store.get(f"ingest-{job_id}")
    # Either outcome is correct, stuck is not: retried to completion, or FAILED with the reason.
    if final["state"] == "OK":
        assert job["status"]["attempts"] == 2
        assert len(archive_keys(s3, job_id)) == 25
    else:
        assert "exit code" in final["exception"], final
        assert archive_keys(s3, job_id) == []


def test_operator_restart_mid_job(stack: Stack, api: httpx.Client) -> None:
    job_id = upload(api, big_bundle(16))["job_id"]
    stack.kill("operator")
    try:
        time.sleep(1)
    finally:
        stack.start("operator")
    assert wait_complete(api, job_id, timeout=120)["state"] == "OK"


def test_twenty_concurrent_uploads(api: httpx.Client, s3: Minio) -> None:
    bodies = [bundle({f"c{index}/file{n}.txt": f"{index}-{n}".encode() for n in range(5)})[0] for index in range(20)]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        accepted = list(pool.map(lambda body: upload(api, body), bodies))
    job_ids = [document["job_id"] for document in accepted]
    assert len(set(job_ids)) == 20
    finals = [wait_complete(api, job_id, timeout=180) for job_id in job_ids]
    assert all(final["state"] == "OK" for final in finals), [f for f in finals if f["state"] != "OK"]
    file_ids = []
    for job_id in job_ids:
        document = json.loads(s3.get_object("ingest-archive", f"{job_id}.metadata.json").read())
        file_ids += [entry["_id"] for entry in document if entry["destinationTable"] == "Files"]
    assert len(file_ids) == len(set(file_ids)) == 100
