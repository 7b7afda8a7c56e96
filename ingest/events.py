"""Kubernetes Events on IngestJobs, so `kubectl describe ingestjob` tells a job's story.

Posted by the operator (steps, workers, retention) and by workers (a /move source left in place)."""
from __future__ import annotations

import logging
from typing import Any

import kubernetes

from ingest import jobs

log = logging.getLogger(__name__)


def post(client: kubernetes.client.ApiClient, job: dict[str, Any], reason: str, message: str, *, warning: bool = False,
         component: str = "ingest-operator") -> None:
    meta = job["metadata"]
    stamp = jobs.rfc3339(jobs.now())
    body = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": jobs.API_VERSION, "kind": jobs.KIND, "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        kubernetes.client.CoreV1Api(client).create_namespaced_event(meta["namespace"], body)
    except Exception as error:  # an event is a courtesy; never let it break reconciliation
        log.warning("could not post event %s on %s: %s", reason, meta["name"], error)
