"""Session-wide collection rules: which tests start processes, and which run last.

A test that starts a server of the local kit (the Kubernetes API emulator, the S3 server, the pod
runner) or a component's entry point gets the `processes` marker, so `make test-unit`
(`-m 'not stack and not processes'`) stays a fast check of the logic while `make test` still runs
every test. For the emulator the marker follows the fixtures a test uses, so a new test against
it is marked without anyone remembering to; the others carry the marker themselves.

A module that sets `RUN_LAST = True` runs after every other test: tests/integration/test_rbac.py
needs it, it judges the Helm chart's Roles against the API calls the whole integration run made,
so it must come after the tests that make them, whatever their file names.
"""
from __future__ import annotations

import pytest

# Fixtures that start the emulator (tests/local/conftest.py, tests/api, tests/operator).
SERVER_FIXTURES = frozenset({"kubeapi", "spawn_emulator", "emulator"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.processes)
    items.sort(key=lambda item: isinstance(item, pytest.Function) and bool(getattr(item.module, "RUN_LAST", False)))
