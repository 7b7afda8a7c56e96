"""The operator's decisions without a cluster: given a job and its worker Pod, which action.

Jobs are built by the lifecycle's own transitions (tests/lifecycle_builders.py) and Pods as the
Kubernetes API serves them; `now` is passed in, so every deadline is checked on both sides.
"""
from __future__ import annotations

import datetime
from typing import Any

import pytest

from ingest import jobs, lifecycle
from ingest.config import Settings
from ingest.lifecycle import Job, Owner
from ingest.operator import decisions
from ingest.operator.decisions import Verdict
from tests.lifecycle_builders import NOW, OWNER, apply, running, staged

SETTINGS = Settings.from_env({"INGEST_LEASE_SECONDS": "30", "INGEST_START_TIMEOUT_SECONDS": "600"})


def later(seconds: float) -> datetime.datetime:
    return NOW + datetime.timedelta(seconds=seconds)


def pod(phase: str | None, *, name: str = OWNER.pod, uid: str = OWNER.uid, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": uid}, "status": {"phase": phase, **status} if phase else status}


def failed_pod(**container: Any) -> dict[str, Any]:
    return pod("Failed", containerStatuses=[{"name": "worker", "state": {"terminated": container}}])


def claimed_by_the_pool() -> Job:
    return Job.of({**running(), "status": {**running()["status"], "claimedBy": OWNER.pod}})


# --- a Running job and its worker's Pod ----------------------------------------------------------
@pytest.mark.parametrize(("worker", "verdict"), [
    (pod("Running"), decisions.WAIT),
    (pod("Pending"), decisions.WAIT),  # still within INGEST_START_TIMEOUT_SECONDS
    (pod("Succeeded"), Verdict("lost", f"worker Pod {OWNER.pod} exited without recording the job's outcome")),
    (failed_pod(exitCode=1, reason="Error", message="boom"),
     Verdict("lost", f"worker Pod {OWNER.pod} failed: exit code 1 (Error): boom", retryable=True)),
    (failed_pod(exitCode=137, reason="OOMKilled"),
     Verdict("lost", f"worker Pod {OWNER.pod} failed: exit code 137 (OOMKilled); it ran out of memory "
             "(INGEST_WORKER_MEMORY_LIMIT)", retryable=True)),
    (pod("Failed", reason="Evicted", message="node low on memory"),
     Verdict("lost", f"worker Pod {OWNER.pod} was evicted: node low on memory", retryable=True)),
])
def test_what_the_owners_pod_says(worker: dict[str, Any], verdict: Verdict) -> None:
    assert decisions.running_worker(Job.of(running()), worker, SETTINGS, later(5)) == verdict


def test_a_worker_past_its_deadline_is_not_retried() -> None:
    worker = {**pod("Failed", reason="DeadlineExceeded"), "spec": {"activeDeadlineSeconds": 3600}}
    verdict = decisions.running_worker(Job.of(running()), worker, SETTINGS, later(3601))
    assert verdict.action == "lost" and not verdict.retryable
    assert "ran past its deadline of 3600 s (INGEST_WORKER_DEADLINE_SECONDS)" in verdict.message


def test_a_pod_that_never_ran_fails_the_job_after_the_start_timeout() -> None:
    job = Job.of(running())
    assert decisions.running_worker(job, pod("Pending"), SETTINGS, later(600)) == decisions.WAIT
    assert decisions.running_worker(job, pod(None), SETTINGS, later(601)) == Verdict(
        "fail", f"worker Pod {OWNER.pod} did not start within 600 s (INGEST_START_TIMEOUT_SECONDS)",
        stuck="worker_pending")
    assert decisions.running_worker(job, pod("Running"), SETTINGS, later(6000)) == decisions.WAIT


@pytest.mark.parametrize("found", [None, pod("Running", uid="uid-of-a-namesake")])
def test_a_vanished_worker_is_trusted_dead_only_after_its_lease(found: dict[str, Any] | None) -> None:
    """Force-deleted or node lost: its process may live on until the lease after its last proof."""
    job = running()
    job = apply(job, lifecycle.heartbeat(Job.of(job), later(100), owner=OWNER))
    assert decisions.running_worker(Job.of(job), found, SETTINGS, later(129)) == decisions.WAIT
    assert decisions.running_worker(Job.of(job), found, SETTINGS, later(131)) == Verdict(
        "lost", f"worker Pod {OWNER.pod} disappeared", retryable=True, stuck="worker_vanished")


def test_without_a_heartbeat_the_lease_runs_from_the_last_update() -> None:
    job = Job.of(running())
    assert decisions.running_worker(job, None, SETTINGS, later(29)).action == "wait"
    assert decisions.running_worker(job, None, SETTINGS, later(31)).action == "lost"


def test_a_pool_worker_answers_through_its_lease() -> None:
    job = claimed_by_the_pool()
    assert decisions.running_worker(job, pod("Running"), SETTINGS, later(5)) == Verdict("check_lease")
    # drained or scaled down with the job unfinished: not the bundle's fault, so another attempt
    assert decisions.running_worker(job, pod("Succeeded"), SETTINGS, later(5)) == Verdict(
        "lost", f"pool worker Pod {OWNER.pod} exited before the job was done", retryable=True)
    assert decisions.running_worker(job, failed_pod(exitCode=1), SETTINGS, later(5)).action == "lost"


# --- a Staged job --------------------------------------------------------------------------------
def test_a_staged_job_starts_a_worker_then_times_out() -> None:
    job = Job.of(staged())
    assert decisions.staged(job, SETTINGS, later(1)) == "start"
    assert decisions.staged(job, SETTINGS, later(601)) == "fail"
    assert "within 600 s (INGEST_START_TIMEOUT_SECONDS)" in decisions.not_started_message(SETTINGS)


def test_a_retry_waits_for_the_rollback_of_the_attempt_before() -> None:
    lost = lifecycle.worker_lost(Job.of(running()), NOW, owner=OWNER, message="gone", retryable=True,
                                 default_attempts=3)
    job = apply(running(), lost)
    assert decisions.staged(Job.of(job), SETTINGS, later(1)) == "wait"
    job = apply(job, lifecycle.rolled_back(Job.of(job), later(2)))
    assert decisions.staged(Job.of(job), SETTINGS, later(3)) == "start"


# --- which live Pods may go on -------------------------------------------------------------------
def test_only_the_owner_may_go_on_while_the_job_runs() -> None:
    job = Job.of(running())
    assert decisions.wanted(job, pod("Running"))
    assert not decisions.wanted(job, pod("Running", uid="uid-2"))  # a namesake
    assert not decisions.wanted(job, pod("Running", name="ingest-7-worker-2", uid="uid-2"))


def test_a_failed_job_stops_its_worker_until_it_is_rolled_back() -> None:
    job = running()
    failed = apply(job, lifecycle.admin_fields(Job.of(job), NOW, fields={"state": jobs.FAILED}))
    assert not decisions.wanted(Job.of(failed), pod("Running"))


def test_a_worker_that_recorded_success_may_exit_by_itself() -> None:
    done = apply(running(), lifecycle.succeeded(Job.of(running()), NOW, owner=OWNER))
    assert decisions.wanted(Job.of(done), pod("Running"))
    assert not decisions.wanted(Job.of(done), pod("Running", name="ingest-7-worker-0"))


def test_a_second_attempt_is_not_the_first() -> None:
    second = Owner(2, "ingest-7-worker-2", "uid-2")
    lost = apply(running(), lifecycle.worker_lost(Job.of(running()), NOW, owner=OWNER, message="gone",
                                                  retryable=True, default_attempts=3))
    job = apply(lost, lifecycle.rolled_back(Job.of(lost), NOW))
    job = apply(job, lifecycle.worker_started(Job.of(job), NOW, owner=second))
    assert not decisions.wanted(Job.of(job), pod("Running"))
    assert decisions.wanted(Job.of(job), pod("Running", name=second.pod, uid=second.uid))
