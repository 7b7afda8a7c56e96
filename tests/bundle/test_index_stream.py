"""The tar index is written as a stream of pieces, never as one string: same text, bounded pieces."""
from __future__ import annotations

import os

import pytest

from ingest.bundle.index import Member, MemberType, TarIndex


@pytest.mark.parametrize("metadata, members", [(None, 0), (b"", 1), (os.urandom(7 * 1024 * 1024 + 1), 20000)])
def test_json_chunks_round_trip_in_bounded_pieces(metadata: bytes | None, members: int) -> None:
    index = TarIndex(
        members=tuple(Member(f"data/ü/{n}.bin", MemberType.FILE, n * 1024, n * 1024 + 512, n, "", 0o644,
                             n) for n in range(members)),
        metadata=metadata, size=members * 1024 + 1024, sha1={512: "a" * 40},
    )
    chunks = list(index.json_chunks())
    assert max(len(chunk) for chunk in chunks) <= 5 * 1024 * 1024
    assert TarIndex.from_json(b"".join(chunks)) == index
    assert TarIndex.from_json(index.to_json()) == index
