"""The IngestJob vocabulary every component speaks: names, labels, tasks, states, the state document.

The IngestJob resource is the only job state (Kubernetes is the database). Its status mirrors the
HTTP state document of Pacifica's ingest service, camelCase in the resource and snake_case on the
wire, so this module is the single place where one is turned into the other.
"""
from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any, Final

GROUP: Final = "ingest.pacifica.org"
VERSION: Final = "v1"
PLURAL: Final = "ingestjobs"
# Field selectors on the CRD's selectable `status.complete` (Kubernetes 1.31+): the API's cache and the
# operator's watches read the jobs in flight without the finished ones a facility retains.
FINISHED_SELECTOR: Final = "status.complete=true"
UNFINISHED_SELECTOR: Final = "status.complete!=true"
KIND: Final = "IngestJob"
API_VERSION: Final = f"{GROUP}/{VERSION}"
JOB_ID_LABEL: Final = f"{GROUP}/job-id"
COMPONENT_LABEL: Final = f"{GROUP}/component"
FINALIZER: Final = f"{GROUP}/staged-cleanup"
STAGED_REMOVED_ANNOTATION: Final = f"{GROUP}/staged-removed"  # set when retention removed a job's staged data
# Set by the API when it stages a bundle small enough for the warm pool (INGEST_POOL_MAX_BUNDLE_BYTES);
# removed by the operator once the job is complete, so the pool's label-selected watch stays as
# small as the queue, however many jobs pile up.
POOL_LABEL: Final = f"{GROUP}/pool"
POOL_WAITING: Final = "queued"

# Pacifica's states and tasks: exact spelling and case, clients compare these strings.
OK: Final = "OK"
FAILED: Final = "FAILED"
UPLOADING: Final = "UPLOADING"
OPEN_TAR: Final = "open tar"
LOAD_METADATA: Final = "load metadata"
POLICY_VALIDATION: Final = "Policy Validation"
INGEST_FILES: Final = "ingest files"
MOVE_FILES: Final = "move files"
INGEST_METADATA: Final = "ingest metadata"

UPLOAD_TASKS: Final = (UPLOADING, OPEN_TAR, LOAD_METADATA, POLICY_VALIDATION, INGEST_FILES, INGEST_METADATA)
MOVE_TASKS: Final = (UPLOADING, LOAD_METADATA, POLICY_VALIDATION, MOVE_FILES, INGEST_METADATA)

# The operator's life cycle of a job, kept apart from Pacifica's state/task pair.
PHASE_UPLOADING: Final = "Uploading"
PHASE_STAGED: Final = "Staged"
PHASE_RUNNING: Final = "Running"
PHASE_SUCCEEDED: Final = "Succeeded"
PHASE_FAILED: Final = "Failed"

# RFC 3339 date-time (section 5.6): what `format: date-time` admits on a real API server.
RFC3339: Final = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")

OPERATION_UPLOAD: Final = "upload"
OPERATION_MOVE: Final = "move"


def routed_to_pool(job: Mapping[str, Any]) -> bool:
    """The API sent this job to the warm pool workers rather than to a worker Pod of its own."""
    return ((job.get("metadata") or {}).get("labels") or {}).get(POOL_LABEL) == POOL_WAITING


def pool_claim(status: Mapping[str, Any]) -> str | None:
    """The pool worker Pod holding the job's claim (lease), if any."""
    return status.get("claimedBy") or None


def job_name(job_id: int) -> str:
    """The IngestJob object name for a job id."""
    return f"ingest-{job_id}"


def job_id_of(name: str) -> int | None:
    """The job id an object name stands for, or None for a name we did not make."""
    prefix, _, number = name.partition("-")
    if prefix != "ingest" or not number.isdigit():
        return None
    return int(number)


def staged_bundle_key(job_id: int) -> str:
    """Where an uploaded bundle waits in the staging bucket."""
    return f"bundles/{job_id}.tar"


def staged_index_key(job_id: int) -> str:
    """The tar index the API recorded while the bundle streamed in (member offsets, metadata.txt)."""
    return f"bundles/{job_id}.index.json"


def staged_move_key(job_id: int) -> str:
    """Where a /move document waits in the staging bucket."""
    return f"moves/{job_id}.json"


def planned_keys_key(job_id: int) -> str:
    """The archive keys a worker is about to write, recorded first so anyone can roll them back."""
    return f"jobs/{job_id}/planned.json"


def staged_keys(job_id: int) -> tuple[str, ...]:
    """Everything a job may keep in the staging bucket."""
    return (staged_bundle_key(job_id), staged_index_key(job_id), staged_move_key(job_id), planned_keys_key(job_id))


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object) -> datetime.datetime | None:
    """Any RFC 3339 time Kubernetes accepts (fractions, `Z` or an offset, `t`/`z`), in UTC; None for
    anything else. A time someone patched into a status never raises: the reader decides."""
    if not isinstance(text, str) or not RFC3339.fullmatch(text.strip()):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(datetime.UTC)


def wire_time(text: str | None) -> str:
    """Pacifica's time format: UTC `YYYY-MM-DD HH:MM:SS`."""
    moment = parse_time(text)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def is_complete(state: str, task: str, percent: float) -> bool:
    """Pacifica's rule: a job is complete when it failed or `ingest metadata` reached 100."""
    return state == FAILED or (task == INGEST_METADATA and percent >= 100.0)


def progress(state: str, task: str, percent: float, exception: str = "", *,
             at: datetime.datetime | None = None) -> dict[str, Any]:
    """The Pacifica fields of a job at (state, task, percent), with `complete` derived."""
    return {
        "state": state,
        "task": task,
        "taskPercent": float(percent),
        "complete": is_complete(state, task, float(percent)),
        "exception": exception,
        "updated": rfc3339(at or now()),
    }


def initial_status() -> dict[str, Any]:
    """The status a job is created with: OK / UPLOADING / 0, as Pacifica writes before reading the body."""
    stamp = rfc3339(now())
    return {
        **progress(OK, UPLOADING, 0.0),
        "created": stamp,
        "phase": PHASE_UPLOADING,
        "attempts": 0,
        "uploadedBytes": 0,
    }


def new_job(*, job_id: int, operation: str, user: str | None, staged_bucket: str, staged_key: str) -> dict[str, Any]:
    """The IngestJob body the API creates for a new job."""
    spec: dict[str, Any] = {
        "jobId": job_id,
        "operation": operation,
        "staged": {"bucket": staged_bucket, "key": staged_key},
    }
    if user:
        spec["user"] = user
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": job_name(job_id),
            "labels": {JOB_ID_LABEL: str(job_id)},
            "finalizers": [FINALIZER],
        },
        "spec": spec,
        "status": initial_status(),
    }


def format_percent(value: Any) -> str:
    """task_percent travels as a string, as upstream: "0.0", "100.0", "42.5"."""
    try:
        return str(round(float(value), 2))
    except (TypeError, ValueError):
        return "0.0"


def state_document(job: Mapping[str, Any]) -> dict[str, Any]:
    """The HTTP state document of a job: exactly Pacifica's keys and types."""
    given_spec, given_status = job.get("spec"), job.get("status")
    spec: Mapping[str, Any] = given_spec if isinstance(given_spec, Mapping) else {}
    status: Mapping[str, Any] = given_status if isinstance(given_status, Mapping) else {}
    state = str(status.get("state") or OK)
    task = str(status.get("task") or UPLOADING)
    percent = status.get("taskPercent", 0.0)
    try:
        number = float(percent or 0.0)
    except (TypeError, ValueError):
        number = 0.0
    # An administrator's `kubectl patch` may set FAILED without `complete`: Pacifica's rule decides.
    complete = bool(status.get("complete")) or is_complete(state, task, number)
    created = status.get("created") or (job.get("metadata") or {}).get("creationTimestamp")
    return {
        "job_id": int(spec.get("jobId") or job_id_of((job.get("metadata") or {}).get("name", "")) or 0),
        "state": state,
        "task": task,
        "task_percent": format_percent(percent),
        "complete": bool(complete),
        "updated": wire_time(status.get("updated")) or wire_time(created),
        "created": wire_time(created),
        "exception": str(status.get("exception") or ""),
    }
