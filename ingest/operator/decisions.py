"""What the operator does next about a job and its worker Pod: the decisions, without the I/O.

The reconcile loop (reconcile.py) reads the job and its Pods, asks here what to do, and does it:
writes a lifecycle transition, deletes or creates a Pod, posts an Event. Kept apart so that each
rule - which Pod may go on, when a vanished worker is trusted dead, which ending is worth another
attempt, when a job that never started fails - is a pure function of (job, Pod, settings, now),
tested in tests/operator/test_decisions.py without a cluster.
"""
from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Final, Literal

from ingest import jobs
from ingest.config import Settings
from ingest.lifecycle import Job, may_start, seconds_since
from ingest.operator.podspec import failure_reason

Pod = dict[str, Any]
Action = Literal["wait", "check_lease", "lost", "fail"]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The next thing to do about a Running job's worker.

    `wait`: nothing yet; `check_lease`: a pool worker holds the job, its lease decides; `lost`: the
    worker ended or vanished without recording the outcome (another attempt if `retryable` and
    attempts remain); `fail`: a limit passed, the job fails with `message`. `stuck` names the
    stuck-jobs counter to count, if any.
    """

    action: Action
    message: str = ""
    retryable: bool = False
    stuck: str = ""


WAIT: Final = Verdict("wait")


def wanted(job: Job, pod: Pod) -> bool:
    """A live worker Pod may go on: the job's owner, or one finishing its own outcome."""
    name = pod["metadata"]["name"]
    owner = job.owner
    if owner is not None and not job.failed:
        return bool(name == owner.pod and (not owner.uid or pod["metadata"].get("uid") == owner.uid))
    if job.phase == jobs.PHASE_SUCCEEDED or (job.phase == jobs.PHASE_FAILED and job.rolled_back):
        return bool(name == job.status.get("workerPod"))  # recorded its outcome; exiting now
    return False


def staged(job: Job, settings: Settings, now: datetime.datetime | None = None) -> Literal["wait", "start", "fail"]:
    """A Staged job: fail it once no worker started in time, start one once it may, else wait."""
    if seconds_since(job.updated, now) > settings.start_timeout_seconds:
        return "fail"
    return "start" if may_start(job) else "wait"


def not_started_message(settings: Settings) -> str:
    return (f"no worker could be started within {settings.start_timeout_seconds} s "
            "(INGEST_START_TIMEOUT_SECONDS)")


def running_worker(job: Job, pod: Pod | None, settings: Settings, now: datetime.datetime | None = None) -> Verdict:
    """A Running job and its owner's Pod as found (None: not found): what to do."""
    owner = job.owner
    assert owner is not None, "a Running job names its owner"
    if pod is not None and owner.uid and pod["metadata"].get("uid") != owner.uid:
        pod = None  # a namesake, not our worker
    if pod is None:
        # Gone without terminating (force-deleted, node lost): its process may live on, so wait
        # out its lease - the worker stops writing once it cannot prove the job is its own.
        last = jobs.parse_time(job.status.get("heartbeat")) or job.updated
        if seconds_since(last, now) < settings.lease_seconds:
            return WAIT
        return Verdict("lost", f"worker Pod {owner.pod} disappeared", retryable=True, stuck="worker_vanished")
    phase = (pod.get("status") or {}).get("phase")
    pooled = jobs.pool_claim(job.status) == owner.pod
    if pooled and phase not in ("Succeeded", "Failed"):
        return Verdict("check_lease")
    if phase == "Succeeded" and pooled:  # drained or scaled down with the job unfinished: not the job's fault
        return Verdict("lost", f"pool worker Pod {owner.pod} exited before the job was done", retryable=True)
    if phase == "Succeeded":
        return Verdict("lost", f"worker Pod {owner.pod} exited without recording the job's outcome")
    if phase == "Failed":
        message, retryable = failure_reason(pod)
        return Verdict("lost", message, retryable=retryable)
    if phase in (None, "Pending") and seconds_since(job.updated, now) > settings.start_timeout_seconds:
        return Verdict("fail", f"worker Pod {owner.pod} did not start within {settings.start_timeout_seconds} s "
                       "(INGEST_START_TIMEOUT_SECONDS)", stuck="worker_pending")
    return WAIT
