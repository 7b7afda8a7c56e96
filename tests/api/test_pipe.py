"""The pipe between the event loop and the staging thread: every byte, in order, hashed, bounded."""
from __future__ import annotations

import asyncio
import hashlib
import os
import random

import pytest

from ingest.api.pipe import Pipe, PipeAborted, run_in_thread


def drain(pipe: Pipe, sizes: list[int]) -> bytes:
    out = bytearray()
    index = 0
    while True:
        data = pipe.read(sizes[index % len(sizes)])
        index += 1
        if not data:
            return bytes(out)
        out += data


@pytest.mark.parametrize("seed", range(5))
def test_bytes_arrive_in_order_with_their_sha256(seed: int) -> None:
    rng = random.Random(seed)
    chunks = [os.urandom(rng.choice([1, 100, 65536, 300000])) for _ in range(60)]

    async def run() -> bytes:
        pipe = Pipe(block=rng.choice([1, 4096, 1 << 20]), depth=2)
        reader = run_in_thread(lambda: drain(pipe, [rng.choice([1, 777, 1 << 20, 16 << 20]) for _ in range(5)]),
                               "reader")
        for chunk in chunks:
            await pipe.write(chunk)
        await pipe.close()
        data = await reader
        assert pipe.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
        return data

    assert asyncio.run(run()) == b"".join(chunks)


def test_abort_fails_the_reader() -> None:
    async def run() -> None:
        pipe = Pipe(block=10, depth=1)
        reader = run_in_thread(lambda: drain(pipe, [1 << 20]), "reader")
        await pipe.write(b"x" * 100)
        pipe.abort(ValueError("not a tar"))
        with pytest.raises(PipeAborted, match="not a tar"):
            await reader

    asyncio.run(run())
