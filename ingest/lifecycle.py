"""The job lifecycle in one place: a typed view of an IngestJob and every transition it may take.

Every component moves jobs the same way: read the job, ask this module for the transition (a pure
function of the job, the time and a few facts, returning the status fields to merge, or None when
the transition does not apply to the job as read), and write that patch with a compare-and-swap on
the resourceVersion it read (`JobStore.update_status`). A 409 means someone wrote in between: read
again, decide again. So the rules - who may move a job where, what an administrator's FAILED means,
when files may be rolled back - are written once here and tested without a cluster.

    phase      moved by   to
    Uploading  API        Staged (bundle staged) | Failed (bad body; stalled: operator)
    Staged     operator   Running (a worker Pod of attempt n+1 claimed it) | Failed (never started)
    Running    worker     Running (steps, progress) | Succeeded | Failed (the bundle's fault)
    Running    operator   Staged (worker lost, attempts left) | Failed (worker lost, none left)
    any        admin      state FAILED (kubectl patch, IngestCMD cancel) -> operator: Failed
    Failed     IngestCMD  Staged (retry)

Fencing: a Running job names its owner, the attempt number and the uid of its worker Pod. A worker
writes only while the job names it (`owned_by` inside the compare-and-swap), so a worker that lost
the job - cancelled, retried, force-deleted - can write nothing, and exits without rolling back.
Rollback is the operator's, once no worker Pod of the job can write; it is recorded (`rolledBack`).
Once the metadata service may have a transaction (`committing`), nothing rolls the job back.
"""
from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ingest import jobs

Patch = dict[str, Any]
TERMINAL_PHASES: Final = (jobs.PHASE_SUCCEEDED, jobs.PHASE_FAILED)


class InvariantError(AssertionError):
    """A transition would break a rule of the lifecycle: a bug, never the user's input."""


@dataclasses.dataclass(frozen=True)
class Owner:
    """The worker attempt a Running job belongs to."""

    attempt: int
    pod: str
    uid: str


@dataclasses.dataclass(frozen=True)
class Job:
    """A read-only, typed view of an IngestJob as the API served it; never raises on odd content.

    `problems` lists what could not be read (a status field of the wrong type, a time that is not
    RFC 3339): a job with problems is reported and skipped, never allowed to stop a loop."""

    name: str
    job_id: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    resource_version: str
    deleting: bool
    staged_removed: bool  # retention removed the staged bundle: nothing to run a retry from
    created: datetime.datetime | None
    problems: tuple[str, ...]

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Job:
        meta = body.get("metadata") or {}
        given_spec, given_status = body.get("spec"), body.get("status")
        spec: Mapping[str, Any] = given_spec if isinstance(given_spec, Mapping) else {}
        status: Mapping[str, Any] = given_status if isinstance(given_status, Mapping) else {}
        problems: list[str] = []
        for field in ("updated", "created", "finishedAt"):
            if status.get(field) and jobs.parse_time(status.get(field)) is None:
                problems.append(f"status.{field} {status.get(field)!r} is not an RFC 3339 time")
        for field in ("taskPercent", "attempts", "maxAttempts"):
            if field in status and _number(status.get(field)) is None:
                problems.append(f"status.{field} {status.get(field)!r} is not a number")
        name = str(meta.get("name") or "")
        job_id = _number(spec.get("jobId")) or jobs.job_id_of(name) or 0
        return cls(
            name=name, job_id=int(job_id), spec=spec, status=status,
            resource_version=str(meta.get("resourceVersion") or ""),
            deleting=bool(meta.get("deletionTimestamp")),
            staged_removed=jobs.STAGED_REMOVED_ANNOTATION in (meta.get("annotations") or {}),
            created=jobs.parse_time(status.get("created")) or jobs.parse_time(meta.get("creationTimestamp")),
            problems=tuple(problems),
        )

    # --- the Pacifica view ------------------------------------------------------------------
    @property
    def state(self) -> str:
        return str(self.status.get("state") or jobs.OK)

    @property
    def task(self) -> str:
        return str(self.status.get("task") or jobs.UPLOADING)

    @property
    def percent(self) -> float:
        return _number(self.status.get("taskPercent")) or 0.0

    @property
    def failed(self) -> bool:
        """Any state but OK: FAILED, or another word an administrator wrote."""
        return self.state != jobs.OK

    @property
    def complete(self) -> bool:
        return bool(self.status.get("complete")) or is_complete(self.state, self.task, self.percent)

    # --- the operator's view ----------------------------------------------------------------
    @property
    def phase(self) -> str:
        """A job whose status was never written is still uploading, as far as anyone can tell."""
        return str(self.status.get("phase") or jobs.PHASE_UPLOADING)

    @property
    def attempts(self) -> int:
        return int(_number(self.status.get("attempts")) or 0)

    @property
    def max_attempts(self) -> int | None:
        value = _number(self.status.get("maxAttempts"))
        return int(value) if value else None

    @property
    def owner(self) -> Owner | None:
        pod, uid = self.status.get("workerPod"), self.status.get("workerUid")
        if self.phase != jobs.PHASE_RUNNING or not pod:
            return None
        return Owner(self.attempts, str(pod), str(uid or ""))

    @property
    def updated(self) -> datetime.datetime | None:
        return jobs.parse_time(self.status.get("updated")) or self.created

    @property
    def finished(self) -> datetime.datetime | None:
        return jobs.parse_time(self.status.get("finishedAt")) or self.updated

    @property
    def committing(self) -> bool:
        """The metadata service may hold the transaction: the files are no longer ours to remove."""
        return bool(self.status.get("committing")) or bool(self.status.get("committed"))

    @property
    def rolled_back(self) -> bool:
        return bool(self.status.get("rolledBack"))

    @property
    def manual_failure(self) -> bool:
        """Failed by someone who wrote only state/task/percent/exception: not yet in a final phase."""
        return self.failed and self.phase not in TERMINAL_PHASES

    @property
    def needs_rollback(self) -> bool:
        """Something of this job may sit in the archive and nobody will use it."""
        if self.committing or self.rolled_back or self.attempts == 0 or self.phase == jobs.PHASE_SUCCEEDED:
            return False
        return self.failed or self.deleting or self.phase == jobs.PHASE_STAGED

    def owned_by(self, owner: Owner) -> bool:
        """The fence: the job is OK, Running, and names exactly this worker attempt."""
        return (self.state == jobs.OK and not self.complete and self.owner is not None
                and self.owner.attempt == owner.attempt and self.owner.pod == owner.pod
                and (not owner.uid or self.owner.uid == owner.uid))


def _number(value: Any) -> float | None:
    """A finite number read from a status field, else None (a hand-written `.inf` or `NaN` is unreadable)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


stamp = jobs.rfc3339
is_complete = jobs.is_complete


def seconds_since(moment: datetime.datetime | None, now: datetime.datetime | None = None) -> float:
    """Age of a recorded time; 0 for a time that was never recorded (nothing is older than now)."""
    return ((now or jobs.now()) - moment) / datetime.timedelta(seconds=1) if moment else 0.0


def progress(state: str, task: str, percent: float, now: datetime.datetime, exception: str = "") -> Patch:
    return jobs.progress(state, task, percent, exception, at=now)


def checked(job: Job, patch: Patch | None) -> Patch | None:
    """`patch` if the job it makes keeps every invariant; InvariantError otherwise."""
    if patch is None:
        return None
    problems = violations({**job.status, **patch})
    if problems:
        raise InvariantError(f"{job.name}: {'; '.join(problems)} after {sorted(patch)}")
    return patch


def violations(status: Mapping[str, Any]) -> list[str]:
    """The rules every written status keeps (an administrator's own fields excepted)."""
    view = Job.of({"status": status})
    found = []
    phase = status.get("phase")
    if phase in TERMINAL_PHASES and not status.get("complete"):
        found.append(f"phase {phase} but complete is false")
    if status.get("state") == jobs.OK and phase in (jobs.PHASE_UPLOADING, jobs.PHASE_STAGED, jobs.PHASE_RUNNING) \
            and bool(status.get("complete")) != is_complete(view.state, view.task, view.percent):
        found.append("complete disagrees with state/task/percent")
    if phase == jobs.PHASE_SUCCEEDED and not (view.state == jobs.OK and view.task in (jobs.INGEST_METADATA,)
                                              and view.percent >= 100.0):
        found.append("Succeeded without ingest metadata at 100")
    if phase == jobs.PHASE_FAILED and not view.failed:
        found.append("phase Failed with state OK")
    if phase == jobs.PHASE_SUCCEEDED and status.get("rolledBack"):
        found.append("a succeeded job was rolled back")
    if status.get("committed") and status.get("rolledBack"):
        found.append("a committed job was rolled back")
    if phase == jobs.PHASE_RUNNING and not status.get("workerPod"):
        found.append("Running without a worker")
    return found


# --- the API ---------------------------------------------------------------------------------
def upload_progress(job: Job, now: datetime.datetime, *, received: int) -> Patch | None:
    if job.phase != jobs.PHASE_UPLOADING or job.failed:
        return None
    return {"uploadedBytes": received, "updated": stamp(now)}


def staged(job: Job, now: datetime.datetime, *, size: int) -> Patch | None:
    if job.phase != jobs.PHASE_UPLOADING or job.failed:
        return None
    return checked(job, {"phase": jobs.PHASE_STAGED, "uploadedBytes": size, "updated": stamp(now)})


def upload_failed(job: Job, now: datetime.datetime, *, task: str, message: str, **extra: Any) -> Patch | None:
    """The body broke off or broke a rule (API), or the upload stalled (operator's sweeper)."""
    if job.phase != jobs.PHASE_UPLOADING or job.failed:
        return None
    return checked(job, {**progress(jobs.FAILED, task, 0.0, now, message), "phase": jobs.PHASE_FAILED,
                         "finishedAt": stamp(now), **extra})


# --- the operator ----------------------------------------------------------------------------
def may_start(job: Job) -> bool:
    """Staged and OK, and whatever an earlier attempt wrote is rolled back."""
    return (job.phase == jobs.PHASE_STAGED and not job.failed and not job.deleting
            and (job.attempts == 0 or job.rolled_back or job.committing))


def worker_started(job: Job, now: datetime.datetime, *, owner: Owner) -> Patch | None:
    """Attempt n+1 claims the job; `owner.attempt` must be exactly the next one."""
    if not may_start(job) or owner.attempt != job.attempts + 1:
        return None
    return checked(job, {"phase": jobs.PHASE_RUNNING, "attempts": owner.attempt, "workerPod": owner.pod,
                         "workerUid": owner.uid, "rolledBack": False, "updated": stamp(now)})


def worker_lost(job: Job, now: datetime.datetime, *, owner: Owner, message: str, retryable: bool,
                default_attempts: int) -> Patch | None:
    """The owner's Pod failed or vanished: another attempt while allowed, else FAILED at its step."""
    if not job.owned_by(owner):
        return None
    allowed = job.max_attempts or default_attempts
    if job.committing:  # the metadata service may hold it: neither retry (twice) nor roll back
        return checked(job, {**progress(jobs.FAILED, job.task, 0.0, now, (
            f"{message}; the metadata service may already have accepted transaction {job.job_id}, so its files "
            "are kept and it is not retried: check the metadata service before uploading again")),
            "phase": jobs.PHASE_FAILED, "finishedAt": stamp(now)})
    if retryable and job.attempts < allowed:
        return checked(job, {"phase": jobs.PHASE_STAGED, "updated": stamp(now),
                             "exception": f"attempt {job.attempts} failed: {message}"})
    text = f"{message} (after {job.attempts} attempts)" if retryable else message
    return checked(job, {**progress(jobs.FAILED, job.task, 0.0, now, text), "phase": jobs.PHASE_FAILED,
                         "finishedAt": stamp(now)})


def operator_failed(job: Job, now: datetime.datetime, *, phase: str, message: str) -> Patch | None:
    """A limit passed in `phase` (start timeout, Pod never ran): FAILED at the job's step."""
    if job.phase != phase or job.failed or job.complete or job.deleting:
        return None
    return checked(job, {**progress(jobs.FAILED, job.task, 0.0, now, message), "phase": jobs.PHASE_FAILED,
                         "finishedAt": stamp(now)})


def manual_failure_honoured(job: Job, now: datetime.datetime) -> Patch | None:
    """An administrator failed the job: it becomes final as written; state, task, percent and
    exception stay exactly the administrator's."""
    if not job.manual_failure:
        return None
    return checked(job, {"phase": jobs.PHASE_FAILED, "complete": True, "finishedAt": stamp(now)})


def rolled_back(job: Job, now: datetime.datetime) -> Patch | None:
    """Recorded after the operator removed what the job's attempts wrote (no worker can write)."""
    if not job.needs_rollback:
        return None
    return checked(job, {"rolledBack": True, "rolledBackAt": stamp(now)})


# --- the worker (every transition fenced by its owner identity) ------------------------------
def step(job: Job, now: datetime.datetime, *, owner: Owner, task: str, percent: float, **extra: Any) -> Patch | None:
    if not job.owned_by(owner):
        return None
    return checked(job, {**progress(jobs.OK, task, min(float(percent), 100.0), now), **extra})


def heartbeat(job: Job, now: datetime.datetime, *, owner: Owner) -> Patch | None:
    """Proof of life between steps; the operator waits for it to age before trusting a Pod is gone."""
    return {"heartbeat": stamp(now)} if job.owned_by(owner) else None


def committing(job: Job, now: datetime.datetime, *, owner: Owner) -> Patch | None:
    """Written before the transaction goes to the metadata service: from here on, never roll back."""
    return checked(job, {"committing": True, "updated": stamp(now)}) if job.owned_by(owner) else None


def succeeded(job: Job, now: datetime.datetime, *, owner: Owner, **extra: Any) -> Patch | None:
    if not job.owned_by(owner):
        return None
    return checked(job, {**progress(jobs.OK, jobs.INGEST_METADATA, 100.0, now), "phase": jobs.PHASE_SUCCEEDED,
                         "committed": True, "finishedAt": stamp(now), **extra})


def committed_anyway(job: Job, now: datetime.datetime) -> Patch | None:
    """The metadata service accepted the transaction after the worker lost the job: the truth is
    recorded (so nothing rolls it back) without touching anyone's state/task/exception."""
    if job.status.get("committed"):
        return None
    return {"committed": True}


def bundle_failed(job: Job, now: datetime.datetime, *, owner: Owner, task: str, message: str,
                  problems: Sequence[Mapping[str, str]] = ()) -> Patch | None:
    """The bundle's fault, found by its worker, which rolled back its own writes first.

    `problems`: every file at fault (file, reason, detail), kept as `status.problems`."""
    if not job.owned_by(owner):
        return None
    listed = {"problems": [dict(problem) for problem in problems]} if problems else {}
    return checked(job, {**progress(jobs.FAILED, task, 0.0, now, message), "phase": jobs.PHASE_FAILED,
                         "finishedAt": stamp(now), "rolledBack": True, "rolledBackAt": stamp(now), **listed})


# --- IngestCMD -------------------------------------------------------------------------------
def admin_fields(job: Job, now: datetime.datetime, *, fields: Mapping[str, Any]) -> Patch | None:
    """`IngestCMD job`: exactly the fields given, `complete` derived; the operator does the rest."""
    if not fields:
        return None
    merged = {**job.status, **fields}
    view = Job.of({"status": merged})
    complete = view.failed or is_complete(view.state, view.task, view.percent)
    return {**fields, "complete": complete, "updated": stamp(now)}


def cancel(job: Job, now: datetime.datetime, *, reason: str) -> Patch | None:
    """`IngestCMD cancel`: an administrator's FAILED at the job's current step."""
    if job.complete:
        return None
    return {"state": jobs.FAILED, "exception": reason, "taskPercent": 0.0, "complete": True, "updated": stamp(now)}


def retry(job: Job, now: datetime.datetime, *, default_attempts: int) -> Patch | None:
    """`IngestCMD retry`: a FAILED job runs again from its staged data, with fresh attempts. A job
    the metadata service may hold is not sent twice; one whose staged data retention removed has
    nothing to run from."""
    if not job.failed or job.committing or job.deleting or job.staged_removed:
        return None
    return checked(job, {**progress(jobs.OK, jobs.UPLOADING, 100.0, now), "phase": jobs.PHASE_STAGED,
                         "maxAttempts": job.attempts + default_attempts})
