"""One byte budget per API replica for what requests make it hold in memory.

A replica's memory is bounded by this budget, not by what clients send. Each request reserves what
it will hold before it holds it - an upload its staging buffers, then its metadata.txt and its
tar index as they appear in the stream; a /move document its bytes and the Python objects its
parsing makes - and gives it back when it is done. When a reservation does not fit, the request is
answered 503 with `Retry-After` (a job already made for it is FAILED with that reason) instead
of the replica growing into its memory limit and taking every upload in flight with it.

Large reservations (a MiB or more) may fill only `LARGE_SHARE` of the budget, so a replica busy
with big documents still takes small uploads and /move requests.

Everything runs on the event loop (reservations are made and returned there), so plain integers
need no lock.
"""
from __future__ import annotations

import logging
from typing import Final

from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

MiB: Final = 1024 * 1024
LARGE: Final = 1 * MiB
LARGE_SHARE: Final = 7 / 8
RETRY_AFTER_SECONDS: Final = 5

# Bytes of memory per byte of /move document while the API holds and parses it: the body itself,
# then the JSON objects and the manifest (measured: ~4.7 bytes per byte on top of the body).
MOVE_DOCUMENT_COST: Final = 6
# Per tar member the index keeps (a Member, its name) and writes, measured with short names.
MEMBER_COST: Final = 320


class Exhausted(Exception):
    """The reservation does not fit now; `message` says so in words a client can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MemoryBudget:
    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self.refused = 0  # reservations refused since start-up (metrics)

    @property
    def large_limit(self) -> int:
        return int(self.total * LARGE_SHARE)

    def fits_ever(self, amount: int) -> bool:
        """Whether a reservation this large could ever be granted (when nothing else is held)."""
        return amount <= (self.large_limit if amount >= LARGE else self.total)

    def take(self, amount: int, what: str, *, large: bool | None = None) -> None:
        ceiling = self.large_limit if (amount >= LARGE if large is None else large) else self.total
        if self.used + amount > ceiling:
            self.refused += 1
            raise Exhausted(f"this API replica is busy: {what} needs {amount} bytes of memory and "
                            f"{max(0, ceiling - self.used)} of its budget are free now; try again in a few seconds")
        self.used += amount

    def give(self, amount: int) -> None:
        self.used -= amount

    def reservation(self) -> Reservation:
        return Reservation(self)


class Reservation:
    """What one request holds; `grow` as it learns more, `release` once (idempotent) when done."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.held = 0

    def grow(self, amount: int, what: str) -> None:
        if amount > 0:  # a request that holds a MiB or more in all is a large one
            self.budget.take(amount, what, large=self.held + amount >= LARGE)
            self.held += amount

    def shrink(self, amount: int) -> None:
        amount = max(0, min(amount, self.held))
        self.budget.give(amount)
        self.held -= amount

    def release(self) -> None:
        self.budget.give(self.held)
        self.held = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def busy(error: Exhausted) -> HTTPException:
    return HTTPException(503, error.message, {"Retry-After": str(RETRY_AFTER_SECONDS)})
