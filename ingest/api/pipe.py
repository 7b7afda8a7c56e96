"""A bounded pipe from the event loop to a blocking reader (the S3 SDK's upload thread).

The request body arrives on the event loop in small chunks; `minio.put_object` wants a file-like
`read(n)` on a thread. The pipe gathers chunks into blocks (one thread hop per block, not per
chunk) and holds at most `depth` blocks, so memory stays constant whatever the body's size and a
slow object store slows the client down instead of filling memory. `read(n)` returns n bytes
whenever it can, because the SDK appends what it reads to a `bytes` part (small reads would make
that quadratic). The reader also hashes what passes (SHA-256 of the whole body): on its own
thread, hashlib releases the GIL, so the event loop does not pay for it.
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import queue
import threading
from collections.abc import Callable
from typing import Any

_EOF = b""


class PipeAborted(Exception):
    """The writer gave up (bad body, client gone): the upload must not complete."""


class Pipe:
    def __init__(
        self, *, block: int = 1024 * 1024, depth: int = 8, observe: Callable[[bytes], None] | None = None
    ) -> None:
        self.block = block
        self.observe = observe  # also sees every byte, on the reader thread
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._blocks: collections.deque[bytes] = collections.deque()
        self._offset = 0  # into the first of _blocks
        self._buffered = 0
        self._eof = False
        self.reader_error: BaseException | None = None
        self.sha256 = hashlib.sha256()

    # --- event-loop side ---------------------------------------------------------------------
    async def write(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size >= self.block:
            await self._flush()

    async def close(self) -> None:
        if self._pending:
            await self._flush()
        await self._put(_EOF)

    async def _flush(self) -> None:
        block = b"".join(self._pending)  # the one copy on this side
        self._pending.clear()
        self._pending_size = 0
        await self._put(block)

    def abort(self, reason: BaseException) -> None:
        """Make the reader fail at its next read, without blocking the loop."""
        self._pending.clear()
        self._pending_size = 0
        while True:
            try:
                self._queue.put_nowait(reason)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass

    async def _put(self, item: bytes) -> None:
        """Hand a block over; if the reader died, nobody will ever take it: raise its error."""
        while True:
            if self.reader_error is not None:
                raise self.reader_error
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    await asyncio.to_thread(self._queue.put, item, True, 0.5)
                    return
                except queue.Full:
                    continue

    # --- reader-thread side ------------------------------------------------------------------
    def drain_into(self, consume: Callable[[Pipe], Any]) -> Any:
        """Run `consume(self)` on this thread; if it fails, unblock the writer with its error."""
        try:
            return consume(self)
        except BaseException as error:
            self.reader_error = error
            raise

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or self._buffered < size):
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise PipeAborted(str(item)) from item
            if item == _EOF:
                self._eof = True
            else:
                self._blocks.append(item)
                self._buffered += len(item)
        need = self._buffered if size < 0 else min(size, self._buffered)
        parts = []
        while need:
            block = self._blocks[0]
            available = len(block) - self._offset
            if available <= need:
                parts.append(memoryview(block)[self._offset:])
                self._blocks.popleft()
                self._offset = 0
                need -= available
            else:
                parts.append(memoryview(block)[self._offset:self._offset + need])
                self._offset += need
                need = 0
        data = b"".join(parts)  # the one copy on this side
        self._buffered -= len(data)
        self.sha256.update(data)
        if self.observe is not None and data:
            self.observe(data)
        return data


def run_in_thread(function: Callable[[], Any], name: str) -> asyncio.Future[Any]:
    """Run a long blocking call on its own thread (not the shared pool, which it would starve)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def target() -> None:
        try:
            result = function()
        except BaseException as error:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(_settle, future, None, error)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
