"""The bounds a bundle must stay within, so that one hostile upload cannot exhaust a process.

Every number a client controls and that costs us memory or time is capped here: how many members
the index may hold, how long a name may be, how big `metadata.txt` and the tar extension headers
(PAX records, GNU long names) may be, how deep its JSON may nest, and how many bytes the bundle may
declare. The defaults fit real instrument bundles with a wide margin; the service may override any
of them from its configuration (`dataclasses.replace(DEFAULT_LIMITS, max_members=...)`).
"""
from __future__ import annotations

import dataclasses
from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB
TIB: Final = 1024 * GIB


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Caps on a bundle. Exceeding one is a `BundleError` that names the limit and its value."""

    #: Members (headers of any type) in one tar; the index keeps one small record per member.
    max_members: int = 1_000_000
    #: UTF-8 bytes of a member name or of a Files entry's `data/<subdir>/<name>` path.
    max_name_bytes: int = 1024
    #: UTF-8 bytes of one path segment (the common file-system limit, NAME_MAX).
    max_segment_bytes: int = 255
    #: Bytes the tar may span, checked against each header's declared size as soon as it is read.
    max_total_bytes: int = 1 * TIB
    #: Bytes of the root metadata.txt the scanner keeps and the parser accepts.
    max_metadata_bytes: int = 64 * MIB
    #: Nesting depth of the metadata JSON (Pacifica's documents nest 2-3 deep).
    max_metadata_depth: int = 64
    #: Bytes of one tar extension payload (PAX `x`/`g` records, GNU `L`/`K` long names) and of all
    #: the extension payloads that precede one member together.
    max_extended_header_bytes: int = 1 * MIB
    #: Files a failed job's exception lists one line each (and `status.problems` holds); every
    #: problem is still counted in the summary line.
    max_listed_problems: int = 20


DEFAULT_LIMITS: Final = Limits()
