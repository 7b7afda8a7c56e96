"""The one exception the bundle package raises for bad input, and the step it belongs to.

Pacifica reports a failed job as `FAILED/<task>/0` with a human sentence in `exception`, so every
error here carries both: `task` is the Pacifica step the failure *belongs to* (the step upstream
would have failed in, or the issue that overrides it), not the function that noticed it. The tar
scanner, for instance, notices a symlinked `metadata.txt` while the bundle is still streaming in,
but that is a `load metadata` failure. Callers therefore record `error.task`, never a task of
their own choosing.

`message` is a complete sentence that names the member, file or field at fault; it never holds a
traceback or a repr of a dict.
"""
from __future__ import annotations

from typing import Final

from ingest.jobs import INGEST_FILES, INGEST_METADATA, LOAD_METADATA, MOVE_FILES, OPEN_TAR, POLICY_VALIDATION

#: The steps a bundle can fail in. This package itself never fails Policy Validation or ingest
#: metadata, but the worker raises the same error when Pacifica's policy or metadata service
#: refuses the bundle's metadata: like any bundle error, another attempt cannot fix it.
BUNDLE_TASKS: Final = frozenset({OPEN_TAR, LOAD_METADATA, POLICY_VALIDATION, INGEST_FILES, MOVE_FILES, INGEST_METADATA})


class BundleError(Exception):
    """A bundle, its index, or its metadata document is unacceptable; `task` says at which step."""

    def __init__(self, task: str, message: str) -> None:
        if task not in BUNDLE_TASKS:
            # A programming error, not bad input: fail loudly with a different type.
            raise ValueError(f"not a bundle task: {task!r}")
        super().__init__(message)
        self.task = task
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"BundleError(task={self.task!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Keep the error picklable (multiprocessing, executors) despite the two-argument signature.
        return (type(self), (self.task, self.message))
