"""The job lifecycle under people acting on running jobs: cancel, retry, delete, force-delete,
manual FAILED, odd times - with the worker paused (SIGSTOP) at a chosen moment so each race is
played out deterministically, and a seeded random driver that mixes them over many jobs."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio import Minio

from ingest.kube import JobStore
from ingest.local.launcher import Stack
from tests.integration.bundles import OWN_POD, bundle
from tests.integration.helpers import archive_keys, upload, wait_complete, wait_for
from tests.integration.policy import PolicyServer
from tests.integration.workers import pause_at, resume, stopped, worker_processes
from tests.integration.writers import Writers, pid_of

pytestmark = pytest.mark.stack
BIN = Path(sys.executable).parent


def ingestcmd(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KUBECONFIG=str(stack.kubeconfig()))
    return subprocess.run([str(BIN / "IngestCMD"), *args], env=env, capture_output=True, text=True, timeout=60)


def files_of(count: int, size: int, tag: str) -> dict[str, bytes]:
    return {f"{tag}/part{index}.bin": os.urandom(size) for index in range(count)}


def assert_all_files(s3: Minio, job_id: int, files: dict[str, bytes]) -> None:
    """Every file of the bundle is in the archive with its bytes, and nothing else of the job is."""
    expected = {f"{job_id}/{path}" for path in files} | {f"{job_id}.metadata.json"}
    assert set(archive_keys(s3, job_id)) == expected
    for path, data in files.items():
        stored = s3.get_object("ingest-archive", f"{job_id}/{path}").read()
        assert hashlib.sha1(stored).hexdigest() == hashlib.sha1(data).hexdigest(), path


def pods_of(kubectl: Callable[..., Any], job_id: int) -> list[dict[str, Any]]:
    result = kubectl("get", "pods", "-l", f"ingest.pacifica.org/job-id={job_id}", "-o", "json")
    return json.loads(result.stdout)["items"]


def test_cancel_then_immediate_retry_never_loses_files(
    stack: Stack, api: httpx.Client, s3: Minio, job_store: JobStore
) -> None:
    for round_ in range(5):
        files = files_of(12, 512 * 1024, f"round{round_}")
        job_id = upload(api, bundle(files)[0])["job_id"]
        pid = pause_at(stack, job_store, job_id)
        assert ingestcmd(stack, "cancel", "--job-id", str(job_id), "--reason", "restart it").returncode == 0
        retried = ingestcmd(stack, "retry", "--job-id", str(job_id))
        assert retried.returncode == 0, retried.stderr
        resume(pid)
        final = wait_complete(api, job_id, timeout=120)
        if final["state"] == "OK":
            assert_all_files(s3, job_id, files)
        else:
            wait_for(lambda job_id=job_id: archive_keys(s3, job_id) == [], timeout=60, what="an empty archive prefix")
        status = job_store.get(f"ingest-{job_id}")["status"]
        assert status["attempts"] >= 2
        assert (final["state"], status["phase"]) in (("OK", "Succeeded"), ("FAILED", "Failed"))


def test_kubectl_delete_during_ingest_files_leaves_nothing_behind(
    stack: Stack, api: httpx.Client, s3: Minio, job_store: JobStore, kubectl: Callable[..., Any]
) -> None:
    job_id = upload(api, bundle(files_of(16, 1024 * 1024, "deleted"))[0])["job_id"]
    pid = pause_at(stack, job_store, job_id)
    kubectl("delete", "ingestjob", f"ingest-{job_id}", "--wait=false")
    # The finalizer holds the job until its worker is gone and its writes are rolled back.
    assert job_store.get(f"ingest-{job_id}") is not None
    resume(pid)
    wait_for(lambda: job_store.get(f"ingest-{job_id}") is None, timeout=90, what="the job to go")
    assert not worker_processes(stack, job_id)
    assert pods_of(kubectl, job_id) == []
    assert archive_keys(s3, job_id) == []
    staged = list(s3.list_objects("ingest-staging", prefix=f"bundles/{job_id}.", recursive=True))
    assert staged == []


@pytest.mark.parametrize("how", ["kubectl patch", "IngestCMD job"])
def test_manual_failed_is_final_keeps_the_admin_fields_and_rolls_back_after_the_pod(
    how: str, stack: Stack, api: httpx.Client, s3: Minio, job_store: JobStore, kubectl: Callable[..., Any]
) -> None:
    job_id = upload(api, bundle(files_of(16, 1024 * 1024, "manual"))[0])["job_id"]
    pid = pause_at(stack, job_store, job_id)
    if how == "kubectl patch":
        kubectl("patch", "ingestjob", f"ingest-{job_id}", "--subresource=status", "--type=merge",
                "-p", '{"status":{"state":"FAILED","taskPercent":42.5,"exception":"stuck"}}')
    else:
        result = ingestcmd(stack, "job", "--job-id", str(job_id), "--state", "FAILED", "--task-percent", "42.5",
                           "--exception", "stuck")
        assert result.returncode == 0, result.stderr
    resume(pid)
    wait_for(lambda: not worker_processes(stack, job_id), timeout=60, what="the worker to stop")
    wait_for(lambda: pods_of(kubectl, job_id) == [], timeout=60, what="the worker Pod to go")
    status = wait_for(lambda: (job_store.get(f"ingest-{job_id}")["status"].get("rolledBack")
                               and job_store.get(f"ingest-{job_id}")["status"]), timeout=60, what="the rollback")
    assert archive_keys(s3, job_id) == []
    observed = (status["state"], status["task"], status["taskPercent"], status["exception"])
    assert observed == ("FAILED", "ingest files", 42.5, "stuck")
    assert (status["complete"], status["phase"]) == (True, "Failed")
    kubectl("wait", f"ingestjob/ingest-{job_id}", "--for=jsonpath={.status.complete}=true", "--timeout=5s")
    document = api.get(f"/get_state/{job_id}").json()
    assert (document["state"], document["task"], document["task_percent"], document["complete"]) == \
        ("FAILED", "ingest files", "42.5", True)
    described = kubectl("describe", "ingestjob", f"ingest-{job_id}").stdout
    assert "ManualFailure" in described and "RolledBack" in described


def test_force_deleted_pod_never_runs_alongside_the_next_attempt(
    stack: Stack, api: httpx.Client, s3: Minio, job_store: JobStore, kubectl: Callable[..., Any]
) -> None:
    files = files_of(16, 1024 * 1024, "forced")
    job_id = upload(api, bundle(files)[0])["job_id"]
    pid = pause_at(stack, job_store, job_id)
    kubectl("delete", "pod", f"ingest-{job_id}-worker-1", "--grace-period=0", "--force")
    assert stopped(pid)  # its node cannot be reached: the process lives on, frozen
    final = wait_complete(api, job_id, timeout=120)
    assert final["state"] == "OK"
    status = job_store.get(f"ingest-{job_id}")["status"]
    assert status["attempts"] == 2 and stopped(pid)  # attempt 2 ran and finished while attempt 1 was frozen
    resume(pid)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}")
             or not worker_processes(stack, job_id).get(f"ingest-{job_id}-worker-1"),
             timeout=60, what="the old worker to notice it lost the job")
    after = job_store.get(f"ingest-{job_id}")["status"]
    assert (after["state"], after["phase"], after["workerPod"]) == ("OK", "Succeeded", f"ingest-{job_id}-worker-2")
    assert_all_files(s3, job_id, files)


@pytest.mark.parametrize(
    "value", ["2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00+00:00", "2026-01-01T02:00:00+02:00", "garbage"])
def test_any_time_kubernetes_accepts_is_read_everywhere(
    value: str, stack: Stack, api: httpx.Client, kubectl: Callable[..., Any]
) -> None:
    job_id = upload(api, bundle({"t/time.txt": b"t"})[0])["job_id"]
    assert wait_complete(api, job_id)["state"] == "OK"
    patched = kubectl("patch", "ingestjob", f"ingest-{job_id}", "--subresource=status", "--type=merge",
                      "-p", json.dumps({"status": {"updated": value}}), check=False)
    if value == "garbage":  # `format: date-time`: the API server refuses it, as a real one does
        assert patched.returncode != 0 and "updated" in patched.stderr
    else:
        assert patched.returncode == 0, patched.stderr
        wait_for(lambda: api.get(f"/get_state/{job_id}").json()["updated"] == "2026-01-01 00:00:00",
                 timeout=20, what="get_state to show the patched time")
    time.sleep(1)
    assert api.get("/readyz").status_code == 200
    assert api.get(f"/get_state/{job_id}").json()["state"] == "OK"
    listed = ingestcmd(stack, "list")
    assert listed.returncode == 0, listed.stderr
    assert job_id in [doc["job_id"] for doc in json.loads(listed.stdout)]
    # The operator goes on serving other jobs.
    other = upload(api, bundle({"t/after.txt": b"a"})[0])["job_id"]
    assert wait_complete(api, other)["state"] == "OK"


def test_worker_pods_are_collected_succeeded_at_once_failed_kept(
    stack: Stack, api: httpx.Client, policy: PolicyServer, kubectl: Callable[..., Any]
) -> None:
    policy.denied.add("pods-kept")
    try:
        from tests.integration.test_operations import denied_bundle
        # Above INGEST_POOL_MAX_BUNDLE_BYTES of the test stack: a worker Pod of its own in pool mode too.
        failed = upload(api, denied_bundle("pods-kept", padding=5 * 1024 * 1024))["job_id"]
        done = [upload(api, bundle({f"gc/{index}.txt": b"x" * index})[0])["job_id"] for index in range(20)]
        assert wait_complete(api, failed)["state"] == "FAILED"
        for job_id in done:
            assert wait_complete(api, job_id, timeout=120)["state"] == "OK"
    finally:
        policy.denied.discard("pods-kept")
    started = time.monotonic()
    wait_for(lambda: all(pods_of(kubectl, job_id) == [] for job_id in done), timeout=30,
             what="the succeeded jobs' worker Pods to go")
    print(f"20 succeeded jobs' worker Pods gone {time.monotonic() - started:.1f} s after the last completed")
    kept = pods_of(kubectl, failed)
    assert [pod["status"]["phase"] for pod in kept] == ["Succeeded"]  # the worker recorded FAILED and exited


def test_random_interleaving_keeps_the_invariants(
    stack: Stack, api: httpx.Client, s3: Minio, job_store: JobStore, kubectl: Callable[..., Any]
) -> None:
    """Seeded random driver: upload, cancel, retry, Pod kill, pool worker kill, operator restart,
    manual FAILED over 30+ jobs; after quiescence every job is complete, an OK job has all its files
    with their digests, a FAILED job has nothing in the archive, and no job ever had two live
    writers - worker Pods of its own and pool workers holding its claim alike (`Writers`).

    It runs in the session stack's worker mode (INGEST_TEST_WORKER_MODE: pool by default, or pod).
    In pool mode one upload in four is padded above the pool's limit (OWN_POD), so Pod kills and
    pool worker kills both find targets; in pod mode every job has its own Pod."""
    rng = random.Random(int(os.environ.get("INGEST_LIFECYCLE_SEED", "19")))
    pool_mode = stack.env.get("INGEST_WORKER_MODE", "pool") == "pool"
    bundles: dict[int, dict[str, bytes]] = {}
    actions = ("upload",) * 4 + ("cancel", "retry", "kill pod", "manual FAILED", "restart operator") + \
        (("kill pool worker",) * 2 if pool_mode else ())
    done = {"restart operator": 0, "kill pod": 0, "kill pool worker": 0}
    with Writers(stack, job_store) as writers:
        while len(bundles) < 30:
            action = rng.choice(actions)
            jobs_so_far = sorted(bundles)
            target = rng.choice(jobs_so_far) if jobs_so_far else None
            if action == "upload" or target is None:
                files = files_of(rng.randint(1, 5), rng.choice((1024, 64 * 1024, 256 * 1024)), f"r{len(bundles)}")
                padding = OWN_POD if pool_mode and rng.random() < 0.25 else ()
                bundles[upload(api, bundle(files, extra_members=padding)[0])["job_id"]] = files
            elif action == "cancel":
                ingestcmd(stack, "cancel", "--job-id", str(target), "--reason", "driver cancel")
            elif action == "retry":
                ingestcmd(stack, "retry", "--job-id", str(target))
            elif action == "kill pod":
                for pod in worker_processes(stack, target):
                    kubectl("delete", "pod", pod, "--wait=false", check=False)
                    done["kill pod"] += 1
            elif action == "kill pool worker":
                done["kill pool worker"] += kill_a_busy_pool_worker(stack, writers, f"ingest-{target}", rng)
            elif action == "manual FAILED":
                kubectl("patch", "ingestjob", f"ingest-{target}", "--subresource=status", "--type=merge",
                        "-p", '{"status":{"state":"FAILED","exception":"driver says no"}}', check=False)
            elif action == "restart operator" and done["restart operator"] < 2:
                done["restart operator"] += 1
                stack.kill("operator")
                stack.start("operator")
            time.sleep(rng.random() * 0.5)
        for job_id in bundles:
            wait_complete(api, job_id, timeout=180)

        # Quiescence: every rollback recorded, no worker Pod of a job left, no claim held.
        def settled() -> bool:
            for job_id in bundles:
                status = job_store.get(f"ingest-{job_id}")["status"]
                if status["phase"] == "Failed" and status.get("attempts") and not status.get("rolledBack"):
                    return False
            return not any(worker_processes(stack, job_id) for job_id in bundles) and not writers.holding()
        wait_for(settled, timeout=120, what="rollbacks to finish and workers to exit")
    assert writers.overlaps == []
    outcomes = {"OK": 0, "FAILED": 0}
    for job_id, files in bundles.items():
        document = api.get(f"/get_state/{job_id}").json()
        assert document["complete"] is True
        outcomes[document["state"]] = outcomes.get(document["state"], 0) + 1
        phase = job_store.get(f"ingest-{job_id}")["status"]["phase"]
        if phase == "Succeeded":  # OK, or FAILED by an administrator afterwards: a success is never undone
            assert_all_files(s3, job_id, files)
        else:
            assert archive_keys(s3, job_id) == [], document
    print(f"random driver ({'pool' if pool_mode else 'pod'} mode): {len(bundles)} jobs, outcomes {outcomes}, {done}")
    assert outcomes["OK"] > 0 and outcomes["FAILED"] > 0
    if pool_mode:
        assert done["kill pool worker"] > 0, "the driver never caught a pool worker holding a job"


def kill_a_busy_pool_worker(stack: Stack, writers: Writers, target: str, rng: random.Random) -> int:
    """SIGKILL the pool worker holding `target`, or else one holding any job (waiting up to 2 s for
    one); 1 if a process was killed. Its Pod fails; the operator retries each job it held."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        holding = writers.holding()
        pods = [pod for pod, held in holding.items() if target in held] or sorted(holding)
        pids = [pid for pid in (pid_of(stack, pod) for pod in pods) if pid is not None]
        if pids:
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
                return 1
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return 0
