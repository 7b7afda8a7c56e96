"""Faults under load: many clients upload while worker Pods, the operator, the API and the object
store are killed or stopped; then every job must have ended in a known state, nothing lost.

`python -m benchmarks.reliability` (make reliability) starts its own local stack, runs 50 clients
uploading 200 bundles and prints the figures the README's Reliability section quotes. The test
suite runs a short version against its session stack (tests/integration/test_reliability.py).
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from minio import Minio
from minio.error import S3Error

from ingest.kube import JobStore, api_client
from ingest.local.launcher import Stack, parse_ports
from tests.integration.bundles import bundle


@dataclasses.dataclass
class Sample:
    """One bundle a client sends, and what the archive must hold if its job completes."""

    body: bytes
    files: dict[str, str]  # relative path -> sha256


@dataclasses.dataclass
class Report:
    submitted: int = 0
    accepted: int = 0
    refused: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    completed: int = 0
    failed: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    stuck: list[int] = dataclasses.field(default_factory=list)
    duplicate_job_ids: int = 0
    duplicate_file_ids: int = 0
    orphan_objects: list[str] = dataclasses.field(default_factory=list)
    mismatched_jobs: list[int] = dataclasses.field(default_factory=list)
    faults: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [
            f"jobs submitted          {self.submitted}",
            f"  accepted (job id)     {self.accepted}",
        ]
        out += [f"  refused: {count} x {reason}" for reason, count in self.refused.most_common()]
        out += [
            f"jobs completed          {self.completed}",
            f"jobs failed             {sum(self.failed.values())}",
        ]
        out += [f"  {count} x {reason}" for reason, count in self.failed.most_common()]
        out += [
            f"jobs stuck              {len(self.stuck)}   (must be 0)",
            f"duplicate job ids       {self.duplicate_job_ids}   (must be 0)",
            f"duplicate file ids      {self.duplicate_file_ids}   (must be 0)",
            f"orphan archive objects  {len(self.orphan_objects)}   (must be 0)",
            f"completed jobs whose files differ from the bundle  {len(self.mismatched_jobs)}   (must be 0)",
            f"faults injected         {len(self.faults)}: {'; '.join(self.faults)}",
            f"wall time               {self.seconds:.0f} s",
        ]
        return out

    @property
    def clean(self) -> bool:
        return not (self.stuck or self.duplicate_job_ids or self.duplicate_file_ids or self.orphan_objects or self.mismatched_jobs)


def make_samples(count: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for index in range(count):
        files = {}
        for number in range(rng.randint(1, 5)):
            size = rng.choice([0, 10, 4096, 65536, 700_000]) if number else rng.choice([1024, 2_000_000])
            files[f"r{index}/f{number}.bin"] = rng.randbytes(size)
        body, _ = bundle(files)
        samples.append(Sample(body, {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}))
    return samples


def reason_of(exception: str) -> str:
    """Group failure messages by their cause, without job-specific numbers and names."""
    return exception.split("\n")[0][:90]


class Faults:
    """Injects the faults of a run on a schedule, from its own thread."""

    def __init__(self, stack: Stack, duration: float, outage: float, rng: random.Random) -> None:
        self.stack = stack
        self.duration = duration
        self.outage = outage
        self.rng = rng
        self.done: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="faults", daemon=True)

    def kill_a_worker(self) -> None:
        """SIGKILL a running worker process (waiting up to 10 s for one to exist)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.stop.is_set():
            pids = subprocess.run(["pgrep", "-f", "ingest.worker"], capture_output=True, text=True).stdout.split()
            pids = [pid for pid in pids if self._belongs_to_stack(int(pid))]
            if pids:
                os.kill(int(self.rng.choice(pids)), signal.SIGKILL)
                self.done.append("worker Pod process killed")
                return
            time.sleep(0.05)

    def _belongs_to_stack(self, pid: int) -> bool:
        try:
            return str(self.stack.directory).encode() in Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False

    def run(self) -> None:
        schedule = [
            (0.15, self.kill_a_worker),
            (0.25, lambda: self._restart("operator")),
            (0.35, self.kill_a_worker),
            (0.45, lambda: self._restart("api")),
            (0.55, self.kill_a_worker),
            (0.60, self._object_store_outage),
            (0.70, self._kube_api_outage),
            (0.80, self.kill_a_worker),
        ]
        start = time.monotonic()
        for fraction, action in schedule:
            while time.monotonic() - start < fraction * self.duration:
                if self.stop.wait(0.05):
                    return
            action()

    def _restart(self, component: str) -> None:
        self.stack.kill(component)
        time.sleep(0.5)
        self.stack.start(component, timeout=120)
        self.done.append(f"{component} killed (SIGKILL) and restarted")

    def _kube_api_outage(self) -> None:
        """The Kubernetes API server goes away for a moment (stopped cleanly: it is the database)."""
        self.stack.stop("kubeapi")
        time.sleep(3)
        self.stack.start("kubeapi")
        self.done.append("Kubernetes API stopped for 3 s")

    def _object_store_outage(self) -> None:
        if self.stack.external:
            return
        store = self.stack.object_store()
        store.stop()
        time.sleep(self.outage)
        store.start()
        self.done.append(f"object store stopped for {self.outage:g} s")


def run(stack: Stack, *, clients: int, bundles: int, faults: bool, duration: float = 60.0, outage: float = 10.0,
        seed: int = 7, wait_seconds: float = 300.0) -> Report:
    report = Report()
    started = time.monotonic()
    samples = make_samples(bundles, seed)
    s3_config = stack.s3()
    s3 = Minio(s3_config["endpoint"], access_key=s3_config["access_key"], secret_key=s3_config["secret_key"],
               secure=s3_config["secure"], region="us-east-1")
    store = JobStore(api_client(config_file=str(stack.kubeconfig())), stack.namespace)
    existing = {job["metadata"]["name"] for job in store.list()}
    known: dict[int, Sample] = {}
    lock = threading.Lock()

    def client(position: int) -> None:
        # Submissions are spread over the fault schedule, so faults hit uploads in flight.
        time.sleep(max(0.0, started + 0.9 * duration * position / bundles - time.monotonic()))
        sample = samples[position]
        with lock:
            report.submitted += 1
        for attempt in range(3):  # a client retries what was refused before it had a job id
            try:
                response = httpx.post(f"{stack.api_url}/upload", content=sample.body, timeout=120,
                                      headers={"Content-Type": "application/octet-stream"})
            except httpx.HTTPError as error:
                reason = f"connection: {type(error).__name__}"
            else:
                if response.status_code == 200:
                    with lock:
                        report.accepted += 1
                        if response.json()["job_id"] in known:
                            report.duplicate_job_ids += 1
                        known[response.json()["job_id"]] = sample
                    return
                reason = f"HTTP {response.status_code}"
            with lock:
                report.refused[reason] += 1
            time.sleep(1 + attempt)

    injector = Faults(stack, duration, outage, random.Random(seed)) if faults else None
    if injector:
        injector.thread.start()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(len(samples))))
    if injector:
        injector.thread.join()
        report.faults = injector.done

    # Every job of this run - including ones whose client never learnt the id - must end.
    deadline = time.monotonic() + wait_seconds
    while True:
        ours = [job for job in store.list() if job["metadata"]["name"] not in existing]
        pending = [job for job in ours if not (job.get("status") or {}).get("complete")
                   and (job.get("status") or {}).get("state") == "OK"]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1)
    ok_ids: set[int] = set()
    for job in ours:
        status = job.get("status") or {}
        job_id = int(job["spec"]["jobId"])
        if status.get("state") == "OK" and status.get("complete"):
            report.completed += 1
            ok_ids.add(job_id)
        elif status.get("state") == "FAILED":
            report.failed[f"{status.get('task')}: {reason_of(status.get('exception') or '')}"] += 1
        else:
            report.stuck.append(job_id)

    file_ids: list[int] = []
    run_ids = {int(job["spec"]["jobId"]) for job in ours}
    for item in s3.list_objects("ingest-archive", recursive=True):
        head = re.split(r"[/.]", item.object_name, maxsplit=1)[0]  # N/<file> and N.metadata.json
        if head.isdigit() and int(head) in run_ids and int(head) not in ok_ids:
            report.orphan_objects.append(item.object_name)
    for job_id in sorted(ok_ids):
        try:
            document = json.loads(s3.get_object("ingest-archive", f"{job_id}.metadata.json").read())
            file_ids += [entry["_id"] for entry in document if entry.get("destinationTable") == "Files"]
            sample = known.get(job_id)
            if sample is None:
                continue  # accepted, but its client lost the answer: its files are checked by id only
            for path, digest in sample.files.items():
                data = s3.get_object("ingest-archive", f"{job_id}/{path}").read()
                if hashlib.sha256(data).hexdigest() != digest:
                    raise ValueError(f"{path} differs")
        except (S3Error, ValueError):
            report.mismatched_jobs.append(job_id)
    report.duplicate_file_ids = len(file_ids) - len(set(file_ids))
    report.seconds = time.monotonic() - started
    return report


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--bundles", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds over which the faults are spread")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds the object store is stopped")
    parser.add_argument("--no-faults", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ingest-reliability-"))
    stack = Stack(folder, ports=parse_ports("auto"), env={"INGEST_UPLOAD_STALL_SECONDS": "15", "INGEST_WORKER_ATTEMPTS": "4"})
    try:
        stack.up()
        report = run(stack, clients=args.clients, bundles=args.bundles, faults=not args.no_faults,
                     duration=args.duration, outage=args.outage)
    finally:
        stack.down()
    print("\n".join(report.lines()))
    if report.clean:
        shutil.rmtree(folder, ignore_errors=True)
        return 0
    print(f"the stack's data and logs are kept in {folder} for a look")
    return 1


if __name__ == "__main__":
    sys.exit(main())
