"""The warm pool: small bundles go to pool workers, large ones to a Pod of their own; leases fence.

Pool workers are ordinary Pods the operator creates; the local pod runner runs them as processes,
so these tests find a pool worker's process by its Pod name (the pod runner's pid files of this
stack: other stacks on the machine run pool workers too) and stop (SIGSTOP) or kill (SIGKILL) it,
as a hung or crashed node would.
"""
from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from minio import Minio

from ingest.kube import JobStore
from ingest.local.launcher import Stack
from tests.integration.bundles import bundle
from tests.integration.helpers import archive_keys, upload, wait_complete, wait_for
from tests.integration.writers import pool_worker_pids

pytestmark = [pytest.mark.stack, pytest.mark.pool]
POOL_LABEL = "ingest.pacifica.org/pool"


def signal_all(pids: dict[str, int], signum: int) -> None:
    for pid in pids.values():
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def many_files(tag: str, count: int = 300, size: int = 4096) -> tuple[bytes, dict[str, bytes]]:
    files = {f"{tag}/f{index:04d}.bin": os.urandom(size) for index in range(count)}
    return bundle(files)[0], files


def step_until(pids: dict[str, int], condition: Callable[[], Any], what: str) -> Any:
    """Let the stopped pool workers run in 20 ms slices until `condition` holds; they end stopped."""
    for _ in range(1500):
        value = condition()
        if value:
            return value
        signal_all(pids, signal.SIGCONT)
        time.sleep(0.02)
        signal_all(pids, signal.SIGSTOP)
    raise AssertionError(f"never saw {what}")


def stopped_while_writing(stack: Stack, api: httpx.Client, s3: Minio, job_store: JobStore,
                          body: bytes) -> tuple[int, str, dict[str, int]]:
    """Upload `body` with every pool worker stopped, let them run until the job's first files land;
    returns the job id, the Pod holding it and the (stopped) pool workers."""
    pids = wait_for(lambda: pool_worker_pids(stack), what="a pool worker")
    signal_all(pids, signal.SIGSTOP)
    try:
        job_id = upload(api, body)["job_id"]
        name = f"ingest-{job_id}"
        step_until(pids, lambda: job_store.get(name)["status"].get("claimedBy") and archive_keys(s3, job_id),
                   "the pool worker writing files")
    except BaseException:
        signal_all(pids, signal.SIGCONT)
        raise
    return job_id, job_store.get(name)["status"]["claimedBy"], pids


def pods_of_job(kubectl: Callable[..., Any], job_id: int) -> list[dict[str, Any]]:
    listed = kubectl("get", "pods", "-l", f"ingest.pacifica.org/job-id={job_id}", "-o", "json")
    return json.loads(listed.stdout)["items"]


def test_a_small_bundle_is_ingested_by_a_pool_worker_and_leaves_the_queue(
    api: httpx.Client, s3: Minio, job_store: JobStore, kubectl: Callable[..., Any]
) -> None:
    body, _ = bundle({"pool/a.txt": b"alpha", "pool/b.txt": b"beta"})
    job_id = upload(api, body)["job_id"]
    assert wait_complete(api, job_id)["state"] == "OK"
    status = job_store.get(f"ingest-{job_id}")["status"]
    assert status["claimedBy"].startswith("ingest-pool-") and status["workerPod"] == status["claimedBy"]
    assert status["attempts"] == 1 and status["workerUid"] and status["phase"] == "Succeeded"
    assert pods_of_job(kubectl, job_id) == []  # no Pod of its own
    expected = [f"{job_id}.metadata.json", f"{job_id}/pool/a.txt", f"{job_id}/pool/b.txt"]
    assert sorted(archive_keys(s3, job_id)) == expected
    wait_for(lambda: POOL_LABEL not in (job_store.get(f"ingest-{job_id}")["metadata"].get("labels") or {}),
             what="the operator to take the finished job out of the pool's queue")


def test_a_bundle_above_the_pool_limit_gets_its_own_worker_pod(api: httpx.Client, job_store: JobStore) -> None:
    body, _ = bundle({"big/x.bin": os.urandom(5 * 1024 * 1024)})  # INGEST_POOL_MAX_BUNDLE_BYTES is 4 MiB here
    job_id = upload(api, body)["job_id"]
    assert wait_complete(api, job_id)["state"] == "OK"
    job = job_store.get(f"ingest-{job_id}")
    assert job["status"]["workerPod"] == f"ingest-{job_id}-worker-1" and "claimedBy" not in job["status"]
    assert POOL_LABEL not in (job["metadata"].get("labels") or {})


def test_a_pool_worker_killed_mid_job_is_replaced_and_the_job_ends_ok_with_every_file(
    stack: Stack, api: httpx.Client, s3: Minio, job_store: JobStore
) -> None:
    started = time.monotonic()
    warm_body, _ = many_files("warm")
    warm = upload(api, warm_body)["job_id"]
    assert wait_complete(api, warm)["state"] == "OK"
    duration = time.monotonic() - started  # what such a job costs here, now

    body, files = many_files("kill")
    job_id, holder, pids = stopped_while_writing(stack, api, s3, job_store, body)
    name = f"ingest-{job_id}"
    try:
        assert len(archive_keys(s3, job_id)) < len(files) + 1, "the job finished before it could be killed"
        killed = time.monotonic()
        os.kill(pids[holder], signal.SIGKILL)
    finally:
        signal_all(pool_worker_pids(stack), signal.SIGCONT)
    final = wait_complete(api, job_id, timeout=120)
    elapsed = time.monotonic() - killed
    job = job_store.get(name)
    assert (final["state"], final["task"], final["complete"]) == ("OK", "ingest metadata", True), final
    assert job["status"]["attempts"] == 2 and job["status"]["claimedBy"] != holder
    keys = set(archive_keys(s3, job_id))
    assert keys == {f"{job_id}/{path}" for path in files} | {f"{job_id}.metadata.json"}
    for path in list(files)[:20]:
        assert s3.get_object("ingest-archive", f"{job_id}/{path}").read() == files[path]
    lease = 6  # INGEST_LEASE_SECONDS of the test stack
    print(f"\nkilled -> complete in {elapsed:.1f} s (lease {lease} s, a normal run of such a job {duration:.1f} s)")
    assert elapsed < lease + duration + 10, "retry took longer than the lease plus the job plus a Pod start"


def test_a_hung_pool_worker_loses_its_lease_and_pod_and_the_job_is_retried(
    stack: Stack, api: httpx.Client, s3: Minio, job_store: JobStore, kubectl: Callable[..., Any]
) -> None:
    body, files = many_files("hang", count=100)
    pids = wait_for(lambda: pool_worker_pids(stack), what="a pool worker")
    signal_all(pids, signal.SIGSTOP)
    try:
        job_id = upload(api, body)["job_id"]
        name = f"ingest-{job_id}"
        step_until(pids, lambda: job_store.get(name)["status"].get("claimedBy"), "the job claimed")
        holder = job_store.get(name)["status"]["claimedBy"]
        others = {pod: pid for pod, pid in pids.items() if pod != holder}
        signal_all(others, signal.SIGCONT)
        # The holder stays stopped: its heartbeats stop, the operator deletes its Pod (SIGTERM is
        # pending on a stopped process; the pod runner's SIGKILL after the grace period ends it).
        wait_for(lambda: kubectl("get", "pod", holder, check=False).returncode != 0, timeout=60,
                 what="the operator to delete the hung pool worker's Pod")
    finally:
        signal_all(pool_worker_pids(stack), signal.SIGCONT)
    final = wait_complete(api, job_id, timeout=120)
    assert (final["state"], final["complete"]) == ("OK", True), final
    status = job_store.get(name)["status"]
    assert status["attempts"] == 2 and status["claimedBy"] != holder
    assert set(archive_keys(s3, job_id)) == {f"{job_id}/{path}" for path in files} | {f"{job_id}.metadata.json"}
    described = kubectl("describe", "ingestjob", name).stdout
    assert "LeaseExpired" in described


def test_manual_failed_stops_the_pool_worker_rolls_back_and_the_worker_serves_on(
    stack: Stack, api: httpx.Client, s3: Minio, job_store: JobStore, kubectl: Callable[..., Any]
) -> None:
    body, _ = many_files("cancel")
    job_id, holder, _ = stopped_while_writing(stack, api, s3, job_store, body)
    name = f"ingest-{job_id}"
    try:
        kubectl("patch", "ingestjob", name, "--subresource=status", "--type=merge",
                "-p", '{"status":{"state":"FAILED","exception":"wrong run"}}')
    finally:
        signal_all(pool_worker_pids(stack), signal.SIGCONT)
    wait_for(lambda: "claimedBy" not in job_store.get(name)["status"], timeout=30,
             what="the pool worker to let go of the job")
    wait_for(lambda: archive_keys(s3, job_id) == [], timeout=30, what="the archive to be rolled back")
    document = api.get(f"/get_state/{job_id}").json()
    assert (document["state"], document["exception"], document["complete"]) == ("FAILED", "wrong run", True)
    assert holder in pool_worker_pids(stack), "the pool worker lives on"
    after = upload(api, bundle({"after/ok.txt": b"ok"})[0])["job_id"]
    assert wait_complete(api, after)["state"] == "OK"
