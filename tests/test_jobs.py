"""The lifecycle without a cluster: every transition, the fence, the invariants, odd times."""
from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ingest import jobs, lifecycle
from ingest.lifecycle import Job, Owner
from tests.lifecycle_builders import NOW, OWNER, apply, body, running, uploading


# --- times -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("2026-01-01T00:00:00Z", "2026-01-01 00:00:00"),
    ("2026-01-01T00:00:00.5Z", "2026-01-01 00:00:00"),
    ("2026-01-01T00:00:00+00:00", "2026-01-01 00:00:00"),
    ("2026-01-01T02:30:00+02:30", "2026-01-01 00:00:00"),
    ("2025-12-31T19:00:00.123456-05:00", "2026-01-01 00:00:00"),
    ("2026-01-01t00:00:00z", "2026-01-01 00:00:00"),
    ("2026-01-01T00:00:00.123456789Z", "2026-01-01 00:00:00"),
    ("garbage", ""), ("", ""), ("2026-13-01T00:00:00Z", ""), ("2026-01-01", ""), ("2026-01-01T00:00:00", ""),
])
def test_wire_time_reads_rfc3339_and_nothing_else(text: str, expected: str) -> None:
    assert jobs.wire_time(text) == expected


@given(st.datetimes(min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(9998, 12, 30)),
       st.integers(min_value=-23 * 60, max_value=23 * 60), st.booleans())
def test_parse_time_round_trips_any_offset_and_fraction(moment: datetime.datetime, minutes: int,
                                                        fraction: bool) -> None:
    zone = datetime.timezone(datetime.timedelta(minutes=minutes))
    local = moment.replace(tzinfo=zone, microsecond=moment.microsecond if fraction else 0)
    text = local.isoformat(timespec="microseconds" if fraction else "seconds")
    assert jobs.parse_time(text) == local


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                       lambda inner: st.lists(inner,
                                              max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                       max_leaves=8)
STATUS_KEYS = st.sampled_from(["state", "task", "taskPercent", "complete", "updated", "created", "phase", "attempts",
                               "workerPod", "workerUid", "exception", "finishedAt", "maxAttempts", "rolledBack"])


@given(st.dictionaries(STATUS_KEYS, JSONISH, max_size=8))
@example({"attempts": math.inf, "maxAttempts": -math.inf, "phase": "Running", "workerPod": "p"})
@example({"attempts": "nan", "taskPercent": "1e999"})
def test_an_unreadable_status_never_raises(status: dict[str, Any]) -> None:
    job = Job.of(body(**status))
    document = jobs.state_document(body(**status))
    assert set(document) == {"job_id", "state", "task", "task_percent", "complete", "updated", "created", "exception"}
    assert isinstance(document["task_percent"], str) and document["job_id"] == 7
    _ = (job.phase, job.owner, job.complete, job.needs_rollback, job.updated, job.manual_failure)


def test_a_garbage_time_is_a_problem_not_an_exception() -> None:
    job = Job.of(body(**{**jobs.initial_status(), "updated": "garbage"}))
    assert job.problems and "updated" in job.problems[0]
    assert jobs.state_document(body(updated="garbage",
                                    created="2026-01-01T00:00:00.5Z"))["updated"] == "2026-01-01 00:00:00"


# --- transitions ------------------------------------------------------------------------------
def test_the_happy_path() -> None:
    job = running()
    assert Job.of(job).owner == OWNER and Job.of(job).phase == jobs.PHASE_RUNNING
    job = apply(job, lifecycle.step(Job.of(job), NOW, owner=OWNER, task=jobs.INGEST_FILES, percent=50.0))
    assert (job["status"]["task"], job["status"]["taskPercent"],
            job["status"]["complete"]) == (jobs.INGEST_FILES, 50.0, False)
    job = apply(job, lifecycle.succeeded(Job.of(job), NOW, owner=OWNER))
    done = Job.of(job)
    assert (done.phase, done.complete, done.state, done.percent) == (jobs.PHASE_SUCCEEDED, True, jobs.OK, 100.0)
    assert not done.needs_rollback and lifecycle.violations(job["status"]) == []


def test_transitions_that_do_not_apply_write_nothing() -> None:
    job = Job.of(running())
    assert lifecycle.staged(job, NOW, size=1) is None
    assert lifecycle.upload_failed(job, NOW, task=jobs.UPLOADING, message="x") is None
    assert lifecycle.worker_started(job, NOW, owner=Owner(2, "p", "u")) is None
    assert lifecycle.retry(job, NOW, default_attempts=3) is None
    assert lifecycle.manual_failure_honoured(job, NOW) is None
    assert lifecycle.rolled_back(job, NOW) is None


@pytest.mark.parametrize("other", [Owner(2, OWNER.pod, OWNER.uid), Owner(1, "ingest-7-worker-2", OWNER.uid),
                                   Owner(1, OWNER.pod, "uid-of-a-namesake")])
def test_the_fence_refuses_every_other_worker(other: Owner) -> None:
    job = Job.of(running())
    for transition in (lifecycle.step, lifecycle.succeeded, lifecycle.bundle_failed, lifecycle.heartbeat,
                       lifecycle.committing):
        facts = {"task": jobs.OPEN_TAR, "percent": 1.0} if transition is lifecycle.step else \
            {"task": jobs.OPEN_TAR, "message": "m"} if transition is lifecycle.bundle_failed else {}
        assert transition(job, NOW, owner=other, **facts) is None
        assert transition(job, NOW, owner=OWNER, **facts) is not None


def test_attempt_n_plus_one_only_after_rollback() -> None:
    job = running()
    job = apply(job,
                lifecycle.worker_lost(Job.of(job), NOW, owner=OWNER, message="gone", retryable=True,
                                      default_attempts=3))
    view = Job.of(job)
    assert view.phase == jobs.PHASE_STAGED and view.needs_rollback and not lifecycle.may_start(view)
    assert lifecycle.worker_started(view, NOW, owner=Owner(2, "p2", "u2")) is None
    job = apply(job, lifecycle.rolled_back(view, NOW))
    assert lifecycle.may_start(Job.of(job))
    assert lifecycle.worker_started(Job.of(job), NOW, owner=Owner(3, "p3", "u3")) is None  # exactly the next attempt
    job = apply(job, lifecycle.worker_started(Job.of(job), NOW, owner=Owner(2, "p2", "u2")))
    assert Job.of(job).rolled_back is False and Job.of(job).owner == Owner(2, "p2", "u2")


def test_worker_lost_fails_once_attempts_are_used_up_or_for_the_bundles_fault() -> None:
    job = Job.of(running())
    assert lifecycle.worker_lost(job, NOW, owner=OWNER, message="m", retryable=True,
                                 default_attempts=1)["phase"] == jobs.PHASE_FAILED
    failed = lifecycle.worker_lost(job, NOW, owner=OWNER, message="m", retryable=False, default_attempts=3)
    assert (failed["state"], failed["taskPercent"], failed["complete"]) == (jobs.FAILED, 0.0, True)


def test_a_manual_failure_is_final_and_keeps_the_administrators_fields() -> None:
    job = running()
    job = apply(job, {"state": "FAILED", "taskPercent": 42.5, "exception": "stuck"})  # kubectl patch
    view = Job.of(job)
    assert view.manual_failure and view.complete
    for transition, facts in ((lifecycle.step, {"task": jobs.INGEST_FILES, "percent": 60.0}),
                              (lifecycle.succeeded, {}), (lifecycle.heartbeat, {})):
        assert transition(view, NOW, owner=OWNER, **facts) is None
    assert lifecycle.worker_lost(view, NOW, owner=OWNER, message="m", retryable=True, default_attempts=3) is None
    patch = lifecycle.manual_failure_honoured(view, NOW)
    assert set(patch) == {"phase", "complete", "finishedAt"}
    job = apply(job, patch)
    after = job["status"]
    assert (after["state"], after["task"], after["taskPercent"], after["exception"], after["complete"],
            after["phase"]) == \
        ("FAILED", jobs.UPLOADING, 42.5, "stuck", True, jobs.PHASE_FAILED)
    assert Job.of(job).needs_rollback


def test_cancel_then_retry_rolls_back_before_the_next_attempt() -> None:
    job = running()
    job = apply(job, lifecycle.cancel(Job.of(job), NOW, reason="restart"))
    job = apply(job, lifecycle.retry(Job.of(job), NOW, default_attempts=3))
    view = Job.of(job)
    assert view.phase == jobs.PHASE_STAGED and view.state == jobs.OK and view.needs_rollback
    assert view.max_attempts == 1 + 3 and not lifecycle.may_start(view)


def test_a_committing_job_is_never_rolled_back_nor_sent_twice() -> None:
    job = running()
    job = apply(job, lifecycle.committing(Job.of(job), NOW, owner=OWNER))
    lost = lifecycle.worker_lost(Job.of(job), NOW, owner=OWNER, message="gone", retryable=True, default_attempts=3)
    assert lost["phase"] == jobs.PHASE_FAILED and "metadata service may already have accepted" in lost["exception"]
    job = apply(job, lost)
    assert not Job.of(job).needs_rollback and lifecycle.retry(Job.of(job), NOW, default_attempts=3) is None


def test_a_job_whose_staged_data_retention_removed_is_not_retried() -> None:
    job = running()
    job = apply(job, lifecycle.cancel(Job.of(job), NOW, reason="stop"))
    assert lifecycle.retry(Job.of(job), NOW, default_attempts=3) is not None
    job["metadata"] = {**job["metadata"], "annotations": {jobs.STAGED_REMOVED_ANNOTATION: "2026-01-01T00:00:00Z"}}
    assert Job.of(job).staged_removed and lifecycle.retry(Job.of(job), NOW, default_attempts=3) is None


def test_a_job_whose_status_was_never_written_can_fail_at_uploading() -> None:
    job = Job.of(body())
    assert job.phase == jobs.PHASE_UPLOADING
    patch = lifecycle.upload_failed(job, NOW, task=jobs.UPLOADING, message="never started")
    assert (patch["state"], patch["task"], patch["complete"], patch["phase"]) == ("FAILED", "UPLOADING", True, "Failed")


def test_invariants_catch_a_bad_patch() -> None:
    with pytest.raises(lifecycle.InvariantError):
        lifecycle.checked(Job.of(running()), {"phase": jobs.PHASE_SUCCEEDED})
    assert "a succeeded job was rolled back" in lifecycle.violations(
        {**lifecycle.succeeded(Job.of(running()), NOW, owner=OWNER), "rolledBack": True})


# --- any order of anyone's actions keeps the invariants ---------------------------------------
ACTIONS = ("staged", "upload_failed", "start", "step", "succeed", "bundle_fail", "lose", "lose_for_good", "cancel",
           "admin_failed", "honour", "roll_back", "retry", "commit", "old_worker_step")


def act(job: dict[str, Any], action: str) -> tuple[dict[str, Any] | None, bool]:
    """(patch, written by an administrator)."""
    view = Job.of(job)
    owner = view.owner or OWNER
    if action == "staged":
        return lifecycle.staged(view, NOW, size=1), False
    if action == "upload_failed":
        return lifecycle.upload_failed(view, NOW, task=jobs.UPLOADING, message="m"), False
    if action == "start":
        return lifecycle.worker_started(view, NOW, owner=Owner(view.attempts + 1, f"p{view.attempts + 1}", "u")), False
    if action == "step":
        return lifecycle.step(view, NOW, owner=owner, task=jobs.INGEST_FILES, percent=50.0), False
    if action == "old_worker_step":
        return lifecycle.step(view, NOW, owner=Owner(owner.attempt - 1, "p0", "u"), task=jobs.INGEST_FILES,
                              percent=1.0), False
    if action == "succeed":
        return lifecycle.succeeded(view, NOW, owner=owner), False
    if action == "bundle_fail":
        return lifecycle.bundle_failed(view, NOW, owner=owner, task=jobs.LOAD_METADATA, message="bad"), False
    if action in ("lose", "lose_for_good"):
        return lifecycle.worker_lost(view, NOW, owner=owner, message="m", retryable=action == "lose",
                                     default_attempts=2), False
    if action == "cancel":
        return lifecycle.cancel(view, NOW, reason="c"), True
    if action == "admin_failed":
        return lifecycle.admin_fields(view, NOW, fields={"state": "FAILED", "exception": "admin"}), True
    if action == "honour":
        return lifecycle.manual_failure_honoured(view, NOW), False
    if action == "roll_back":
        return lifecycle.rolled_back(view, NOW), False
    if action == "retry":
        return lifecycle.retry(view, NOW, default_attempts=2), True
    return lifecycle.committing(view, NOW, owner=owner), False


@settings(max_examples=400)
@given(st.lists(st.sampled_from(ACTIONS), max_size=40))
def test_any_interleaving_keeps_the_invariants(actions: list[str]) -> None:
    job = uploading()
    succeeded_once = False
    for action in actions:
        before = Job.of(job)
        patch, by_admin = act(job, action)
        if patch is None:
            continue
        after_job = apply(job, patch)
        after = Job.of(after_job)
        if not by_admin:
            assert lifecycle.violations(after_job["status"]) == [], (action, after_job["status"])
            if before.failed and before.manual_failure:  # an administrator's fields are never overwritten
                for field in ("state", "task", "taskPercent", "exception"):
                    assert after_job["status"].get(field) == job["status"].get(field), (action, field)
        succeeded_once |= after.phase == jobs.PHASE_SUCCEEDED
        if succeeded_once:  # a job recorded as succeeded is never rolled back, whatever follows
            assert not after.rolled_back and not after.needs_rollback, action
        if before.committing and not by_admin:
            assert after.committing and not after.needs_rollback
        if after.phase == jobs.PHASE_RUNNING and not after.failed:
            assert after.owner is not None and not after.complete
        job = after_job
