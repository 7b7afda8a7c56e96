"""The object store's one error type: what could not be installed, started or stopped, and where to look."""
from __future__ import annotations


class ObjectStoreError(RuntimeError):
    """The store could not be installed, started or stopped; the message says where to look."""


class DaemonExited(ObjectStoreError):
    """A daemon died while the store was starting."""
