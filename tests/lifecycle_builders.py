"""IngestJob bodies at a given point of the lifecycle, built by the lifecycle's own transitions
(so a test's job is one the service could have written), for the tests that run without a cluster."""
from __future__ import annotations

import datetime
from typing import Any

from ingest import jobs, lifecycle
from ingest.lifecycle import Job, Owner

NOW = datetime.datetime(2026, 11, 29, 12, 0, 0, tzinfo=datetime.UTC)
OWNER = Owner(1, "ingest-7-worker-1", "uid-1")


def body(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "ingest-7", "resourceVersion": "5"}, "spec": {"jobId": 7, "operation": "upload"},
            "status": status}


def apply(job: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    assert patch is not None
    return {**job, "status": {**job["status"], **patch}}


def uploading() -> dict[str, Any]:
    return body(**jobs.initial_status())


def staged() -> dict[str, Any]:
    return apply(uploading(), lifecycle.staged(Job.of(uploading()), NOW, size=10))


def running(owner: Owner = OWNER) -> dict[str, Any]:
    job = staged()
    return apply(job, lifecycle.worker_started(Job.of(job), NOW, owner=owner))
