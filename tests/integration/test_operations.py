"""Operating the service: IngestCMD, kubectl workflows, stuck uploads, retries, deletion."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio import Minio

from ingest.kube import JobStore
from ingest.local.launcher import Stack
from tests.integration.bundles import TRANSACTION, bundle, files_entry, tar_bytes
from tests.integration.helpers import archive_keys, upload, wait_complete, wait_for
from tests.integration.policy import PolicyServer

pytestmark = pytest.mark.stack
BIN = Path(sys.executable).parent


def ingestcmd(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KUBECONFIG=str(stack.kubeconfig()))
    return subprocess.run([str(BIN / "IngestCMD"), *args], env=env, capture_output=True, text=True, timeout=60)


def failed_job(api: httpx.Client) -> int:
    job_id = upload(api, b"not a tar" * 100)["job_id"]
    assert wait_complete(api, job_id)["state"] == "FAILED"
    return job_id


def test_ingestcmd_help_usage_and_unknown_job(stack: Stack) -> None:
    assert ingestcmd(stack, "--help").returncode == 0
    for command in ("job", "get", "list", "retry", "cancel"):
        result = ingestcmd(stack, command, "--help")
        assert result.returncode == 0 and "usage" in result.stdout
    assert ingestcmd(stack, "job").returncode == 2
    missing = ingestcmd(stack, "get", "--job-id", "999999")
    assert missing.returncode == 1 and "job ID 999999 does not exist" in missing.stderr


def test_ingestcmd_job_sets_exactly_the_given_fields(stack: Stack, api: httpx.Client) -> None:
    job_id = failed_job(api)
    result = ingestcmd(stack, "job", "--job-id", str(job_id), "--state", "FAILED", "--task", "ingest files",
                       "--task-percent", "0.0", "--exception", "Failed by adminstrator")
    assert result.returncode == 0, result.stderr
    document = api.get(f"/get_state/{job_id}").json()
    assert (document["state"], document["task"], document["task_percent"], document["exception"],
            document["complete"]) == \
        ("FAILED", "ingest files", "0.0", "Failed by adminstrator", True)
    only_exception = ingestcmd(stack, "job", "--job-id", str(job_id), "--exception", "second look")
    assert json.loads(only_exception.stdout)["task"] == "ingest files"
    assert json.loads(ingestcmd(stack, "get", "--job-id", str(job_id)).stdout)["exception"] == "second look"
    listed = json.loads(ingestcmd(stack, "list", "--state", "FAILED").stdout)
    assert job_id in [doc["job_id"] for doc in listed] and all(doc["state"] == "FAILED" for doc in listed)
    incomplete = json.loads(ingestcmd(stack, "list", "--incomplete").stdout)
    assert job_id not in [doc["job_id"] for doc in incomplete]


def newest_uploading(job_store: JobStore, after: set[str]) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        fresh = [job for job in job_store.list() if job["metadata"]["name"] not in after]
        return fresh[0] if fresh else None
    return wait_for(find, what="the new job")


def start_partial_upload(stack: Stack) -> socket.socket:
    host, port = stack.api_url.removeprefix("http://").split(":")
    client = socket.create_connection((host, int(port)))
    client.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                   b"Content-Length: 1000000\r\n\r\n" + bytes(2048))
    return client


def test_a_silent_client_fails_its_upload(stack: Stack, api: httpx.Client, job_store: JobStore) -> None:
    before = {job["metadata"]["name"] for job in job_store.list()}
    client = start_partial_upload(stack)
    try:
        name = newest_uploading(job_store, before)["metadata"]["name"]
        final = wait_complete(api, int(name.split("-")[1]), timeout=30)
    finally:
        client.close()
    assert (final["state"], final["task"], final["complete"]) == ("FAILED", "UPLOADING", True)
    assert "stalled" in final["exception"] and "2048 bytes" in final["exception"]


def test_an_upload_orphaned_by_a_dead_api_replica_fails(stack: Stack, api: httpx.Client, job_store: JobStore) -> None:
    before = {job["metadata"]["name"] for job in job_store.list()}
    client = start_partial_upload(stack)
    name = newest_uploading(job_store, before)["metadata"]["name"]
    stack.kill("api")
    client.close()
    try:
        job = wait_for(lambda: (job_store.get(name)["status"].get("complete") and job_store.get(name)), timeout=40,
                       what="the operator to fail the orphaned upload")
    finally:
        stack.start("api")
    assert (job["status"]["state"], job["status"]["task"]) == ("FAILED", "UPLOADING")
    assert "stalled" in job["status"]["exception"] and "INGEST_UPLOAD_STALL_SECONDS" in job["status"]["exception"]


def denied_bundle(project: str, *, padding: int = 0) -> bytes:
    """A bundle the policy refuses for `project`; `padding` bytes in an unlisted member (ignored by
    the ingest) make it large enough for a worker Pod of its own in pool mode."""
    metadata = [
        item if item["destinationTable"] != "Transactions.project" else {**item, "value": project}
        for item in TRANSACTION
    ]
    metadata.append(files_entry("r.txt", "retry", b"retry me"))
    extra = [("padding.bin", bytes(padding))] if padding else []
    return tar_bytes([("data/retry/r.txt", b"retry me"), *extra, ("metadata.txt", json.dumps(metadata).encode())])


@pytest.mark.parametrize("restart_operator", [False, True])
def test_retry_after_policy_refusal_completes_with_the_same_job_id(
    restart_operator: bool, stack: Stack, api: httpx.Client, s3: Minio, policy: PolicyServer, job_store: JobStore
) -> None:
    project = f"closed-{restart_operator}"
    policy.denied.add(project)
    job_id = upload(api, denied_bundle(project))["job_id"]
    failed = wait_complete(api, job_id)
    assert (failed["state"], failed["task"]) == ("FAILED",
                                                 "Policy Validation") and "closed for uploads" in failed["exception"]
    assert archive_keys(s3, job_id) == []
    policy.denied.discard(project)
    result = ingestcmd(stack, "retry", "--job-id", str(job_id))
    assert result.returncode == 0, result.stderr
    if restart_operator:
        stack.kill("operator")
        stack.start("operator")
    final = wait_complete(api, job_id, timeout=60)
    assert (final["job_id"], final["state"], final["task"],
            final["complete"]) == (job_id, "OK", "ingest metadata", True)
    assert s3.get_object("ingest-archive", f"{job_id}/retry/r.txt").read() == b"retry me"
    assert ingestcmd(stack, "retry", "--job-id", str(job_id)).returncode == 1  # only FAILED jobs


def test_kubectl_delete_removes_job_worker_and_staged_bundle_but_keeps_archived_files(
    api: httpx.Client, s3: Minio, policy: PolicyServer, kubectl: Callable[..., Any]
) -> None:
    done = upload(api, bundle({"keep/me.txt": b"keep"})[0])["job_id"]
    assert wait_complete(api, done)["state"] == "OK"
    policy.denied.add("deleted-project")
    failed = upload(api, denied_bundle("deleted-project"))["job_id"]
    assert wait_complete(api, failed)["state"] == "FAILED"
    policy.denied.discard("deleted-project")
    assert s3.stat_object("ingest-staging", f"bundles/{failed}.tar").size > 0  # kept for a retry
    described = kubectl("describe", "ingestjob", f"ingest-{done}").stdout
    for reason in ("Staged", "WorkerStarted", "Completed"):
        assert reason in described, described
    kubectl("delete", "ingestjob", f"ingest-{done}", f"ingest-{failed}", "--timeout=60s")
    assert kubectl("get", "ingestjob", f"ingest-{done}", check=False).returncode != 0
    assert api.get(f"/get_state/{done}").status_code == 404
    assert s3.get_object("ingest-archive", f"{done}/keep/me.txt").read() == b"keep"
    staged = [item.object_name for item in s3.list_objects("ingest-staging", prefix=f"bundles/{failed}.",
                                                           recursive=True)]
    assert staged == []


def test_kubectl_get_shows_the_printer_columns(api: httpx.Client, kubectl: Callable[..., Any]) -> None:
    job_id = upload(api, bundle({"cols.txt": b"c"})[0])["job_id"]
    wait_complete(api, job_id)
    table = kubectl("get", "ingestjobs").stdout
    header = table.splitlines()[0].split()
    assert header[:7] == ["NAME", "JOB", "ID", "STATE", "TASK", "PERCENT", "COMPLETE"] and header[-1] == "AGE"
    row = next(line for line in table.splitlines() if line.startswith(f"ingest-{job_id} "))
    assert " OK " in row and "ingest metadata" in row and "true" in row
