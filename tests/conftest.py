"""Session-wide test ordering: a module that sets `RUN_LAST = True` runs after every other test.

tests/integration/test_rbac.py needs it: it judges the Helm chart's Roles against the API calls
the whole integration run made, so it must come after the tests that make them, whatever their
file names.
"""
from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: bool(getattr(item.module, "RUN_LAST", False)) if isinstance(item, pytest.Function) else False)
