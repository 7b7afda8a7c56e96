"""Fixtures for the local stack's tests: the Kubernetes API emulator as a real subprocess.

One emulator serves the whole session (start-up is the slow part); tests isolate themselves by
working in a namespace of their own (the ``namespace`` fixture). Clients reach it exactly as
they would reach a cluster: a kubeconfig with a bearer token (the token is the user name).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_kubeconfig(path: pathlib.Path, url: str, user: str, namespace: str = "default") -> pathlib.Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": url}}],
        "users": [{"name": user, "user": {"token": user}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user,
                                                   "namespace": namespace}}],
        "current-context": "local",
    }))
    return path


@dataclasses.dataclass
class Emulator:
    url: str
    port: int
    folder: pathlib.Path
    process: subprocess.Popen[bytes]
    kubeconfig: pathlib.Path

    def kubeconfig_for(self, user: str, namespace: str = "default") -> pathlib.Path:
        return write_kubeconfig(self.folder / f"kubeconfig-{user}-{namespace}", self.url, user,
                                namespace)

    def http(self, method: str, path: str, body: Any = None, *, user: str = "admin",
             content_type: str = "application/json", headers: dict[str, str] | None = None,
             ) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {user}")
        request.add_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def start_emulator(folder: pathlib.Path, *extra: str, port: int | None = None) -> Emulator:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(folder / f"kubeapi-{port}.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest.local.kubeapi", "--host", "127.0.0.1", "--port", str(port),
         "--crds", str(CRDS), "--bookmark-interval", "1", *extra],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url + "/version", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError((folder / f"kubeapi-{port}.log").read_text()) from None
            time.sleep(0.05)
    kubeconfig = write_kubeconfig(folder / "kubeconfig", url, "admin")
    return Emulator(url, port, folder, process, kubeconfig)


def stop_emulator(emulator: Emulator) -> int:
    emulator.process.send_signal(signal.SIGTERM)
    try:
        return emulator.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        emulator.process.kill()
        emulator.process.wait()
        raise


@pytest.fixture(scope="session")
def kubeapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = start_emulator(tmp_path_factory.mktemp("kubeapi"))
    yield emulator
    stop_emulator(emulator)


@pytest.fixture(scope="session")
def api_client(kubeapi: Emulator) -> Iterator[Any]:
    import kubernetes

    configuration = kubernetes.client.Configuration()
    configuration.host = kubeapi.url
    configuration.api_key = {"authorization": "admin"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    with kubernetes.client.ApiClient(configuration) as client:
        yield client


@pytest.fixture()
def namespace(api_client: Any) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards."""
    import kubernetes

    name = f"t-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except kubernetes.client.ApiException:
        pass


@dataclasses.dataclass
class Kubectl:
    kubeconfig: pathlib.Path
    cache: pathlib.Path

    def __call__(self, *args: str, check: bool = True, timeout: float = 30,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.cache)}
        result = subprocess.run([str(KUBECTL), "--cache-dir", str(self.cache / "cache"), *args],
                                capture_output=True, text=True, timeout=timeout, env=env,
                                input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.cache)}
        return subprocess.Popen([str(KUBECTL), "--cache-dir", str(self.cache / "cache"), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)


@pytest.fixture()
def kubectl(kubeapi: Emulator, tmp_path: pathlib.Path) -> Kubectl:
    return Kubectl(kubeapi.kubeconfig, tmp_path)


def make_ingestjob(name: str, job_id: int = 7, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "ingest.pacifica.org/v1", "kind": "IngestJob",
            "metadata": {"name": name, "labels": {"ingest.pacifica.org/job-id": str(job_id)}},
            "spec": {"jobId": job_id, "operation": "upload", **spec}}


@pytest.fixture()
def ingestjob() -> Any:
    """Build an IngestJob body: ``ingestjob("ingest-7", 7)``."""
    return make_ingestjob


class Jobs:
    """IngestJobs through the official client, in one namespace."""

    GROUP, VERSION, PLURAL = "ingest.pacifica.org", "v1", "ingestjobs"

    def __init__(self, api_client: Any, namespace: str) -> None:
        import kubernetes

        self.api = kubernetes.client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def _args(self) -> tuple[str, str, str, str]:
        return (self.GROUP, self.VERSION, self.namespace, self.PLURAL)

    def create(self, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return self.api.create_namespaced_custom_object(*self._args(), body, **kw)

    def get(self, name: str) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(*self._args(), name)

    def list(self, **kw: Any) -> dict[str, Any]:
        return self.api.list_namespaced_custom_object(*self._args(), **kw)

    def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.api.replace_namespaced_custom_object(*self._args(), name, body)

    def patch(self, name: str, body: Any, **kw: Any) -> dict[str, Any]:
        return self.api.patch_namespaced_custom_object(*self._args(), name, body, **kw)

    def patch_status(self, name: str, body: Any) -> dict[str, Any]:
        return self.api.patch_namespaced_custom_object_status(*self._args(), name, body)

    def replace_status(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.api.replace_namespaced_custom_object_status(*self._args(), name, body)

    def delete(self, name: str, **kw: Any) -> dict[str, Any]:
        return self.api.delete_namespaced_custom_object(*self._args(), name, **kw)


@pytest.fixture()
def jobs(api_client: Any, namespace: str) -> Jobs:
    return Jobs(api_client, namespace)


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


@pytest.fixture()
def eventually() -> Any:
    return wait_for


@pytest.fixture()
def spawn_emulator(tmp_path: pathlib.Path) -> Iterator[Any]:
    """Start extra emulators (own flags, restarts); all stopped at the end of the test."""
    started: list[Emulator] = []

    def spawn(*extra: str, port: int | None = None) -> Emulator:
        emulator = start_emulator(tmp_path, *extra, port=port)
        started.append(emulator)
        return emulator

    spawn.stop = stop_emulator  # type: ignore[attr-defined]
    yield spawn
    for emulator in started:
        if emulator.process.poll() is None:
            stop_emulator(emulator)
