"""A fresh namespace on the Kubernetes API emulator for tests that need the API, not the stack."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import kubernetes
import pytest

from ingest.kube import JobStore, api_client
from tests.local.conftest import Emulator, start_emulator, stop_emulator


def job_store_in_new_namespace(emulator: Emulator) -> JobStore:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    client = api_client(config_file=str(emulator.kubeconfig))
    kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": namespace}})
    return JobStore(client, namespace)


def emulator_for_module(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Emulator]:
    """One emulator process for a test module (yield from it in a module-scoped fixture)."""
    started = start_emulator(tmp_path_factory.mktemp(name))
    yield started
    stop_emulator(started)
