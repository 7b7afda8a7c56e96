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
import hashlib
import queue
import threading
from typing import Any, Callable

_EOF = b""


class PipeAborted(Exception):
    """The writer gave up (bad body, client gone): the upload must not complete."""


class Pipe:
    def __init__(self, *, block: int = 1024 * 1024, depth: int = 8) -> None:
        self.block = block
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._pending = bytearray()
        self._buffer = bytearray()
        self._eof = False
        self.reader_error: BaseException | None = None
        self.sha256 = hashlib.sha256()

    # --- event-loop side ---------------------------------------------------------------------
    async def write(self, chunk: bytes) -> None:
        self._pending += chunk
        if len(self._pending) >= self.block:
            await self._put(bytes(self._pending))
            self._pending.clear()

    async def close(self) -> None:
        if self._pending:
            await self._put(bytes(self._pending))
            self._pending.clear()
        await self._put(_EOF)

    def abort(self, reason: BaseException) -> None:
        """Make the reader fail at its next read, without blocking the loop."""
        self._pending.clear()
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
    def drain_into(self, consume: Callable[["Pipe"], Any]) -> Any:
        """Run `consume(self)` on this thread; if it fails, unblock the writer with its error."""
        try:
            return consume(self)
        except BaseException as error:
            self.reader_error = error
            raise

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._buffer) < size):
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise PipeAborted(str(item)) from item
            if item == _EOF:
                self._eof = True
            else:
                self._buffer += item
        if size < 0 or size >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
        self.sha256.update(data)
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
