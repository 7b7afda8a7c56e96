"""The worker's decisions without a cluster: whether to wait for the operator's claim, why a job
is no longer ours, and which jobs a pool worker may take."""
from __future__ import annotations

import pytest

from ingest import jobs, lifecycle
from ingest.lifecycle import Job, Owner
from ingest.worker.pool import waiting
from ingest.worker.reporter import awaits_claim, describe_loss
from tests.lifecycle_builders import NOW, OWNER, apply, running, staged, uploading

SECOND = Owner(2, "ingest-7-worker-2", "uid-2")


def lost_once() -> dict[str, object]:
    """Attempt 1's worker vanished, attempts remain: Staged again, its writes not yet rolled back."""
    return apply(running(), lifecycle.worker_lost(Job.of(running()), NOW, owner=OWNER, message="gone",
                                                  retryable=True, default_attempts=3))


# --- a worker Pod waiting for the operator to record it ------------------------------------------
def test_the_next_attempt_waits_for_its_claim() -> None:
    assert awaits_claim(Job.of(staged()), OWNER)
    assert awaits_claim(Job.of(lost_once()), SECOND)


@pytest.mark.parametrize(("job", "owner"), [
    (staged(), SECOND),      # attempt 2 cannot be next while attempt 1 never ran
    (lost_once(), OWNER),    # attempt 1 is over
    (running(), SECOND),     # attempt 1 runs
    (uploading(), OWNER),    # not staged yet
])
def test_any_other_worker_gives_up_at_once(job: dict[str, object], owner: Owner) -> None:
    assert not awaits_claim(Job.of(job), owner)


def test_a_failed_job_is_never_waited_for() -> None:
    failed = apply(staged(), lifecycle.admin_fields(Job.of(staged()), NOW, fields={"state": jobs.FAILED}))
    assert not awaits_claim(Job.of(failed), OWNER)


# --- why a job is no longer ours ---------------------------------------------------------------
def test_the_loss_names_what_happened() -> None:
    cancelled = apply(running(), lifecycle.cancel(Job.of(running()), NOW, reason="wrong proposal"))
    assert describe_loss(Job.of(cancelled), OWNER).startswith(f"job is {jobs.FAILED}/")
    assert "wrong proposal" in describe_loss(Job.of(cancelled), OWNER)
    assert describe_loss(Job.of(lost_once()), OWNER) == "job phase is Staged, not Running for attempt 1"
    retried = apply(lost_once(), lifecycle.rolled_back(Job.of(lost_once()), NOW))
    second = apply(retried, lifecycle.worker_started(Job.of(retried), NOW, owner=SECOND))
    assert describe_loss(Job.of(second), OWNER) == (
        f"job belongs to attempt 2 (worker Pod {SECOND.pod}), not 1 ({OWNER.pod})")


# --- which jobs a pool worker may take ---------------------------------------------------------
def test_a_pool_worker_takes_a_staged_job_only_once_earlier_writes_are_rolled_back() -> None:
    assert waiting(staged())
    assert not waiting(uploading()) and not waiting(running())
    assert not waiting(lost_once())  # attempt 1's files are still there
    assert waiting(apply(lost_once(), lifecycle.rolled_back(Job.of(lost_once()), NOW)))
    failed = apply(staged(), lifecycle.admin_fields(Job.of(staged()), NOW, fields={"state": jobs.FAILED}))
    assert not waiting(failed)
