"""The sweeper: what no event announces - limits passing, Pods vanishing while nobody watched,
a rollback that failed and must be tried again, retention running out.

Every few seconds it runs the reconciler over the jobs the watch has shown (no listing: the cost
is a pass over memory, plus API calls only where something is due). One job that cannot be read
or reconciled is logged and skipped; it never stops the sweep for the others.
"""
from __future__ import annotations

import logging

from ingest import logs
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
