"""The one exception the bundle package raises for bad input, and the step it belongs to.

Pacifica reports a failed job as `FAILED/<task>/0` with a human sentence in `exception`, so every
error here carries both: `task` is the Pacifica step the failure *belongs to* (the step upstream
would have failed in, or the issue that overrides it), not the function that noticed it. The tar
scanner, for instance, notices a symlinked `metadata.txt` while the bundle is still streaming in,
but that is a `load metadata` failure. Callers therefore record `error.task`, never a task of
their own choosing.

`message` is a complete sentence that names the member, file or field at fault; it never holds a
traceback or a repr of a dict.

A scientist who uploads 200 GB must learn of every bad file at once, not one per upload, so an
error about files carries `problems`: one `Problem` per file (file, reason code, detail), and its
message is `summary(...)`: a count line, then one line per file (up to a limit), as the job's
`exception` shows it. The same list, capped, becomes the IngestJob's `status.problems`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

from ingest.jobs import INGEST_FILES, INGEST_METADATA, LOAD_METADATA, MOVE_FILES, OPEN_TAR, POLICY_VALIDATION

#: The steps a bundle can fail in. This package itself never fails Policy Validation or ingest
#: metadata, but the worker raises the same error when Pacifica's policy or metadata service
#: refuses the bundle's metadata: like any bundle error, another attempt cannot fix it.
BUNDLE_TASKS: Final = frozenset({OPEN_TAR, LOAD_METADATA, POLICY_VALIDATION, INGEST_FILES, MOVE_FILES, INGEST_METADATA})


#: Lines of a message that lists problems, when the caller gives no limit (a setting overrides it).
DEFAULT_MAX_LISTED: Final = 20


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with one file: `file` as the scientist knows it (its member path or source),
    `reason` a stable code for programs (`digest-mismatch`, `missing-member`, ...), `detail` the
    sentence for people."""

    file: str
    reason: str
    detail: str

    def line(self) -> str:
        """The line of the job's exception: the detail, led by the file unless it names it already."""
        return self.detail if self.file in self.detail else f"{self.file}: {self.detail}"

    def to_status(self) -> dict[str, str]:
        return {"file": self.file, "reason": self.reason, "detail": self.detail}


def summary(problems: Sequence[Problem], *, total: int, verb: str, limit: int = DEFAULT_MAX_LISTED) -> str:
    """`3 of 120 files failed verification:` then one line per file, at most `limit` of them."""
    files = len({problem.file for problem in problems})
    lines = [f"{files} of {total} file{'s' if total != 1 else ''} {verb}:"]
    lines += [problem.line() for problem in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more problems (not listed)")
    return "\n".join(lines)


class BundleError(Exception):
    """A bundle, its index, or its metadata document is unacceptable; `task` says at which step.

    `problems` lists the files at fault when the error is about files (empty for an error about
    the tar or the document as a whole)."""

    def __init__(self, task: str, message: str, problems: Sequence[Problem] = (), *, reason: str = "") -> None:
        if task not in BUNDLE_TASKS:
            # A programming error, not bad input: fail loudly with a different type.
            raise ValueError(f"not a bundle task: {task!r}")
        super().__init__(message)
        self.task = task
        self.message = message
        self.problems = tuple(problems)
        self.reason = reason  # the Problem reason code, when the error is about one file

    def problem(self, file: str) -> Problem:
        """This error as the problem of one file (a step that collects problems calls it)."""
        return Problem(file, self.reason or "invalid", self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"BundleError(task={self.task!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[type, tuple[str, str, tuple[Problem, ...]]]:
        # Keep the error picklable (multiprocessing, executors) despite the multi-argument signature.
        return (type(self), (self.task, self.message, self.problems))

    @classmethod
    def of_files(cls, task: str, problems: Sequence[Problem], *, total: int, verb: str,
                 limit: int = DEFAULT_MAX_LISTED) -> BundleError:
        """One error for every problem found in a step, its message made by `summary`."""
        return cls(task, summary(problems, total=total, verb=verb, limit=limit), problems)

