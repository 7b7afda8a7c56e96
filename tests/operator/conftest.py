"""One Kubernetes API emulator per test module here, and a fresh namespace's JobStore per test."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from ingest.kube import JobStore
from tests.emulated import emulator_for_module, job_store_in_new_namespace
from tests.local.conftest import Emulator


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from emulator_for_module(tmp_path_factory, "emulator")


@pytest.fixture()
def store(emulator: Emulator) -> JobStore:
    return job_store_in_new_namespace(emulator)
