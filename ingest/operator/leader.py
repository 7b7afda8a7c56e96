"""One active operator among replicas: leader election on a `coordination.k8s.io/v1` Lease.

The same protocol as client-go's leaderelection, on the same object, with the same safety
argument:

- The Lease names its holder and is renewed every `retry` seconds. Every write to it (create,
  take-over, renewal, release) is a compare-and-swap on its resourceVersion, so two replicas
  can never both believe a write of theirs made them the holder.
- A standby never trusts another machine's clock: it notes, on its own monotonic clock, when it
  last saw the Lease *change*, and takes it over only when it has not changed for
  `lease - retry` seconds.
- The holder counts from the moment it *sent* its last successful renewal, and stops acting when
  `renew_deadline` has passed since then without another one. Because
  `renew_deadline + retry < lease - retry`, a holder that cannot renew (dead, partitioned, or
  just slow) has stopped before any standby can take the Lease; the operator enforces "stopped"
  by exiting the process (`on_lost`), as client-go controllers do, and every job write stays a
  compare-and-swap on the job, so even a write already in flight cannot undo a newer decision.

With the default 15 s Lease: renewals every 2 s, the holder gives up after 9 s without one, and a
standby takes over at most 15 s after the holder's last renewal (so within 15 s of a SIGKILL).
A holder that shuts down cleanly releases the Lease, and a standby takes over within one `retry`.
"""
from __future__ import annotations

import atexit
import dataclasses
import datetime
import http.server
import json
import logging
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


def micro_time(moment: datetime.datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 with exactly six fractional digits, in UTC."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass(frozen=True)
class Timing:
    """The three durations of leader election, derived from the Lease duration."""

    lease: float
    renew_deadline: float
    retry: float

    @classmethod
    def for_lease(cls, lease: float) -> Timing:
        lease = max(2.0, float(lease))
        retry = lease / 7.5  # 2 s for 15 s, as client-go's defaults
        return cls(lease=lease, renew_deadline=lease - 3 * retry, retry=retry)

    def __post_init__(self) -> None:
        if not self.renew_deadline + self.retry < self.lease - self.retry:
            raise ValueError(f"unsafe leader election timing: {self}")


@dataclasses.dataclass
class Observed:
    """The Lease as last read, and when (our monotonic clock) it last changed."""

    record: tuple[str, str, str] = ("", "", "")  # holder, renewTime, resourceVersion
    changed_at: float = 0.0


class LeaderElector:
    """Acquire and keep the Lease `name` in `namespace` for `identity`."""

    def __init__(self, client: kubernetes.client.ApiClient, *, namespace: str, name: str, identity: str,
                 timing: Timing, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = kubernetes.client.CoordinationV1Api(client)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.clock = clock
        self.observed = Observed()
        self.renewed_at: float | None = None  # when our last successful write was sent
        self._stop = threading.Event()

    # --- one attempt ---------------------------------------------------------------------------
    def _read(self, timeout: float) -> dict[str, Any] | None:
        try:
            response: Any = self.api.read_namespaced_lease(self.name, self.namespace, _preload_content=False,
                                                      _request_timeout=timeout)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(dict[str, Any], json.loads(response.data))

    def _spec(self, previous: dict[str, Any] | None, now: datetime.datetime) -> dict[str, Any]:
        spec = dict((previous or {}).get("spec") or {})
        taking = spec.get("holderIdentity") != self.identity
        spec.update({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.timing.lease)),
            "renewTime": micro_time(now),
        })
        if taking:
            spec["acquireTime"] = micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if previous else 0)
        return spec

    def try_acquire_or_renew(self) -> bool:
        """One read and at most one compare-and-swap write; True when we hold the Lease now."""
        sent = self.clock()
        timeout = max(0.5, self.timing.retry)
        wall = datetime.datetime.now(datetime.UTC)
        try:
            lease = self._read(timeout)
            if lease is None:
                body: Any = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                             "metadata": {"name": self.name, "namespace": self.namespace},
                             "spec": self._spec(None, wall)}
                self.api.create_namespaced_lease(self.namespace, body, _request_timeout=timeout)
                self._won(sent, first=True)
                return True
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            record = (holder, str(spec.get("renewTime") or ""), str(lease["metadata"].get("resourceVersion")))
            if record != self.observed.record:
                self.observed = Observed(record, sent)  # the change happened before this read began
            if holder and holder != self.identity:
                if sent - self.observed.changed_at < self.timing.lease - self.timing.retry:
                    return False  # held, and renewed recently enough as far as we can tell
                log.warning("leader election: the Lease %s of %s has not been renewed for %.1f s; taking it over",
                            self.name, holder, sent - self.observed.changed_at)
            replacement: Any = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                "metadata": {**lease["metadata"]}, "spec": self._spec(lease, wall)}
            self.api.replace_namespaced_lease(self.name, self.namespace, replacement, _request_timeout=timeout)
            self._won(sent, first=holder != self.identity)
            return True
        except ApiException as error:
            if error.status == 409:
                return False  # somebody else wrote first
            log.warning("leader election: Lease %s: %s %s", self.name, error.status, error.reason)
            return False
        except Exception as error:  # unreachable API server: the same as a failed renewal
            log.warning("leader election: Lease %s: %s", self.name, type(error).__name__)
            return False

    def _won(self, sent: float, *, first: bool) -> None:
        self.renewed_at = sent
        if first:
            log.info("leader election: %s now holds the Lease %s", self.identity, self.name)

    def leading(self) -> bool:
        """Still inside the renew deadline of our last successful renewal."""
        return self.renewed_at is not None and self.clock() - self.renewed_at < self.timing.renew_deadline

    # --- loops ---------------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Block until this replica holds the Lease (True) or `stop()` was called (False)."""
        while not self._stop.is_set():
            if self.try_acquire_or_renew():
                return True
            self._stop.wait(self.timing.retry)
        return False

    def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew every `retry` seconds; call `on_lost` once the renew deadline passes without one."""
        while not self._stop.is_set():
            deadline = (self.renewed_at or 0.0) + self.timing.renew_deadline
            if self.clock() >= deadline:
                log.error("leader election: %s could not renew the Lease %s within %.1f s; stopping",
                          self.identity, self.name, self.timing.renew_deadline)
                self.renewed_at = None
                on_lost()
                return
            self._stop.wait(min(self.timing.retry, max(0.0, deadline - self.clock())))
            if not self._stop.is_set() and not self.try_acquire_or_renew():
                holder = self.observed.record[0]
                if holder and holder != self.identity:  # taken over: no reason to wait for the deadline
                    log.error("leader election: the Lease %s is now held by %s; stopping", self.name, holder)
                    self.renewed_at = None
                    on_lost()
                    return

    def release(self) -> None:
        """Give the Lease up (clean shutdown), so a standby takes over within one `retry`."""
        self._stop.set()
        if self.renewed_at is None:
            return
        try:
            lease = self._read(self.timing.retry)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1,
                        "renewTime": micro_time(datetime.datetime.now(datetime.UTC))}
                released: Any = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                  "metadata": lease["metadata"], "spec": spec}
                self.api.replace_namespaced_lease(self.name, self.namespace, released,
                                                  _request_timeout=self.timing.retry)
                log.info("leader election: %s released the Lease %s", self.identity, self.name)
        except Exception as error:
            log.warning("leader election: could not release the Lease %s: %s", self.name, error)
        finally:
            self.renewed_at = None

    def stop(self) -> None:
        self._stop.set()


# --- running an operator process under the Lease ---------------------------------------------------
class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "standby"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _exit_now() -> None:
    """Lost the Lease: stop acting at once. Exiting is the one stop nothing can outlive."""
    sys.stderr.flush()
    os._exit(1)


def lead(client: kubernetes.client.ApiClient, *, namespace: str, name: str, identity: str,
         lease_seconds: float, liveness: str | None) -> LeaderElector:
    """Wait as a standby until this process holds the Lease, then keep it in the background.

    While waiting, the liveness URL answers 200 (a standby is healthy; the Deployment must not
    restart it); the port is freed before returning, for kopf's own liveness endpoint. The
    process exits when the Lease is lost, and releases the Lease when it ends normally.
    """
    elector = LeaderElector(client, namespace=namespace, name=name, identity=identity,
                            timing=Timing.for_lease(lease_seconds))
    server = None
    if liveness:
        url = urllib.parse.urlsplit(liveness)
        server = http.server.ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 8080), _Health)
        threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    log.info("leader election: %s waiting for the Lease %s/%s (lease %.0f s)", identity, namespace, name,
             elector.timing.lease)
    try:
        elector.acquire()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    threading.Thread(target=elector.keep, args=(_exit_now,), name="leader-lease", daemon=True).start()
    atexit.register(elector.release)
    return elector
