"""Job ids and file ids: unique across replicas and restarts, never reused.

A counter lives in a ConfigMap (`ingest-ids`, one key per sequence). Reserving ids is a
compare-and-swap on that ConfigMap: read `next`, write `next + n` with the read resourceVersion;
a 409 means another replica won the race, so read again. A block that a replica reserved and
never used is simply skipped: gaps are allowed, reuse never is.
"""
from __future__ import annotations

import functools
import threading
import time
from typing import Final

import kubernetes
from kubernetes.client.exceptions import ApiException

from ingest.kube import retrying

# The first use of CoreV1Api imports a very large module, holding the interpreter for seconds on a
# busy node; paid here, at start-up, it cannot stall a worker's heartbeat in the middle of a job.
kubernetes.client.CoreV1Api  # noqa: B018

COUNTER_CONFIGMAP: Final = "ingest-ids"
JOB_IDS: Final = "job-ids"
FILE_IDS: Final = "file-ids"


def reserve(client: kubernetes.client.ApiClient, namespace: str, sequence: str, count: int) -> int:
    """Reserve `count` consecutive ids of `sequence`; returns the first. Ids start at 1."""
    core = kubernetes.client.CoreV1Api(client)
    for attempt in range(100):
        try:
            config_map = retrying(lambda: core.read_namespaced_config_map(COUNTER_CONFIGMAP, namespace))
        except ApiException as error:
            if error.status != 404:
                raise
            body = kubernetes.client.V1ConfigMap(
                metadata=kubernetes.client.V1ObjectMeta(name=COUNTER_CONFIGMAP), data={sequence: str(1 + count)}
            )
            try:
                retrying(functools.partial(core.create_namespaced_config_map, namespace, body))
                return 1
            except ApiException as conflict:
                if conflict.status != 409:
                    raise
                continue
        version = config_map.metadata.resource_version if config_map.metadata else None
        if not version:  # without it the write below would not be a compare-and-swap
            raise RuntimeError(f"ConfigMap {COUNTER_CONFIGMAP} was read without a resourceVersion")
        data = dict(config_map.data or {})
        first = int(data.get(sequence, "1"))
        data[sequence] = str(first + count)
        patch = {"metadata": {"resourceVersion": version}, "data": data}
        try:
            retrying(functools.partial(core.patch_namespaced_config_map, COUNTER_CONFIGMAP, namespace, patch))
            return first
        except ApiException as error:
            if error.status != 409:
                raise
            time.sleep(min(0.2, 0.002 * 2**attempt))
    raise RuntimeError(f"could not reserve {sequence} ids: the counter kept changing")


class BlockAllocator:
    """Hands out ids one at a time from blocks reserved `block` at a time (one per API replica)."""

    def __init__(self, client: kubernetes.client.ApiClient, namespace: str, sequence: str, block: int) -> None:
        self.client = client
        self.namespace = namespace
        self.sequence = sequence
        self.block = block
        self._next = 0
        self._end = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            if self._next >= self._end:
                self._next = reserve(self.client, self.namespace, self.sequence, self.block)
                self._end = self._next + self.block
            value = self._next
            self._next += 1
            return value
