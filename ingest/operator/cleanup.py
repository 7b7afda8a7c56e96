"""What the operator removes, and when: rollback, a deleted job's release, worker Pods, expiry.

Rollback runs only when no worker Pod of the job can write any more (every Pod of the job, read
live, has terminated or is gone), so nothing lands in the archive after it; it is retried on every
pass until it succeeds and then recorded (`rolledBack` in status and a `RolledBack` Event). A job
whose transaction the metadata service may hold, or that succeeded, is never rolled back.

Worker Pods are collected like Argo's podGC: a succeeded job's at once, a failed job's after
INGEST_FAILED_POD_RETENTION_SECONDS (kept for `kubectl logs`).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException

from ingest import events, jobs, lifecycle
from ingest.lifecycle import Job
from ingest.operator.podspec import terminated
from ingest.storage import rollback

if TYPE_CHECKING:
    from ingest.operator.reconcile import Reconciler

log = logging.getLogger(__name__)
Body = dict[str, Any]


def roll_back(reconciler: Reconciler, name: str) -> bool:
    """Remove what the job's attempts wrote, once none can write; True when done (or not needed)."""
    body = reconciler.store.get(name)
    if not body:
        return True
    job = Job.of(body)
    if job.problems or not job.needs_rollback:
        return True
    if reconciler.writers(job):
        return False  # stop_unwanted asked them to stop; their Pods' deletion brings us back
    try:
        count = rollback(reconciler.storage, job.job_id)
    except Exception as error:  # the store is down: the next pass tries again
        log.warning("job %s: rollback failed, will retry: %s", name, error)
        events.post(reconciler.client, body, "RollbackFailed", f"rollback failed, will retry: {error}", warning=True)
        return False
    if job.deleting:
        return True
    _, written = reconciler.store.apply(name, lifecycle.rolled_back)
    if written:
        events.post(reconciler.client, body, "RolledBack",
                    f"no worker of the job can write any more; removed the {count} archive keys it planned")
    return True


def release(reconciler: Reconciler, job: Job, body: Body) -> None:
    """`kubectl delete`: stop the workers, roll back unless the job succeeded or is committed,
    remove the staged data, then let the object go (the finalizer is held until all that is done)."""
    if not roll_back(reconciler, job.name):
        for pod in reconciler.writers(job):
            if not pod["metadata"].get("deletionTimestamp"):
                reconciler.delete_pod(pod["metadata"]["name"])
        return
    reconciler.storage.remove(reconciler.storage.staging, jobs.staged_keys(job.job_id))
    finalizers = (body.get("metadata") or {}).get("finalizers") or []
    if jobs.FINALIZER not in finalizers:
        return
    position = finalizers.index(jobs.FINALIZER)
    patch = [
        {"op": "test", "path": f"/metadata/finalizers/{position}", "value": jobs.FINALIZER},
        {"op": "remove", "path": f"/metadata/finalizers/{position}"},
    ]
    try:
        reconciler.store.custom.patch_namespaced_custom_object(
            jobs.GROUP, jobs.VERSION, reconciler.settings.namespace, jobs.PLURAL, job.name, patch,
            _content_type="application/json-patch+json",
        )
    except ApiException as error:
        if error.status not in (404, 409, 422):
            raise
    log.info("job %s: deleted; workers gone, writes rolled back, staged data removed", job.job_id)


def collect_pods(reconciler: Reconciler, job: Job, pods: list[Body]) -> None:
    """podGC: a finished job's terminated worker Pods - at once if it succeeded, else after retention."""
    if not pods:
        return
    if job.phase == jobs.PHASE_FAILED:
        if lifecycle.seconds_since(job.finished) < reconciler.settings.failed_pod_retention_seconds:
            return
    for pod in pods:
        if terminated(pod) and not pod["metadata"].get("deletionTimestamp"):
            reconciler.delete_pod(pod["metadata"]["name"])


def expire(reconciler: Reconciler, job: Job, body: Body) -> None:
    """Retention: a failed job's staged bundle after INGEST_STAGED_RETENTION_SECONDS, the job itself
    after INGEST_JOB_RETENTION_DAYS (0 keeps jobs forever). Marked by an annotation, not by status,
    which stays exactly as the job (or its administrator) left it."""
    settings = reconciler.settings
    since = lifecycle.seconds_since(job.finished)
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if job.failed and jobs.STAGED_REMOVED_ANNOTATION not in annotations and since > settings.staged_retention_seconds:
        # Marked first, by compare-and-swap on the version read: a job retried since then keeps its
        # staged data (the write gets 409), and a retry after the mark is refused (lifecycle.retry).
        removed = {jobs.STAGED_REMOVED_ANNOTATION: jobs.rfc3339(jobs.now())}
        try:
            reconciler.store.patch(job.name, {"metadata": {"annotations": removed,
                                                           "resourceVersion": job.resource_version}})
        except ApiException as error:
            if error.status in (404, 409):
                return  # gone or changed: the next pass decides on what it reads then
            raise
        reconciler.storage.remove(reconciler.storage.staging, jobs.staged_keys(job.job_id))
        events.post(reconciler.client, body, "StagedRemoved",
                    f"staged data removed after {settings.staged_retention_seconds:g} s "
                    "(INGEST_STAGED_RETENTION_SECONDS)")
    if settings.job_retention_days > 0 and since > settings.job_retention_days * 86400:
        events.post(reconciler.client, body, "Expired",
                    f"deleting the finished job after {settings.job_retention_days:g} days (INGEST_JOB_RETENTION_DAYS)")
        reconciler.store.delete(job.name)
