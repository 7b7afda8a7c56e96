"""SHA-1 of each large member's data, computed from the body's bytes as they pass, in order.

Pacifica's default hashtype is sha1. When the API hashes each large member while the bundle
streams into staging, the worker can check a Files entry's sha1 against it and copy the member
into the archive server-side (a ranged multipart copy), instead of reading every byte back and
writing it again. The scanner parses a member's header before its data reaches the hasher (the
API feeds the scanner first), so the live member list is always ahead of the bytes.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final

from .index import Member, MemberType

#: Members at least this large are hashed (smaller ones are cheaper to read back in batches).
PREHASH_MIN_SIZE: Final = 1024 * 1024 + 1


class MemberHasher:
    def __init__(self, members: Sequence[Member], min_size: int = PREHASH_MIN_SIZE, *, start: int = 0) -> None:
        self.members = members  # live and append-only (TarScanner.members)
        self.min_size = min_size
        self.digests: dict[int, str] = {}
        self._start = start  # a resumed body (tus): members whose data began before it are not ours to hash
        self._position = start
        self._index = 0
        self._current: Any = None

    def update(self, data: bytes) -> None:
        start = self._position
        end = start + len(data)
        view = memoryview(data)
        while self._index < len(self.members):
            member = self.members[self._index]
            if (member.type is not MemberType.FILE or member.size < self.min_size or member.data_end <= start
                    or member.data_offset < self._start):
                self._index += 1
                continue
            if member.data_offset >= end:
                break
            if self._current is None:
                self._current = hashlib.sha1()
            low, high = max(member.data_offset, start), min(member.data_end, end)
            self._current.update(view[low - start:high - start])
            if member.data_end > end:
                break
            self.digests[member.data_offset] = self._current.hexdigest()
            self._current = None
            self._index += 1
        self._position = end
