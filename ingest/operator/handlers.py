"""kopf registrations: which events reach the reconciler. The logic lives in `reconcile.py`.

Only `on.event` handlers and a sweeper task: the reconciler is level-triggered, so it needs no
per-handler progress kept in the objects (which kopf would otherwise write as annotations on every
job) and it cannot be confused by a missed or repeated event.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from ingest import jobs, kube, logs, metrics
from ingest.config import Settings
from ingest.operator.podspec import POOL_WORKER, WORKER
from ingest.operator.reconcile import Reconciler
from ingest.operator.sweeper import sweep, sweep_finished
from ingest.storage import Storage

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 5.0
RETENTION_INTERVAL = 300.0  # finished jobs age out over days; one that changes is reconciled at once
_state: dict[str, Any] = {}


def reconciler() -> Reconciler:
    return _state["reconciler"]


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
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
    settings.networking.request_timeout = 60
    config = Settings.from_env()
    if "stop_metrics" not in _state:  # kopf retries a failed start-up: the port is bound once
        _state["stop_metrics"] = metrics.serve_operator(config.operator_metrics_port)
    storage = metrics.instrument_object_store(Storage(config))
    await asyncio.to_thread(storage.ensure_buckets)
    _state["reconciler"] = Reconciler(config, metrics.instrument_kubernetes(kube.api_client()), storage)
    await asyncio.to_thread(_state["reconciler"].pool.sync)
    _state["sweeper"] = asyncio.create_task(sweep_forever())


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    task = _state.get("sweeper")
    if task:
        task.cancel()
    stop_metrics = _state.pop("stop_metrics", None)
    if stop_metrics:
        stop_metrics()


async def sweep_forever() -> None:
    next_retention = 0.0
    while True:
        await asyncio.sleep(SWEEP_INTERVAL)
        try:
            await asyncio.to_thread(sweep, reconciler())
            if time.monotonic() >= next_retention:
                next_retention = time.monotonic() + RETENTION_INTERVAL
                await asyncio.to_thread(sweep_finished, reconciler())
        except Exception:
            log.exception("sweep failed; trying again in %s s", SWEEP_INTERVAL)


@kopf.on.event(jobs.GROUP, jobs.VERSION, jobs.PLURAL)
def ingest_job_event(event: dict[str, Any], body: kopf.Body, **_: Any) -> None:
    name = body["metadata"]["name"]
    with logs.job(logs.job_id_of_object(name)):
        if event.get("type") == "DELETED":
            reconciler().forget(name)
            metrics.JOB_EVENTS.forget(name)
            return
        job = dict(body)
        metrics.JOB_EVENTS.observe(job)
        reconciler().job_changed(job)


@kopf.on.event("", "v1", "pods", labels={jobs.COMPONENT_LABEL: WORKER})
def worker_pod_event(event: dict[str, Any], body: kopf.Body, **_: Any) -> None:
    with logs.job(logs.job_id_of_object(body["metadata"]["name"])):
        reconciler().pod_changed(dict(body), deleted=event.get("type") == "DELETED")


@kopf.on.event("", "v1", "pods", labels={jobs.COMPONENT_LABEL: POOL_WORKER})
def pool_pod_event(event: dict[str, Any], body: kopf.Body, **_: Any) -> None:
    reconciler().pool.pod_changed(dict(body), deleted=event.get("type") == "DELETED")
