"""Faults under load: many clients upload while workers, the operator, the API and the object
store are killed or stopped; then every job must have ended in a known state, nothing lost.

`python -m benchmarks.reliability` (make reliability) starts its own local stack in the default
worker mode (pool), runs 50 clients uploading 200 bundles and prints the figures the README's
Reliability section quotes. Bundles up to POOL_MAX_BUNDLE_BYTES go to the warm pool workers, the
others (a 2 MB file among theirs: about half) to a worker Pod each, so worker kills hit both: a pool
worker is SIGKILLed while it holds a job (its other jobs die with it), a job's own worker Pod
process likewise. All along, `tests.integration.writers.Writers` checks that no job ever has two
live writers. The test suite runs a short version against its session stack
(tests/integration/test_reliability.py).
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
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from minio import Minio
from minio.error import S3Error

from ingest.kube import JobStore, api_client
from ingest.local.launcher import Stack, parse_ports
from tests.integration.bundles import bundle
from tests.integration.writers import Writers, job_pod_pids, pid_of

POOL_MAX_BUNDLE_BYTES = 1_000_000  # this run's INGEST_POOL_MAX_BUNDLE_BYTES: both kinds of worker get jobs


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
    two_writers: list[str] = dataclasses.field(default_factory=list)
    by_pool: int = 0  # jobs whose last attempt ran in a pool worker
    retried: int = 0  # jobs that needed more than one attempt
    faults: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [
            f"jobs submitted          {self.submitted}",
            f"  accepted (job id)     {self.accepted}",
        ]
        out += [f"  refused: {count} x {reason}" for reason, count in self.refused.most_common()]
        out += [
            f"jobs completed          {self.completed}   "
            f"({self.by_pool} in pool workers, {self.retried} after a retry)",
            f"jobs failed             {sum(self.failed.values())}",
        ]
        out += [f"  {count} x {reason}" for reason, count in self.failed.most_common()]
        out += [
            f"jobs stuck              {len(self.stuck)}   (must be 0)",
            f"duplicate job ids       {self.duplicate_job_ids}   (must be 0)",
            f"duplicate file ids      {self.duplicate_file_ids}   (must be 0)",
            f"orphan archive objects  {len(self.orphan_objects)}   (must be 0)",
            f"completed jobs whose files differ from the bundle  {len(self.mismatched_jobs)}   (must be 0)",
            f"moments a job had two live writers  {len(self.two_writers)}   "
            f"(must be 0){': ' if self.two_writers else ''}"
            + "; ".join(self.two_writers[:5]),
            f"faults injected         {len(self.faults)}: {'; '.join(self.faults)}",
            f"wall time               {self.seconds:.0f} s",
        ]
        return out

    @property
    def clean(self) -> bool:
        return not (self.stuck or self.duplicate_job_ids or self.duplicate_file_ids or self.orphan_objects
                    or self.mismatched_jobs or self.two_writers)


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

    def __init__(self, stack: Stack, writers: Writers, duration: float, outage: float, rng: random.Random) -> None:
        self.stack = stack
        self.writers = writers
        self.duration = duration
        self.outage = outage
        self.rng = rng
        self.done: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="faults", daemon=True)

    def _kill_one(self, find: Callable[[], dict[str, int]], what: str) -> None:
        """SIGKILL one of the processes `find` returns ({label: pid}), waiting up to 10 s for one."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.stop.is_set():
            found = find()
            if found:
                label = self.rng.choice(sorted(found))
                try:
                    os.kill(found[label], signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.done.append(f"{what} killed (SIGKILL) {label}")
                return
            time.sleep(0.05)

    def kill_pool_worker(self) -> None:
        """A pool worker in the middle of a job: every job it holds dies with it."""

        def busy() -> dict[str, int]:
            held = self.writers.holding()
            pids = {pod: pid_of(self.stack, pod) for pod in held}
            return {f"{pod} holding {len(held[pod])} job(s)": pid for pod, pid in pids.items() if pid is not None}

        self._kill_one(busy, "pool worker")

    def kill_job_pod(self) -> None:
        """The process of a large bundle's own worker Pod."""
        self._kill_one(lambda: {f"of {job}": pid for job, pods in job_pod_pids(self.stack).items()
                                for pid in pods.values()}, "worker Pod process")

    def run(self) -> None:
        schedule = [
            (0.10, self.kill_pool_worker),
            (0.15, self.kill_job_pod),
            (0.25, lambda: self._restart("operator")),
            (0.30, self.kill_pool_worker),
            (0.35, self.kill_job_pod),
            (0.45, lambda: self._restart("api")),
            (0.50, self.kill_pool_worker),
            (0.55, self.kill_job_pod),
            (0.60, self._object_store_outage),
            (0.70, self._kube_api_outage),
            (0.80, self.kill_pool_worker),
            (0.85, self.kill_job_pod),
            (0.90, self.kill_pool_worker),
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

    with Writers(stack, store) as writers:
        injector = Faults(stack, writers, duration, outage, random.Random(seed)) if faults else None
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
    report.two_writers = writers.overlaps
    ok_ids: set[int] = set()
    for job in ours:
        status = job.get("status") or {}
        job_id = int(job["spec"]["jobId"])
        if status.get("state") == "OK" and status.get("complete"):
            report.completed += 1
            report.by_pool += bool(status.get("claimedBy"))
            report.retried += int(status.get("attempts") or 0) > 1
            ok_ids.add(job_id)
        elif status.get("state") == "FAILED":
            report.failed[f"{status.get('task')}: {reason_of(status.get('exception') or '')}"] += 1
        else:
            report.stuck.append(job_id)

    file_ids: list[int] = []
    run_ids = {int(job["spec"]["jobId"]) for job in ours}
    stored: dict[int, set[str]] = collections.defaultdict(set)  # job id -> its files in the archive
    for item in s3.list_objects("ingest-archive", recursive=True):
        head = re.split(r"[/.]", item.object_name, maxsplit=1)[0]  # N/<file> and N.metadata.json
        if head.isdigit() and int(head) in run_ids and int(head) not in ok_ids:
            report.orphan_objects.append(item.object_name)
        elif head.isdigit() and "/" in item.object_name:
            stored[int(head)].add(item.object_name.split("/", 1)[1])
    for job_id in sorted(ok_ids):
        try:
            document = json.loads(s3.get_object("ingest-archive", f"{job_id}.metadata.json").read())
            file_ids += [entry["_id"] for entry in document if entry.get("destinationTable") == "Files"]
            sample = known.get(job_id)
            if sample is None:
                continue  # accepted, but its client lost the answer: its files are checked by id only
            if stored[job_id] != set(sample.files):  # a file missing, or one left over from a killed attempt
                raise ValueError(f"archive holds {sorted(stored[job_id] ^ set(sample.files))[:3]} unexpectedly")
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
    env = {"INGEST_UPLOAD_STALL_SECONDS": "15", "INGEST_WORKER_ATTEMPTS": "4",
           "INGEST_POOL_MAX_BUNDLE_BYTES": str(POOL_MAX_BUNDLE_BYTES)}
    stack = Stack(folder, ports=parse_ports("auto"), env=env)
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
