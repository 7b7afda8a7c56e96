"""kopf registrations: which events reach the reconciler. The logic lives in `reconcile.py`.

Only `on.event` handlers and sweeper tasks: the reconciler is level-triggered, so it needs no
per-handler progress kept in the objects (which kopf would otherwise write as annotations on every
job) and it cannot be confused by a missed or repeated event.

The watches are filtered by the API server, so start-up costs what is in flight, not what is
retained: IngestJobs by `status.complete!=true` (a job that finishes leaves the selection as a
DELETED event; one GET tells that from a real deletion), worker Pods by their component label.
Finished jobs are followed by `finished.FinishedWatch` and read page by page for retention.
What the process holds lives in kopf's `memo`: the reconciler, the sweeper tasks, the watch.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import kopf

from ingest import jobs, kube, logs, metrics
from ingest.config import Settings
from ingest.operator.finished import UNFINISHED, FinishedWatch, selectable
from ingest.operator.podspec import POOL_WORKER, WORKER
from ingest.operator.reconcile import Reconciler
from ingest.operator.sweeper import RETENTION_DELAY, RETENTION_PAGE_INTERVAL, Retention, sweep
from ingest.storage import Storage

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 5.0
LIST_CHUNK = 500


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    # kopf logs every handled event at INFO; with one status patch a second per job that drowns
    # the operator's own lines.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Our handlers name group, version and plural exactly; without scanning kopf needs no
    # cluster-wide list/watch of namespaces and CRDs, so the operator's Role stays namespaced.
    settings.scanning.disabled = True
    settings.execution.max_workers = 16
    settings.watching.server_timeout = 300
    settings.watching.chunk_size = LIST_CHUNK
    settings.watching.label_selectors["", "v1", "pods"] = f"{jobs.COMPONENT_LABEL} in ({WORKER},{POOL_WORKER})"
    settings.networking.request_timeout = 60
    config = Settings.from_env()
    if "stop_metrics" not in memo:  # kopf retries a failed start-up: the port is bound once
        memo.stop_metrics = metrics.serve_operator(config.operator_metrics_port)
    storage = metrics.instrument_object_store(Storage(config))
    await asyncio.to_thread(storage.ensure_buckets)
    reconciler = Reconciler(config, metrics.instrument_kubernetes(kube.api_client()), storage)
    memo.reconciler = reconciler
    await asyncio.to_thread(reconciler.pool.sync)
    if await asyncio.to_thread(selectable, reconciler.store):
        settings.watching.field_selectors[jobs.GROUP, jobs.VERSION, jobs.PLURAL] = UNFINISHED
        memo.finished = FinishedWatch(reconciler.store, changed=lambda body: job_seen(reconciler, body),
                                      gone=lambda name: job_gone(reconciler, name))
        memo.finished.start()
    else:
        log.warning("the API server cannot select IngestJobs on status.complete (Kubernetes < 1.31): "
                    "watching every job, finished ones included")
    memo.sweepers = [
        asyncio.create_task(every(SWEEP_INTERVAL, SWEEP_INTERVAL, lambda: sweep(reconciler), "sweep")),
        asyncio.create_task(every(RETENTION_DELAY, RETENTION_PAGE_INTERVAL, Retention(reconciler).step, "retention")),
    ]


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("sweepers", []):
        task.cancel()
    if memo.get("finished"):
        memo.finished.stop()
    stop_metrics = memo.pop("stop_metrics", None)
    if stop_metrics:
        stop_metrics()


async def every(delay: float, interval: float, work: Callable[[], None], what: str) -> None:
    """Run `work` in a thread after `delay`, then every `interval` seconds; a failure is logged."""
    await asyncio.sleep(delay)
    while True:
        try:
            await asyncio.to_thread(work)
        except Exception:
            log.exception("%s failed; trying again in %s s", what, interval)
        await asyncio.sleep(interval)


def job_seen(reconciler: Reconciler, body: dict[str, Any]) -> None:
    with logs.job(logs.job_id_of_object(body["metadata"]["name"])):
        job = dict(body)
        metrics.JOB_EVENTS.observe(job)
        reconciler.job_changed(job)


def job_gone(reconciler: Reconciler, name: str) -> None:
    reconciler.forget(name)
    metrics.JOB_EVENTS.forget(name)


@kopf.on.event(jobs.GROUP, jobs.VERSION, jobs.PLURAL)
def ingest_job_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler = memo.reconciler
    name = body["metadata"]["name"]
    if event.get("type") != "DELETED":
        job_seen(reconciler, body)
        return
    # Finished (it left the selection: release, podGC, a pending rollback still need it) or gone.
    with logs.job(logs.job_id_of_object(name)):
        fresh = reconciler.store.get(name)
    if fresh is None:
        job_gone(reconciler, name)
    else:
        job_seen(reconciler, fresh)


@kopf.on.event("", "v1", "pods", labels={jobs.COMPONENT_LABEL: WORKER})
def worker_pod_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    with logs.job(logs.job_id_of_object(body["metadata"]["name"])):
        memo.reconciler.pod_changed(dict(body), deleted=event.get("type") == "DELETED")


@kopf.on.event("", "v1", "pods", labels={jobs.COMPONENT_LABEL: POOL_WORKER})
def pool_pod_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.pool.pod_changed(dict(body), deleted=event.get("type") == "DELETED")
