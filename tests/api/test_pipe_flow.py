"""The pipe's flow control: bounded memory, full reads, failures that travel both ways.

`tests/api/test_pipe.py` checks that every byte arrives in order and hashed; these check what keeps
an API replica alive under a fast client and a slow or failing object store: the writer is held
back once `depth` blocks wait, the reader gets full reads (the SDK appends them to a part), a
reader that dies unblocks the writer with its error, and an abort never blocks the event loop.
"""
from __future__ import annotations

import asyncio
import threading

import pytest

from ingest.api.pipe import Pipe, PipeAborted, run_in_thread

DEADLINE = 30  # seconds: a hang guard, not a timing assertion


def test_a_slow_reader_holds_the_writer_back() -> None:
    block, depth = 1000, 2
    done = {"read": 0}
    lags: list[int] = []

    def slow_reader(pipe: Pipe) -> None:
        while data := pipe.read(block):
            done["read"] += len(data)
            threading.Event().wait(0.001)

    async def run() -> None:
        pipe = Pipe(block=block, depth=depth)
        reader = run_in_thread(lambda: slow_reader(pipe), "reader")
        written = 0
        for _ in range(400):
            await pipe.write(b"x" * 500)
            written += 500
            lags.append(written - done["read"])
        await pipe.close()
        await asyncio.wait_for(reader, DEADLINE)
        assert done["read"] == written

    asyncio.run(run())
    # queued blocks, the one being handed over, the one gathering, the reader's own: never more
    assert max(lags) <= (depth + 3) * block, max(lags)


def test_reads_are_full_whatever_the_chunks() -> None:
    async def run() -> list[int]:
        pipe = Pipe(block=7, depth=4)
        sizes: list[int] = []

        def reader() -> None:
            while data := pipe.read(1000):
                sizes.append(len(data))

        thread = run_in_thread(reader, "reader")
        for _ in range(2500):
            await pipe.write(b"y")
        await pipe.close()
        await asyncio.wait_for(thread, DEADLINE)
        return sizes

    assert asyncio.run(run()) == [1000, 1000, 500]


def test_observe_sees_every_byte_in_order_on_the_reader_thread() -> None:
    seen: list[tuple[bytes, str]] = []

    async def run() -> bytes:
        pipe = Pipe(block=5, depth=2, observe=lambda data: seen.append((data, threading.current_thread().name)))
        reader = run_in_thread(lambda: pipe.read(-1), "reader")
        for piece in (b"abc", b"defgh", b"", b"ijklmnop"):
            await pipe.write(piece)
        await pipe.close()
        return await asyncio.wait_for(reader, DEADLINE)

    assert asyncio.run(run()) == b"abcdefghijklmnop"
    assert b"".join(data for data, _ in seen) == b"abcdefghijklmnop"
    assert {thread for _, thread in seen} == {"reader"}


def test_a_reader_that_fails_unblocks_the_writer_with_its_error() -> None:
    async def run() -> None:
        pipe = Pipe(block=10, depth=1)

        def consume(p: Pipe) -> None:
            p.read(10)
            raise OSError("the object store refused the part")

        reader = run_in_thread(lambda: pipe.drain_into(consume), "reader")
        with pytest.raises(OSError, match="refused the part"):
            async with asyncio.timeout(DEADLINE):
                for _ in range(1000):  # far more than the pipe holds: the writer must hear of it
                    await pipe.write(b"z" * 10)
        with pytest.raises(OSError):
            await reader

    asyncio.run(run())


def test_an_abort_with_a_full_pipe_returns_at_once_and_fails_the_next_read() -> None:
    async def run() -> Pipe:
        pipe = Pipe(block=1, depth=2)
        await pipe.write(b"a")
        await pipe.write(b"b")  # the queue is full now, and nobody reads
        pipe.abort(ValueError("the body is not a tar"))
        return pipe

    pipe = asyncio.run(run())
    with pytest.raises(PipeAborted, match="not a tar"):
        pipe.read(10)


def test_run_in_thread_hands_back_the_result_or_the_error() -> None:
    def fail() -> None:
        raise KeyError("lost")

    async def run() -> None:
        assert await run_in_thread(lambda: threading.current_thread().name, "named") == "named"
        with pytest.raises(KeyError, match="lost"):
            await run_in_thread(fail, "failing")

    asyncio.run(run())
