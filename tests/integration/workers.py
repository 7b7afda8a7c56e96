"""Worker processes of the local stack, found by the pid files the pod runner keeps (never by
name: other stacks on this machine run workers of the same job ids), paused and resumed at will."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ingest.kube import JobStore
from ingest.local.launcher import Stack


def pid_files(stack: Stack, job_id: int) -> dict[str, Path]:
    folder = Path(stack.directory) / "pods" / "pids"
    return {path.stem: path for path in folder.glob(f"ingest-{job_id}-worker-*.pid")}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return False


def worker_processes(stack: Stack, job_id: int) -> dict[str, int]:
    """Live worker processes of a job: {Pod name: pid}."""
    found = {}
    for pod, path in pid_files(stack, job_id).items():
        try:
            pid = int(path.read_text())
        except (OSError, ValueError):
            continue
        if alive(pid):
            found[pod] = pid
    return found


def pause_at(stack: Stack, job_store: JobStore, job_id: int, task: str = "ingest files", timeout: float = 60) -> int:
    """SIGSTOP the job's worker at a moment its job reports `task`; returns its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes = worker_processes(stack, job_id)
        if processes:
            pid = next(iter(processes.values()))
            os.kill(pid, signal.SIGSTOP)
            if (job_store.get(f"ingest-{job_id}")["status"] or {}).get("task") == task:
                return pid
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError(f"the worker of job {job_id} never reached {task}")


def resume(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass
