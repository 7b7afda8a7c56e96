"""`ingest upload` through tus: large bundles survive dropped connections and a sleeping laptop.

A bundle at or above `--resumable-threshold` is sent as a tus 1.0.0 upload: one POST creates it
(the job exists from then on; its URL is printed so `--resume URL` can finish it later, even
after the command was killed), then PATCHes of `--chunk-size` bytes follow. When a connection
drops or the service answers 5xx/409/423, the client waits (exponential backoff), asks the
service how far it got (HEAD) and goes on from there; the service keeps every byte that reached
it, so nothing already sent is sent twice.

Why not tuspy (which the tests use to prove the service speaks standard tus): tuspy reads each
chunk into memory, so its chunks must stay small, and every PATCH costs a round of fixed work on
the service (lock, checkpoint, commit) while the part pipeline drains: 8 MiB chunks cost a third
of the throughput. It also retries with a fixed delay, reports progress per chunk, and would add
requests, aiohttp and tinydb as runtime dependencies of a command that otherwise needs only the
standard library. This client streams each PATCH from the source in 1 MiB pieces, so a PATCH can
be 1 GiB with flat memory; a connection cut mid-PATCH loses nothing (the service keeps what
arrived), so the chunk size only bounds what a dying API replica can lose.

The source must give the same bytes again from any offset: a bundle file is read from there; a
directory is bundled again (the bundle is deterministic) and its first bytes skipped.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, TextIO

from ingest.cli.errors import ClientError
from ingest.cli.progress import Progress, human
from ingest.cli.service import Service, ServiceError

RESUMABLE_THRESHOLD: Final = 64 * 1024 * 1024  # `ingest upload` sends bundles this large or larger through tus
TUS_CHUNK: Final = 1024 * 1024 * 1024  # bytes per PATCH: streamed, so only a bound on what a dying replica loses
TUS: Final = {"Tus-Resumable": "1.0.0"}
RETRYABLE: Final = frozenset({409, 423, 500, 502, 503, 504})
MAX_DELAY: Final = 30.0

Opener = Callable[[int], Iterable[bytes]]  # the source's bytes from an offset to the end


class Replay:
    """The source as consecutive chunks; reopened (from an offset) only when the service's offset is elsewhere."""

    def __init__(self, opener: Opener) -> None:
        self.opener = opener
        self.position = -1
        self._pieces: Iterator[bytes] = iter(())
        self._leftover = b""

    def take(self, offset: int, count: int) -> Iterator[bytes]:
        if offset != self.position:
            self._pieces, self._leftover, self.position = iter(self.opener(offset)), b"", offset
        while count > 0:
            piece, self._leftover = self._leftover or next(self._pieces, b""), b""
            if not piece:
                raise ClientError(f"the source ended {count} bytes early: did it change during the upload?")
            piece, self._leftover = piece[:count], piece[count:]
            self.position += len(piece)
            count -= len(piece)
            yield piece


class TusUpload:
    """A tus upload at the service: create, ask the offset, send chunks, resume."""

    def __init__(self, service: Service, *, chunk_size: int = TUS_CHUNK, attempts: int = 10,
                 sleep: Callable[[float], None] = time.sleep, err: TextIO | None = None) -> None:
        self.service = service
        self.chunk_size = chunk_size
        self.attempts = attempts
        self.sleep = sleep
        self.err = err
        self.url = ""
        self.job_id = 0

    def _request(self, method: str, path: str, headers: dict[str, str], body: Iterable[bytes] = (),
                 progress: Progress | None = None) -> http.client.HTTPResponse:
        connection = self.service._connect()
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in {**self.service._headers(), **TUS, **headers}.items():
            connection.putheader(name, value)
        connection.endheaders()
        for piece in body:
            connection.send(piece)
            if progress is not None:
                progress.advance(len(piece))
        response = connection.getresponse()
        response.body = response.read()  # type: ignore[attr-defined]  # the refusal's sentence, if any
        connection.close()
        return response

    def _path(self, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        return parts.path if parts.path.startswith("/") else f"{self.service.prefix}/uploads/{parts.path}"

    def refused(self, response: http.client.HTTPResponse, what: str) -> ServiceError:
        """The service's own sentence (its JSON `message`) when it gave one."""
        try:
            message = json.loads(getattr(response, "body", b"") or b"{}").get("message")
        except (ValueError, AttributeError):
            message = None
        detail = f": {message}" if message else ""
        hint = "; give a token with --token or $INGEST_TOKEN" if response.status == 401 else ""
        answer = f"{response.status} {response.reason}{detail}{hint}"
        return ServiceError(response.status, f"the service refused the {what}: {answer}")

    def create(self, size: int, filename: str) -> str:
        metadata = "filename " + base64.b64encode(filename.encode()).decode()
        response = self._request("POST", f"{self.service.prefix}/uploads/",
                                 {"Upload-Length": str(size), "Upload-Metadata": metadata, "Content-Length": "0"})
        if response.status != 201:
            raise self.refused(response, "new upload")
        location = response.getheader("Location") or ""
        self.url = urllib.parse.urljoin(self.service.url.rstrip("/") + "/", location)
        self.job_id = int(response.getheader("Ingest-Job-Id") or 0)
        return self.url

    def offset(self, size: int) -> int:
        response = self._request("HEAD", self._path(self.url), {})
        if response.status != 200:
            raise self.refused(response, f"resumable upload {self.url}")
        length = int(response.getheader("Upload-Length") or -1)
        if length != size:
            raise ClientError(f"the upload at {self.url} is {length} bytes long but the source is {size} bytes: "
                              "is it the same bundle?")
        self.job_id = int(response.getheader("Ingest-Job-Id") or self.job_id)
        return int(response.getheader("Upload-Offset") or 0)

    def send(self, opener: Opener, size: int, progress: Progress) -> None:
        """Send the source from the service's offset to the end, resuming after every failure."""
        failures = 0
        replay = Replay(opener)
        offset: int | None = None  # known from the last PATCH's answer; asked for (HEAD) after a failure
        while True:
            try:
                if offset is None:
                    offset = self.offset(size)
                progress.done = offset
                if offset >= size:
                    return
                count = min(self.chunk_size, size - offset)
                response = self._request(
                    "PATCH", self._path(self.url),
                    {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
                     "Content-Length": str(count)},
                    replay.take(offset, count), progress)
                if response.status == 204:
                    failures = 0
                    offset = int(response.getheader("Upload-Offset") or -1)
                    if offset < 0:
                        raise ClientError(f"the service answered a PATCH without Upload-Offset: is {self.url} tus?")
                    continue
                if response.status not in RETRYABLE:
                    raise self.refused(response, "upload")
                problem = f"{response.status} {response.reason}"
            except ServiceError as error:
                if error.status not in RETRYABLE:
                    raise
                problem = str(error)
            except (OSError, http.client.HTTPException) as error:
                problem = getattr(error, "strerror", None) or str(error) or type(error).__name__
            offset = None
            failures += 1
            if failures > self.attempts:
                raise ClientError(f"gave up after {self.attempts} tries ({problem}); "
                                  f"continue later with --resume {self.url}")
            delay = min(MAX_DELAY, 2.0 ** (failures - 1))
            if self.err is not None:
                self.err.write(f"\ningest: the upload broke off at {human(progress.done)} ({problem}); "
                               f"resuming in {delay:.0f} s\n")
                self.err.flush()
            self.sleep(delay)


def upload_resumably(service: Service, opener: Opener, *, size: int, name: str, args: argparse.Namespace,
                     progress: Progress, err: TextIO) -> dict[str, Any]:
    """Create (or, with --resume, find) the upload, send it to the end, and return the job's state document."""
    upload = TusUpload(service, chunk_size=args.chunk_size, err=None if args.quiet else err)
    if args.resume:
        upload.url = args.resume
        upload.offset(size)  # the same bundle? and which job
    else:
        upload.create(size, name)
    print(f"ingest: job {upload.job_id}: resumable upload at {upload.url} "
          f"(if this command stops, continue with --resume {upload.url})", file=err, flush=True)
    try:
        upload.send(opener, size, progress)
    except ServiceError as error:
        if not upload.job_id or error.status not in (400, 410):
            raise
        print(f"ingest: {error}", file=err)  # the bundle was refused or the upload ended: the job says why
    finally:
        progress.finish()
    return service.get_state(upload.job_id)
