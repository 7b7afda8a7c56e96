"""Hash types and hash sums of Files entries: which algorithms, and what a valid sum looks like.

Pacifica calls `hashlib.new(hashtype)`; we accept exactly the fixed-length algorithms every Python
guarantees (`hashlib.algorithms_guaranteed` without the variable-length `shake_*`), so a bundle
that ingests on one build ingests on every build. Hash types are case-insensitive (`SHA256` is
`sha256`). Hash sums must be hex of exactly the digest's length; upper case is accepted and
lowered for comparison (the metadata document keeps what the client wrote).

An unknown hash type and a hash sum that cannot be a digest of that type fail at `load metadata`,
before anything is uploaded, as Pacifica's contract (issue "Bundle ingest end to end") places
them: no byte of such a file could ever be verified.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, Final

from ingest.jobs import LOAD_METADATA

from .errors import BundleError

DEFAULT_HASHTYPE: Final = "sha1"

#: Algorithm name -> hex digest length.
DIGEST_LENGTHS: Final[dict[str, int]] = {
    name: hashlib.new(name).digest_size * 2
    for name in sorted(hashlib.algorithms_guaranteed)
    if not name.startswith("shake_")
}
ALGORITHMS: Final = frozenset(DIGEST_LENGTHS)

_HEX: Final = re.compile(r"[0-9a-fA-F]+")


def normalise_hashtype(hashtype: str, *, what: str) -> str:
    """The canonical (lower-case) name of a supported hash type, or a `load metadata` BundleError."""
    canonical = hashtype.lower()
    if canonical not in ALGORITHMS:
        raise BundleError(
            LOAD_METADATA,
            f"{what} has the unknown hashtype {hashtype!r}; use one of {', '.join(sorted(ALGORITHMS))}",
            reason="unknown-hashtype",
        )
    return canonical


def normalise_hashsum(hashsum: str, *, hashtype: str, what: str) -> str:
    """The lower-case hex sum, after checking it is hex of the length `hashtype` produces."""
    expected = DIGEST_LENGTHS[hashtype]
    if len(hashsum) != expected or not _HEX.fullmatch(hashsum):
        raise BundleError(
            LOAD_METADATA,
            f"{what} has a malformed {hashtype} hashsum {_shorten(hashsum)!r}: "
            f"expected {expected} hex digits",
            reason="malformed-hashsum",
        )
    return hashsum.lower()


def hasher(hashtype: str) -> Callable[[], Any]:
    """A constructor of fresh hash objects for a canonical hash type (`hasher('sha1')()`)."""
    if hashtype not in ALGORITHMS:
        raise ValueError(f"not a canonical hashtype: {hashtype!r}")  # callers pass FileEntry.hashtype
    constructor: Callable[[], Any] | None = getattr(hashlib, hashtype, None)
    if constructor is not None:
        return constructor
    return lambda: hashlib.new(hashtype)


def _shorten(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."
