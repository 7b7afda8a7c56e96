"""Who may write a job right now, seen from outside: the invariant "never two live writers".

A job has two kinds of writer. A worker Pod of its own runs as a process whose pid the pod runner
keeps in `<stack>/pods/pids/ingest-<id>-worker-<n>.pid`. A pool worker serves many jobs, so its
process says nothing about which job it writes: its claim does. A pool worker holds a job from the
version of the job that names it in `claimedBy` until it lets go - only it ever removes
`claimedBy`, only it records the job Succeeded, and the operator records `rolledBack` only once no
pool worker of the job can run - or until its process dies. A claim passed straight from one pool
worker to another (no version without `claimedBy` between) leaves the first one holding: that is
the case the fencing exists for, and what this monitor reports if both processes run.

`Writers` follows every version of the namespace's IngestJobs on a watch (a re-list after a broken
watch forgets who held what before it, so it never reports a hand-over it did not see) and
samples the processes every `interval` seconds; a stopped process (SIGSTOP: a frozen node) writes
nothing and is not counted. The reliability benchmark and the lifecycle driver both use it.
"""
from __future__ import annotations

import collections
import logging
import threading
from pathlib import Path
from typing import Any

from ingest import jobs
from ingest.kube import JobStore
from ingest.local.launcher import Stack
from tests.integration.workers import alive, stopped

log = logging.getLogger(__name__)


def pid_folder(stack: Stack) -> Path:
    return Path(stack.directory) / "pods" / "pids"


def pid_of(stack: Stack, pod: str) -> int | None:
    """The pid of a Pod's live process, or None once it has ended."""
    try:
        pid = int((pid_folder(stack) / f"{pod}.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def pool_worker_pids(stack: Stack) -> dict[str, int]:
    """Live pool worker processes of this stack: {Pod name: pid}."""
    found = {}
    for path in pid_folder(stack).glob("ingest-pool-*.pid"):
        pid = pid_of(stack, path.stem)
        if pid is not None:
            found[path.stem] = pid
    return found


def job_pod_pids(stack: Stack) -> dict[str, dict[str, int]]:
    """Live worker processes of jobs' own Pods: {job name: {Pod name: pid}}."""
    found: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for path in pid_folder(stack).glob("ingest-*-worker-*.pid"):
        pid = pid_of(stack, path.stem)
        if pid is not None:
            found[path.stem.rsplit("-worker-", 1)[0]][path.stem] = pid
    return found


class Writers:
    def __init__(self, stack: Stack, store: JobStore, *, interval: float = 0.05) -> None:
        self.stack = stack
        self.store = store
        self.interval = interval
        self.holders: dict[str, set[str]] = collections.defaultdict(set)  # job name -> pool worker Pods
        self.overlaps: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._follow, name="writers-watch", daemon=True),
                        threading.Thread(target=self._sample, name="writers-sample", daemon=True)]

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=70)

    # --- claims ---------------------------------------------------------------------------
    def seen(self, job: dict[str, Any], *, relisted: bool = False) -> None:
        name = job["metadata"]["name"]
        status = job.get("status") or {}
        claim = jobs.pool_claim(status)
        with self.lock:
            held = self.holders[name]
            if relisted or claim is None or status.get("phase") == jobs.PHASE_SUCCEEDED or status.get("rolledBack"):
                held.clear()  # let go (or, after a re-list, unknown: never report what was not seen)
            if claim and status.get("phase") != jobs.PHASE_SUCCEEDED and not status.get("rolledBack"):
                held.add(claim)
            if not held:
                self.holders.pop(name, None)

    def holding(self) -> dict[str, set[str]]:
        """Pool worker Pod -> the jobs it holds now."""
        with self.lock:
            out: dict[str, set[str]] = collections.defaultdict(set)
            for name, pods in self.holders.items():
                for pod in pods:
                    out[pod].add(name)
            return dict(out)

    def _follow(self) -> None:
        while not self.stopping.is_set():
            try:
                page: Any = self.store.custom.list_namespaced_custom_object(
                    jobs.GROUP, jobs.VERSION, self.store.namespace, jobs.PLURAL)
                for job in page.get("items", []):
                    self.seen(job, relisted=True)
                version = page["metadata"]["resourceVersion"]
                while not self.stopping.is_set():
                    for event in self.store.watch(version, timeout_seconds=2):
                        if event["type"] == "ERROR":
                            raise RuntimeError(str(event["object"]))
                        version = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self.seen(event["object"])
                        if self.stopping.is_set():
                            return
            except Exception as error:  # the API may be down (a fault of the run): list again
                log.debug("writers watch restarting: %s", error)
                self.stopping.wait(0.5)

    # --- processes ------------------------------------------------------------------------
    def live_writers(self) -> dict[str, list[str]]:
        """Job name -> the writers whose processes run now (not stopped)."""
        pool = pool_worker_pids(self.stack)
        live: dict[str, list[str]] = collections.defaultdict(list)
        for job, pods in job_pod_pids(self.stack).items():
            live[job] += [f"{pod} (pid {pid})" for pod, pid in pods.items() if not stopped(pid)]
        for pod, held in self.holding().items():
            pid = pool.get(pod)
            if pid is not None and not stopped(pid):
                for job in held:
                    live[job].append(f"pool worker {pod} (pid {pid})")
        return live

    def _sample(self) -> None:
        while not self.stopping.wait(self.interval):
            for job, writers in self.live_writers().items():
                if len(writers) > 1:
                    with self.lock:
                        self.overlaps.append(f"{job}: {', '.join(sorted(writers))}")
