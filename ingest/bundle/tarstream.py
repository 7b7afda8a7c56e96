"""An incremental (push) tar parser that indexes a bundle while its bytes stream past.

The API feeds the request body to a `TarScanner` chunk by chunk as it streams the body into object
storage, so a body that is not a tar, is compressed or is truncated is known at once, and the
worker later gets a `TarIndex` (index.py): every member's normalised name, type, offsets and size,
plus the bytes of the root `metadata.txt`. This module is the scanner's interface and its design;
the framing itself (which bytes are a header, an extension payload, data or the end) is
framing.py's `Framer`, and the fields of a header block are decoded in headers.py.

Why not `tarfile`? `tarfile` pulls from a file object (even in stream mode `r|`), so it cannot be
driven by chunks pushed from an ASGI receive loop without a thread and a pipe, and its errors are
generic (`ReadError("invalid header")`) where we must say what is wrong and where. The header
format itself is small, so the scanner parses it directly: the 512-byte header block (ustar, GNU
and old v7), the checksum (unsigned and, like `tarfile`, the historic signed variant), octal and
base-256 numbers, PAX `x`/`X` records (path, linkpath, size, mtime; `GNU.sparse.*` marks a sparse
member), PAX `g` global records (parsed, then ignored, as `tarfile` ignores them for a member without an `x`
header; a global `size` is refused because it would frame members differently in other readers),
and GNU `L`/`K` long names. Which member types carry data follows `tarfile` exactly (regular
files and unknown types do; links, directories, devices and FIFOs do not), so offsets agree with
what `tarfile` (and so Pacifica) would read.

Speed and memory: member data is skipped with arithmetic on a counter (no copy, no hashing), so
a chunk that lies inside a member costs a handful of bytecodes whatever its size. Only header
blocks are copied (512 bytes each), plus the extension payloads (bounded by
`max_extended_header_bytes`) and the metadata.txt bytes (bounded by `max_metadata_bytes`). Memory
is O(index), never O(bundle).

Strict on what the service uses, opaque on what it skips: the layout of the headers (checksums,
sizes, the framing of extension records) is checked hard, because a reader that frames members
differently would read other bytes; a member's name, type and other fields are only recorded.
Names are decoded as UTF-8; a name that is not UTF-8 (GNU tar in a Latin-1 locale, Windows'
tar.exe, commons-compress with a platform encoding) is kept with `\\xNN` escapes, a NUL in a PAX
path as `\\x00`, and a name longer than `max_name_bytes` is cut and marked: none of these can equal
a Files entry's path (a backslash is refused there), so such members are simply never used.
GNU sparse members (old `S` headers with their extension blocks, and PAX `GNU.sparse.*`) are
framed like `tarfile` frames them and recorded as `sparse`, refused only if a Files entry lists
one. Names are normalised by `names.normalise_member_name` (`./data//a` -> `data/a`). The root metadata.txt is the
member whose *normalised* name is `metadata.txt`, so `./metadata.txt` (what `tar -C dir -cf - .`
writes) counts too. Upstream accepts only the exact name; accepting both breaks no client that
works upstream, and a bundle holding both is refused as ambiguous (`load metadata`), as is a
metadata.txt that is not a regular file. Its bytes are the only member data the scanner keeps.

Strictness: the end-of-archive marker (two zero blocks) must be present and only zero bytes may
follow it (the record padding tar writers add); a lone zero block followed by more headers (two
tars concatenated, or damage) is refused rather than guessed at. A tar without any member is
left to `load metadata`, which says metadata.txt was not found (as upstream, where the step that
looks for metadata.txt is the one that fails).
"""
from __future__ import annotations

from collections.abc import Callable

from .errors import BundleError
from .framing import Framer
from .index import Member, TarIndex
from .limits import DEFAULT_LIMITS, Limits


class TarScanner:
    """Push bytes with `feed()`, in chunks of any size; `finish()` returns the `TarIndex`.

    The first `BundleError` poisons the scanner: every later `feed`/`finish` raises it again, so a
    caller that keeps streaming (to drain the request) cannot miss it.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, *,
                 before_metadata: Callable[[int], None] | None = None) -> None:
        # `before_metadata(size)`: see `Framer`, which calls it before metadata.txt's bytes are kept.
        self._framer = Framer(limits, before_metadata=before_metadata)
        self._error: BundleError | None = None
        self._finished = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Consume the next bytes of the body. Raises BundleError as soon as the bytes are bad."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if self._error is not None:
            raise self._error
        view = memoryview(chunk)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        try:
            self._framer.consume(view)
        except BundleError as error:
            self._error = error
            raise

    @property
    def members(self) -> list[Member]:
        """The members parsed so far: append-only, so another thread may read it while we feed."""
        return self._framer.members

    def finish(self) -> TarIndex:
        """Declare the end of the body and get the index; BundleError if the tar is incomplete."""
        if self._error is not None:
            raise self._error
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        try:
            self._framer.check_complete()
        except BundleError as error:
            self._error = error
            raise
        framer = self._framer
        return TarIndex(members=tuple(framer.members), metadata=framer.metadata, size=framer.offset)

    @property
    def offset(self) -> int:
        """Bytes consumed so far."""
        return self._framer.offset

    @property
    def member_count(self) -> int:
        return len(self._framer.members)
