"""MemberHasher: the SHA-1 of each large member, from the body's bytes in any chunking."""
from __future__ import annotations

import hashlib
import io
import os
import random
import tarfile

import pytest

from ingest.bundle import MemberHasher, TarScanner


def tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("seed", range(6))
def test_digests_match_the_members_whatever_the_chunks(seed: int) -> None:
    rng = random.Random(seed)
    files = {f"data/f{index}.bin": os.urandom(rng.choice([0, 10, 5000, 70000, 300000])) for index in range(12)}
    body = tar_of(files)
    scanner = TarScanner()
    hasher = MemberHasher(scanner.members, min_size=5000)
    position = 0
    while position < len(body):
        chunk = body[position:position + rng.choice([1, 511, 512, 4096, 65536, 1 << 20])]
        scanner.feed(chunk)  # as the API does: the scanner first, then the bytes reach the hasher
        hasher.update(chunk)
        position += len(chunk)
    index = scanner.finish()
    expected = {member.data_offset: hashlib.sha1(files[member.name]).hexdigest()
                for member in index.members if member.size >= 5000}
    assert hasher.digests == expected
