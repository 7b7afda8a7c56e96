"""The "two live writers" monitor itself can fail: against the Kubernetes API emulator and real
processes standing in for workers (their pids in pid files, as the pod runner keeps them)."""
from __future__ import annotations

import signal
import subprocess
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest import jobs
from ingest.kube import JobStore
from tests.emulated import emulator_for_module, job_store_in_new_namespace
from tests.integration.helpers import wait_for
from tests.integration.writers import Writers
from tests.local.conftest import Emulator


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from emulator_for_module(tmp_path_factory, "writers")


@pytest.fixture()
def store(emulator: Emulator) -> JobStore:
    return job_store_in_new_namespace(emulator)


@pytest.fixture()
def processes(tmp_path: Path) -> Iterator[Any]:
    """`start(pod)` runs a process for a Pod and writes its pid file; all are ended afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    (tmp_path / "pods" / "pids").mkdir(parents=True)

    def start(pod: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(["sleep", "60"])
        started.append(process)
        (tmp_path / "pods" / "pids" / f"{pod}.pid").write_text(str(process.pid))
        return process

    start.stack = types.SimpleNamespace(directory=tmp_path)  # type: ignore[attr-defined]
    yield start
    for process in started:
        process.kill()
        process.wait()


def claim(store: JobStore, job_id: int, holder: str | None) -> None:
    store.update_status(jobs.job_name(job_id), lambda job: {"claimedBy": holder})


def new_job(store: JobStore, job_id: int) -> None:
    store.create(jobs.new_job(job_id=job_id, operation="upload", user=None, staged_bucket="s", staged_key="k"))


def test_two_running_worker_pods_of_one_job_are_reported_a_stopped_one_is_not(processes: Any, store: JobStore) -> None:
    processes("ingest-7-worker-1")
    second = processes("ingest-7-worker-2")
    with Writers(processes.stack, store) as writers:
        wait_for(lambda: writers.overlaps, timeout=10, what="the overlap to be seen")
        assert "ingest-7:" in writers.overlaps[0]
        second.send_signal(signal.SIGSTOP)  # a frozen node writes nothing
        time.sleep(0.3)
        seen = len(writers.overlaps)
        time.sleep(0.5)
        assert len(writers.overlaps) == seen


def test_a_claim_passed_on_while_its_holder_runs_is_reported(processes: Any, store: JobStore) -> None:
    first = processes("ingest-pool-a")
    processes("ingest-pool-b")
    new_job(store, 8)
    with Writers(processes.stack, store) as writers:
        claim(store, 8, "ingest-pool-a")
        wait_for(lambda: writers.holding() == {"ingest-pool-a": {"ingest-8"}}, timeout=10, what="the first claim")
        assert writers.overlaps == []
        claim(store, 8, "ingest-pool-b")  # straight from a to b: a never let go and still runs
        wait_for(lambda: writers.overlaps, timeout=10, what="the overlap to be seen")
        assert "pool worker ingest-pool-a" in writers.overlaps[0] and "pool worker ingest-pool-b" in writers.overlaps[0]
        first.kill()
        first.wait()
        time.sleep(0.3)
        seen = len(writers.overlaps)
        time.sleep(0.5)
        assert len(writers.overlaps) == seen  # a dead holder writes nothing


def test_a_claim_let_go_before_the_next_one_is_no_overlap(processes: Any, store: JobStore) -> None:
    processes("ingest-pool-c")
    processes("ingest-pool-d")
    new_job(store, 9)
    with Writers(processes.stack, store) as writers:
        claim(store, 9, "ingest-pool-c")
        wait_for(lambda: writers.holding(), timeout=10, what="the first claim")
        claim(store, 9, None)  # the holder lets go (gave the job back, or lost it and said so)
        claim(store, 9, "ingest-pool-d")
        wait_for(lambda: writers.holding() == {"ingest-pool-d": {"ingest-9"}}, timeout=10, what="the second claim")
        time.sleep(0.5)
    assert writers.overlaps == []
