"""Nothing stuck: each limit ends a job FAILED with a reason naming it; retention cleans up.

The limits are the operator's settings, so each test restarts the session's operator with short
ones and puts the usual ones back afterwards (a restart loses nothing: state is in the objects).
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import httpx
import kubernetes
import pytest
from minio import Minio

from ingest import jobs
from ingest.kube import JobStore, api_client
from ingest.local.launcher import Stack
from tests.integration.bundles import OWN_POD, bundle
from tests.integration.helpers import archive_keys, big_bundle, upload, wait_complete, wait_for, worker_pids

pytestmark = pytest.mark.stack


@contextlib.contextmanager
def operator_settings(stack: Stack, **settings: str) -> Iterator[None]:
    saved = dict(stack.env)
    stack.env.update(settings)
    stack.stop("operator")
    stack.start("operator")
    try:
        yield
    finally:
        stack.env.clear()
        stack.env.update(saved)
        stack.stop("operator")
        stack.start("operator")


def test_a_worker_past_its_deadline_fails_the_job(stack: Stack, api: httpx.Client, s3: Minio) -> None:
    with operator_settings(stack, INGEST_WORKER_DEADLINE_SECONDS="2"):
        job_id = upload(api, big_bundle(4))["job_id"]
        pid = wait_for(lambda: worker_pids(job_id), what="the worker")[0]
        os.kill(pid, signal.SIGSTOP)  # a hung worker: alive, doing nothing
        try:
            final = wait_complete(api, job_id, timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert (final["state"], final["complete"]) == ("FAILED", True)
    assert "deadline of 2 s" in final["exception"] and "INGEST_WORKER_DEADLINE_SECONDS" in final["exception"]
    assert archive_keys(s3, job_id) == []


def test_a_worker_that_never_starts_fails_the_job(stack: Stack, api: httpx.Client) -> None:
    """The worker's Secret is missing, so its Pod cannot start (CreateContainerConfigError)."""
    core = kubernetes.client.CoreV1Api(api_client(config_file=str(stack.kubeconfig())))
    secret = core.read_namespaced_secret("ingest-s3", stack.namespace)
    core.delete_namespaced_secret("ingest-s3", stack.namespace)
    try:
        with operator_settings(stack, INGEST_START_TIMEOUT_SECONDS="3"):
            job_id = upload(api, bundle({"never.txt": b"n"}, extra_members=OWN_POD)[0])["job_id"]
            final = wait_complete(api, job_id, timeout=60)
    finally:
        core.create_namespaced_secret(stack.namespace, {"metadata": {"name": "ingest-s3"}, "data": secret.data})
    assert (final["state"], final["complete"]) == ("FAILED", True)
    assert "did not start within 3 s" in final["exception"] and "INGEST_START_TIMEOUT_SECONDS" in final["exception"]


def test_retention_removes_staged_data_then_finished_jobs(stack: Stack, api: httpx.Client, s3: Minio,
                                                          job_store: JobStore,
                                                          kubectl) -> None:
    failed = upload(api, bundle({"keep.txt": b"k"}, metadata=b"[{\"value\": 1}]")[0])["job_id"]
    assert wait_complete(api, failed)["state"] == "FAILED"
    assert s3.stat_object("ingest-staging", jobs.staged_bundle_key(failed)).size > 0
    done = upload(api, bundle({"done.txt": b"d"})[0])["job_id"]
    assert wait_complete(api, done)["state"] == "OK"
    time.sleep(2)
    with operator_settings(stack, INGEST_STAGED_RETENTION_SECONDS="1"):
        wait_for(
            lambda: (
                jobs.STAGED_REMOVED_ANNOTATION
                in (job_store.get(f"ingest-{failed}")["metadata"].get("annotations") or {})
            ),
            timeout=30,
            what="the staged bundle's retention",
        )
    assert [item.object_name for item in s3.list_objects("ingest-staging", prefix=f"bundles/{failed}.")] == []
    assert "StagedRemoved" in kubectl("describe", "ingestjob", f"ingest-{failed}").stdout
    with operator_settings(stack, INGEST_JOB_RETENTION_DAYS=str(1 / 86400)):  # one second
        wait_for(lambda: job_store.get(f"ingest-{done}") is None, timeout=30, what="the finished job's retention")
        # Every finished job of the session expired with it: let the operator release them all
        # before it restarts, or later tests see jobs vanish under them.
        wait_for(lambda: not any(job["metadata"].get("deletionTimestamp") for job in job_store.list()),
                 timeout=120, what="every expired job released")
    assert s3.get_object("ingest-archive", f"{done}/done.txt").read() == b"d", "retention never touches archived files"
    assert api.get(f"/get_state/{done}").status_code == 404
