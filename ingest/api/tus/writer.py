"""One PATCH body, streamed from a checkpoint into the upload's parts, up to a new checkpoint.

The body goes, chunk by chunk, through the tar scanner (restored from the checkpoint, so a body
that stops being a tar is known at once) into part-sized blocks, each sent as one S3 part on a
thread with at most two in flight (memory stays about three parts whatever the body's size, and a
slow store slows the client down). The bytes a checkpoint left pending come first. The PATCH's
own bytes are also hashed, in order, on one helper thread: the Upload-Checksum the client sent
(if any) and the SHA-1 of large members (as POST /ingest does), so the event loop does not pay
for hashing. Nothing here writes to the IngestJob: the handler commits what `finish` returns.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
from typing import Any

from ingest.api.tus.parts import Checkpoint, UploadStaging
from ingest.api.tus.protocol import CHECKSUM_MISMATCH, Checksum, TusError
from ingest.bundle import MemberHasher

IN_FLIGHT = 2


class PatchWriter:
    def __init__(self, staging: UploadStaging, checkpoint: Checkpoint, pending: bytes, *, offset: int, length: int,
                 part_size: int, checksum: Checksum | None) -> None:
        self.staging = staging
        self.checkpoint = checkpoint
        self.offset = offset
        self.length = length
        self.part_size = part_size
        self.checksum = checksum
        self.received = 0
        self._block: list[bytes] = [pending] if pending else []
        self._buffered = len(pending)
        self._fresh: list[bytes] = []  # this PATCH's bytes not yet handed to the hashing thread
        self._parts = list(checkpoint.parts)
        self._in_flight: list[asyncio.Future[Any]] = []
        self._hashing = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"tus-hash-{staging.job_id}")
        self._hashed: asyncio.Future[Any] | None = None
        self._sum = checksum.hasher() if checksum else None
        self._members = MemberHasher(checkpoint.scanner.members, start=offset)

    async def write(self, chunk: bytes) -> None:
        """Take the next bytes of the body; BundleError when they are not a tar any more."""
        if self.offset + self.received + len(chunk) > self.length:
            raise TusError(413, f"the PATCH goes past Upload-Length ({self.length} bytes)")
        self.checkpoint.scanner.feed(chunk)
        self.received += len(chunk)
        self._fresh.append(chunk)
        while chunk:
            need = self.part_size - self._buffered
            piece, chunk = (chunk, b"") if len(chunk) <= need else (chunk[:need], chunk[need:])
            self._block.append(piece)
            self._buffered += len(piece)
            if self._buffered == self.part_size:
                await self._send_block()

    async def _send_block(self) -> None:
        self._hash_fresh()
        data = b"".join(self._block)  # the one copy on this side
        self._block, self._buffered = [], 0
        number = len(self._parts) + len(self._in_flight) + 1
        while len(self._in_flight) >= IN_FLIGHT:
            await self._settle_oldest()
        self._in_flight.append(asyncio.ensure_future(self._upload(number, data)))

    async def _upload(self, number: int, data: bytes) -> tuple[int, str, int]:
        etag = await asyncio.to_thread(self.staging.upload_part, number, data)
        return number, etag, len(data)

    async def _settle_oldest(self) -> None:
        self._parts.append(await self._in_flight.pop(0))

    def _hash_fresh(self) -> None:
        if not self._fresh:
            return
        chunks, self._fresh = self._fresh, []
        self._hashed = asyncio.wrap_future(self._hashing.submit(self._observe, chunks))

    def _observe(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._members.update(chunk)
            if self._sum is not None:
                self._sum.update(chunk)

    async def settle(self) -> None:
        """Wait for every part and the hashing thread: nothing of this PATCH may land later."""
        results = await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight = []
        if self._hashed is not None:
            await asyncio.gather(self._hashed, return_exceptions=True)
        self._hashing.shutdown(wait=False)
        for result in results:
            if isinstance(result, BaseException):
                raise result
            self._parts.append(result)

    async def finish(self) -> tuple[Checkpoint, bytes]:
        """Every byte received so far in parts or pending: the checkpoint to commit, and its pending bytes.

        The last part of the upload may be smaller than the others (S3 allows that), so the final
        PATCH sends what is left as a part; any other PATCH leaves it pending for the next one."""
        self._hash_fresh()
        if self.offset + self.received == self.length and self._buffered:
            await self._send_block()
        await self.settle()
        if self._sum is not None and self.checksum is not None \
                and not hmac.compare_digest(self._sum.digest(), self.checksum.digest):
            algorithm = self.checksum.algorithm
            raise TusError(CHECKSUM_MISMATCH, f"the PATCH body does not match its Upload-Checksum ({algorithm}); "
                                              f"nothing of it was kept, the offset is still {self.offset}")
        pending = b"".join(self._block)
        digests = {**self.checkpoint.digests, **self._members.digests}
        checkpoint = Checkpoint(self.checkpoint.scanner, self._parts, digests)
        return checkpoint, pending

    async def discard(self) -> None:
        """Give up on this PATCH: wait for what is in flight (its parts are simply never named)."""
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight = []
        if self._hashed is not None:
            await asyncio.gather(self._hashed, return_exceptions=True)
        self._hashing.shutdown(wait=False)
