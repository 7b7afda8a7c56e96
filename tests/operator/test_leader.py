"""Leader election on a Lease, against the Kubernetes API emulator (real HTTP, real CAS).

Short Leases (3 s: renewals every 0.4 s, the holder gives up after 1.8 s) keep the tests quick;
the proportions are those of the default 15 s.
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from ingest.kube import api_client
from ingest.operator.leader import LeaderElector, Timing
from tests.local.conftest import Emulator, write_kubeconfig

LEASE = 3.0


@pytest.fixture()
def make(emulator: Emulator) -> Iterator[Any]:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    admin = api_client(config_file=str(emulator.kubeconfig))
    kubernetes.client.CoreV1Api(admin).create_namespace({"metadata": {"name": namespace}})
    electors: list[LeaderElector] = []

    def elector(identity: str, url: str | None = None) -> LeaderElector:
        config = emulator.kubeconfig if url is None else write_kubeconfig(
            emulator.folder / f"kubeconfig-{uuid.uuid4().hex[:6]}", url, "admin")
        made = LeaderElector(api_client(config_file=str(config), retries=0), namespace=namespace,
                             name="ingest-operator", identity=identity, timing=Timing.for_lease(LEASE))
        electors.append(made)
        return made

    yield elector
    for made in electors:
        made.stop()


def keep_in_background(elector: LeaderElector) -> dict[str, float]:
    lost: dict[str, float] = {}
    threading.Thread(target=elector.keep, args=(lambda: lost.setdefault("at", time.monotonic()),),
                     daemon=True).start()
    return lost


class Partition:
    """A TCP proxy in front of the emulator that can be cut: then it swallows every byte both ways,
    so requests hang until their timeout, as across a network partition."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.cut = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not self.cut.is_set():
                    sink.sendall(data)

    def close(self) -> None:
        self.listener.close()


def holder(elector: LeaderElector) -> str:
    return elector.api.read_namespaced_lease(elector.name, elector.namespace).spec.holder_identity


def test_default_timing_is_safe_and_matches_client_go() -> None:
    timing = Timing.for_lease(15)
    assert (timing.lease, timing.renew_deadline, timing.retry) == (15, 9, 2)
    with pytest.raises(ValueError):
        Timing(lease=10, renew_deadline=9, retry=2)


def test_one_holder_while_it_renews(make: Any) -> None:
    a, b = make("a"), make("b")
    assert a.acquire() and a.leading()
    lost = keep_in_background(a)
    deadline = time.monotonic() + 2.5 * LEASE
    while time.monotonic() < deadline:
        assert not b.try_acquire_or_renew()
        time.sleep(0.2)
    assert holder(a) == "a" and a.leading() and not lost
    lease = a.api.read_namespaced_lease(a.name, a.namespace).spec
    assert lease.lease_duration_seconds == 3 and lease.lease_transitions == 0


def test_a_dead_holder_is_replaced_within_the_lease(make: Any) -> None:
    a, b = make("a"), make("b")
    assert a.acquire()
    assert not b.try_acquire_or_renew()  # b has seen a's record
    died = time.monotonic()  # a stops renewing, as after SIGKILL
    assert b.acquire()
    took = time.monotonic() - died
    assert LEASE - 2 * b.timing.retry <= took <= LEASE + 1.0, took
    assert holder(b) == "b"
    assert b.api.read_namespaced_lease(b.name, b.namespace).spec.lease_transitions == 1


def test_a_partitioned_holder_stops_before_anyone_else_starts(make: Any, emulator: Emulator) -> None:
    partition = Partition(emulator.port)
    a, b = make("a", url=partition.url), make("b")
    assert a.acquire()
    lost = keep_in_background(a)
    assert not b.try_acquire_or_renew()
    partition.cut.set()  # a's requests now hang: it can neither renew nor learn anything
    assert b.acquire()
    acquired = time.monotonic()
    assert "at" in lost and lost["at"] < acquired, "the old holder was still acting when the new one started"
    assert not a.leading()


def test_a_released_lease_is_taken_at_once(make: Any) -> None:
    a, b = make("a"), make("b")
    assert a.acquire()
    assert not b.try_acquire_or_renew()
    a.release()
    started = time.monotonic()
    assert b.acquire()
    assert time.monotonic() - started < LEASE / 2


def test_racing_standbys_produce_exactly_one_holder(make: Any) -> None:
    a = make("a")
    assert a.acquire()
    a.release()
    racers = [make(f"r{n}") for n in range(4)]
    results: list[bool] = []
    barrier = threading.Barrier(len(racers))

    def race(elector: LeaderElector) -> None:
        barrier.wait()
        results.append(elector.try_acquire_or_renew())

    threads = [threading.Thread(target=race, args=(r,)) for r in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert holder(a) == next(r.identity for r in racers if r.leading())
