"""The sweeper: what no event announces - limits passing, Pods vanishing while nobody watched,
a rollback that failed and must be tried again, retention running out.

Every few seconds it runs the reconciler over the jobs the watch has shown (no listing: the cost
is a pass over memory, plus API calls only where something is due). One job that cannot be read
or reconciled is logged and skipped; it never stops the sweep for the others.

Finished jobs with no Pods left are not in memory (`Reconciler.settle`), and kopf does not watch
them (handlers.py); a change to one arrives on `finished.FinishedWatch`. Every few minutes
`sweep_finished` reads them page by page (`fieldSelector=status.complete=true`, `limit`) for
retention and for whatever that watch missed, so the pass costs one page of memory however many
jobs are retained.
"""
from __future__ import annotations

import logging
from typing import Any

from ingest import jobs, logs
from ingest.operator.finished import FINISHED
from ingest.operator.reconcile import Reconciler

log = logging.getLogger(__name__)


def sweep(reconciler: Reconciler) -> None:
    for name in list(reconciler.known):
        with logs.job(logs.job_id_of_object(name)):
            try:
                reconciler.reconcile(name)
            except Exception:
                log.exception("job %s: reconcile failed; trying again on the next sweep", name)
    try:
        reconciler.pool.scale()
    except Exception:
        log.exception("could not scale the pool; trying again on the next sweep")


PAGE_SIZE = 500


def sweep_finished(reconciler: Reconciler) -> None:
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"field_selector": FINISHED, "limit": PAGE_SIZE}
        if token:
            kwargs["_continue"] = token
        page: Any = reconciler.store.custom.list_namespaced_custom_object(
            jobs.GROUP, jobs.VERSION, reconciler.settings.namespace, jobs.PLURAL, **kwargs)
        for body in page.get("items", []):
            name = body["metadata"]["name"]
            if name in reconciler.known:
                continue  # the watch's copy is at least as new
            with logs.job(logs.job_id_of_object(name)):
                try:
                    reconciler.known[name] = body
                    reconciler.reconcile(name)
                except Exception:
                    log.exception("job %s: retention failed; trying again on the next pass", name)
                finally:
                    reconciler.settle(name)
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return
