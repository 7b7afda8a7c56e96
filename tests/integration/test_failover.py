"""Two operators on the local stack: one active (holding the Lease), one standby.

SIGKILL the active one while jobs are in flight: the standby takes over within the Lease time,
every job completes, and at no moment did both act. "Acting" is read from the Kubernetes API
emulator's request log: every request of an operator carries its identity in the User-Agent
(`pacifica-ingest/<HOSTNAME>_<suffix>`), so each write is attributed to the replica that made it.
"""
from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import kubernetes
import pytest

from ingest.kube import api_client
from ingest.local.launcher import Stack
from tests.integration.bundles import OWN_POD, bundle
from tests.integration.helpers import upload, wait_complete, wait_for

pytestmark = pytest.mark.stack

LEASE = "ingest-operator"  # the chart's name for release "ingest"
LEASE_SECONDS = 6
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Replica:
    def __init__(self, stack: Stack, name: str) -> None:
        self.name = name
        self.port = free_port()
        env = stack.process_env("operator") | {
            "HOSTNAME": name, "INGEST_LEADER_LEASE_SECONDS": str(LEASE_SECONDS), "INGEST_OPERATOR_METRICS_PORT": "0"}
        self.log_path = stack.directory / "logs" / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ingest.operator", "--liveness", f"http://127.0.0.1:{self.port}/healthz",
                 "--lease", LEASE],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=stack.directory)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        self.process.wait(timeout=30)


@pytest.fixture()
def replicas(stack: Stack) -> Iterator[dict[str, Replica]]:
    stack.stop("operator")
    started = {name: Replica(stack, name) for name in ("operator-a", "operator-b")}
    try:
        for replica in started.values():
            wait_for(replica.healthy, 60, f"{replica.name} healthy")
        yield started
    finally:
        for replica in started.values():
            if replica.process.poll() is None:
                replica.signal(signal.SIGTERM)  # a clean stop releases the Lease
        stack.start("operator")


def lease_holder(stack: Stack) -> str:
    coordination = kubernetes.client.CoordinationV1Api(api_client(config_file=str(stack.kubeconfig())))
    try:
        return coordination.read_namespaced_lease(LEASE, stack.namespace).spec.holder_identity or ""
    except kubernetes.client.ApiException:
        return ""


def writes_by(stack: Stack, since: str) -> dict[str, list[str]]:
    """Replica name -> times of its writes (Lease renewals excluded), from the request log."""
    log = httpx.get(f"{stack.kube_url}/_emulator/requests", timeout=30).json()["requests"]
    found: dict[str, list[str]] = {}
    for entry in log:
        agent = entry["userAgent"]
        if entry["time"] < since or entry["verb"] not in WRITES or entry["resource"] == "leases":
            continue
        if agent.startswith("pacifica-ingest/operator-"):
            found.setdefault(agent.split("/", 1)[1].split("_")[0], []).append(entry["time"])
    return found


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def test_the_standby_takes_over_from_a_killed_operator(stack: Stack, api: httpx.Client,
                                                       replicas: dict[str, Replica]) -> None:
    started = now()
    holder = wait_for(lambda: lease_holder(stack), 30, "a Lease holder")
    active = replicas[holder.split("_")[0]]
    standby = next(r for r in replicas.values() if r is not active)

    job_ids: list[int] = []
    for index in range(6):
        body, _ = bundle({f"failover/{index}/file.bin": os.urandom(256 * 1024)})
        job_ids.append(upload(api, body)["job_id"])
    # Let the active one make some decisions (start workers), then kill it mid-flight.
    wait_for(lambda: writes_by(stack, started).get(active.name), 30, f"{active.name} acting")
    active.signal(signal.SIGKILL)
    killed = time.monotonic()
    killed_at = now()

    new_holder = wait_for(lambda: (h := lease_holder(stack)) and not h.startswith(active.name) and h, 60,
                          "a new holder")
    took_over = time.monotonic() - killed
    assert new_holder.startswith(standby.name)
    assert took_over <= LEASE_SECONDS + 2, f"hand-over took {took_over:.1f} s (Lease {LEASE_SECONDS} s)"

    # A job uploaded after the hand-over needs the new holder to start its worker (a Pod of its
    # own: in pool mode the warm workers would take a small one without the operator).
    body, _ = bundle({"failover/after.bin": os.urandom(64 * 1024)}, extra_members=OWN_POD)
    job_ids.append(upload(api, body)["job_id"])
    for job_id in job_ids:
        document = wait_complete(api, job_id, timeout=180)
        assert document["state"] == "OK", document

    writes = writes_by(stack, started)
    assert writes.get(active.name) and writes.get(standby.name), writes
    assert max(writes[active.name]) < killed_at, "the killed operator wrote after its death"
    assert min(writes[standby.name]) > killed_at, "the standby acted while the active operator was alive"
    assert standby.process.poll() is None and standby.healthy()
    print(f"\nhand-over in {took_over:.1f} s; {len(writes[active.name])} writes by {active.name} before the kill, "
          f"{len(writes[standby.name])} by {standby.name} after")


def test_a_standby_writes_nothing(stack: Stack, api: httpx.Client, replicas: dict[str, Replica]) -> None:
    started = now()
    holder = wait_for(lambda: lease_holder(stack), 30, "a Lease holder")
    body, _ = bundle({"failover/standby.txt": b"standby"})
    job_id = upload(api, body)["job_id"]
    assert wait_complete(api, job_id, timeout=120)["state"] == "OK"
    writes = writes_by(stack, started)
    assert set(writes) == {holder.split("_")[0]}, writes
    assert all(r.healthy() for r in replicas.values())
