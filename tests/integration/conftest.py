"""The local stack, started once for the integration tests, on free ports in a temporary folder.

It is the same `ingest-local` stack as `make run`: the Kubernetes API emulator, the S3 server, the
pod runner, the operator and the API, each a real process spoken to over real sockets.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from minio import Minio

from ingest.kube import JobStore, api_client
from ingest.local.launcher import Stack, parse_ports
from tests.integration.policy import PolicyServer

# Short limits so the tests of stuck jobs run in seconds; everything else is the default.
TEST_SETTINGS = {
    "INGEST_UPLOAD_STALL_SECONDS": "6",
    "INGEST_LEASE_SECONDS": "6",
    "INGEST_WORKER_ATTEMPTS": "2",
    "INGEST_JOB_ID_BLOCK": "5",
    # Bundle limits small enough that tests/integration/test_hostile.py can pass each one in a
    # few MB, large enough for every other test (up to ~300 files and a few MB per bundle).
    "INGEST_MAX_MEMBERS": "5000",
    "INGEST_MAX_METADATA_BYTES": str(1024 * 1024),
    "INGEST_MAX_BODY_BYTES": str(32 * 1024 * 1024),
    # Pool mode (the default): bundles up to 4 MiB go to the warm pool, the tests' 16-24 MiB
    # bundles to worker Pods, so both paths run. INGEST_TEST_WORKER_MODE=pod runs the whole suite
    # with one worker Pod per job, as before the pool existed (with `-m 'not pool'`: the pool's own
    # tests need the pool).
    "INGEST_WORKER_MODE": os.environ.get("INGEST_TEST_WORKER_MODE", "pool"),
    "INGEST_POOL_MAX_BUNDLE_BYTES": str(4 * 1024 * 1024),
}
SHARED_BUCKET = "ingest-shared"  # INGEST_MOVE_S3_SOURCES lists its prefix `shared/`


@pytest.fixture(scope="session")
def policy() -> Iterator[PolicyServer]:
    server = PolicyServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, policy: PolicyServer) -> Iterator[Stack]:
    # Named like `make run`'s folder, so README examples that use `.local/...` run against it as they stand.
    directory = Path(os.environ.get("INGEST_TEST_STACK_DIR") or tmp_path_factory.mktemp("stack") / ".local")
    # The shared root (the stack's drop folder, used without authentication), per-user roots (with
    # it), and an s3 prefix.
    roots = f"{directory / 'move'}:{directory / 'users' / '{user}'}"
    env = {**TEST_SETTINGS, "INGEST_MOVE_ROOTS": roots, "INGEST_MOVE_S3_SOURCES": f"{SHARED_BUCKET}/shared",
           "POLICY_INGEST_URL": policy.url}
    local = Stack(directory, ports=parse_ports("auto"), env=env)
    try:
        local.up()
        yield local
    finally:
        local.down()


@pytest.fixture(scope="session")
def move_root(stack: Stack) -> Path:
    """The folder /move accepts sources from without authentication (first of INGEST_MOVE_ROOTS: the drop folder)."""
    path = Path(stack.settings_env()["INGEST_MOVE_ROOTS"].split(":")[0])
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def user_root(stack: Stack) -> Callable[[str], Path]:
    """The folder a user moves from with authentication on (the `{user}` root of INGEST_MOVE_ROOTS)."""
    template = stack.settings_env()["INGEST_MOVE_ROOTS"].split(":")[1]

    def root(user: str) -> Path:
        path = Path(template.replace("{user}", user))
        path.mkdir(parents=True, exist_ok=True)
        return path

    return root


@pytest.fixture(scope="session")
def job_store(stack: Stack) -> JobStore:
    """The namespace's IngestJobs, read as an administrator would."""
    return JobStore(api_client(config_file=str(stack.kubeconfig())), stack.namespace)


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def s3(stack: Stack) -> Minio:
    config = stack.s3()
    return Minio(config["endpoint"], access_key=config["access_key"], secret_key=config["secret_key"],
                 secure=config["secure"], region="us-east-1")


@pytest.fixture(scope="session")
def kubectl(stack: Stack) -> Callable[..., subprocess.CompletedProcess]:
    binary = Path(os.__file__).parents[3] / "bin" / "kubectl"

    def run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(os.environ, KUBECONFIG=str(stack.kubeconfig()))
        result = subprocess.run([str(binary) if binary.exists() else "kubectl", *args], env=env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run
