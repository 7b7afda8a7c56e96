"""A fresh namespace on the Kubernetes API emulator for tests that need the API, not the stack."""
from __future__ import annotations

import uuid

import kubernetes

from ingest.kube import JobStore, api_client
from tests.local.conftest import Emulator


def job_store_in_new_namespace(emulator: Emulator) -> JobStore:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    client = api_client(config_file=str(emulator.kubeconfig))
    kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": namespace}})
    return JobStore(client, namespace)
