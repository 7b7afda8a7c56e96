"""`ingest`: the scientists' command line, to bundle a directory and upload it to the service.

`ingest bundle DIR -o bundle.tar` writes a Pacifica bundle; `ingest upload DIR --url URL` sends
the same bytes straight into the HTTP request, with no tar on disk. Both use one generator
(`BundleStream`), so what `upload` sends is byte for byte what `bundle` writes.

The bundle is the one pacifica-uploader's `Bundler` writes for the same files, byte for byte:
a PAX tar of `data/<relative path>` members (mode 0644, owner 0, the file's mtime) in sorted path
order, then `metadata.txt` last (mtime 0), then the end marker padded to tar's 10 KiB record.
Files entries carry the bundler's fields in its order, with `subdir` the relative directory
("" at the top) and `ctime` equal to `mtime` (the bundler's choice: a file's real ctime changes
on every chmod, so it would make the same tree give different bundles).

One pass over the data: each file is hashed while its bytes stream out, and metadata.txt, which
needs the sums, comes last anyway. The total size is still known before the first byte: a hash
sum has a fixed length per hash type, so metadata.txt is measured with placeholder sums. That
gives the request a Content-Length, so the service can refuse a bundle that is too big (413)
at once instead of after the upload.

A file that changes while it is read (size or mtime differ from the listing) stops the stream
before metadata.txt is written: the service then never gets a complete bundle, and the upload's
job fails as broken off, never with a wrong file in the archive.

Only the standard library talks HTTP (`http.client`): httpx is a test dependency, not a runtime
one. Exit codes: 0 done (job OK), 1 failed (job FAILED, refused, unreachable), 2 usage.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import http.client
import json
import mimetypes
import os
import select
import stat
import sys
import tarfile
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, BinaryIO, Callable, Final, Iterable, Iterator, Sequence, TextIO

from ingest import jobs
from ingest.bundle import ALGORITHMS, DEFAULT_HASHTYPE, METADATA_NAME, BundleError, entry_path, hasher

CHUNK: Final = 1024 * 1024
BLOCK: Final = tarfile.BLOCKSIZE
RECORD: Final = tarfile.RECORDSIZE
IO_TIMEOUT: Final = 120.0  # seconds one socket read or write may take
POLL_INTERVAL: Final = 1.0  # pacifica-uploader polls once a second
RESUMABLE_THRESHOLD: Final = 64 * 1024 * 1024  # at or above: a tus upload (ingest.cli.resumable)
TUS_CHUNK: Final = 1024 * 1024 * 1024  # bytes per PATCH: streamed, so only a bound on what a dying replica loses
POLL_FAILURES: Final = 30  # consecutive failed polls (about 30 s) before --wait gives up
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

Warn = Callable[[str], None]


class ClientError(Exception):
    """A clear sentence for the user; exit code 1."""


class UsageError(ClientError):
    """The command line asks for something impossible; exit code 2."""


# -- the tree --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SourceFile:
    """A regular file as it was listed; the stream refuses it if it no longer looks like this."""

    path: Path
    relative: str  # POSIX path under DIR
    size: int
    mtime_ns: int

    @property
    def member(self) -> str:
        return f"data/{self.relative}"

    @property
    def mtime(self) -> int:
        return self.mtime_ns // 1_000_000_000


def scan_tree(root: Path, *, warn: Warn, exclude: Path | None = None) -> list[SourceFile]:
    """Every regular file under `root`, sorted by relative path; links and specials are skipped.

    Symbolic links are not followed (a link may point outside the tree, or loop); the file the
    bundle is being written to is left out when it lies inside the tree. A name the service would
    refuse (not UTF-8, a control character or backslash, too long) is an error now, not a FAILED
    job after the upload.
    """
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    try:
        excluded = identity(os.stat(exclude)) if exclude is not None else None
    except FileNotFoundError:
        excluded = None
    found: list[SourceFile] = []
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            raise ClientError(f"cannot list {directory}: {error.strerror}") from None
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                warn(f"skipping {path}: a symbolic link (links are not followed)")
            elif entry.is_dir(follow_symlinks=False):
                pending.append(path)
            elif not entry.is_file(follow_symlinks=False):
                warn(f"skipping {path}: not a regular file")
            elif identity(info := entry.stat(follow_symlinks=False)) != excluded:
                relative = path.relative_to(root).as_posix()
                check_name(path, relative)
                found.append(SourceFile(path, relative, info.st_size, info.st_mtime_ns))
    if not found:
        raise UsageError(f"{root} holds no regular file to bundle")
    return sorted(found, key=lambda source: source.relative)


def identity(info: os.stat_result) -> tuple[int, int]:
    """Which file this is, whatever path leads to it."""
    return info.st_dev, info.st_ino


def check_name(path: Path, relative: str) -> None:
    """Refuse a name the service would refuse, with the service's own rule (`entry_path`)."""
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise ClientError(f"{os.fsdecode(path)!r}: the file name is not valid UTF-8; rename it") from None
    subdir, _, name = relative.rpartition("/")
    try:
        entry_path(subdir, name, what=str(path))
    except BundleError as error:
        raise ClientError(f"the service would refuse this file: {error.message}") from None


# -- the bundle ------------------------------------------------------------------------------------


def transaction_items(*, submitter: str | None, project: str | None, instrument: str | None,
                      key_values: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The non-file part of metadata.txt, as pacifica-uploader writes it.

    Submitters and instruments are integer ids in Pacifica, projects are strings ("1234a"), so a
    submitter or instrument given in digits is sent as a number.
    """
    items: list[dict[str, Any]] = []
    for field, value in (("submitter", submitter), ("project", project), ("instrument", instrument)):
        if value is not None:
            number = field != "project" and value.isascii() and value.isdigit()
            items.append({"destinationTable": f"Transactions.{field}", "value": int(value) if number else value})
    items.extend({"destinationTable": "TransactionKeyValue", "key": key, "value": value} for key, value in key_values)
    return items


def files_item(source: SourceFile, *, hashtype: str, hashsum: str) -> dict[str, Any]:
    """A Files entry, with pacifica-uploader's fields in its order."""
    subdir, _, name = source.relative.rpartition("/")
    moment = datetime.datetime.fromtimestamp(source.mtime, datetime.timezone.utc).replace(tzinfo=None).isoformat()
    return {
        "destinationTable": "Files",
        "name": name,
        "subdir": subdir,
        "size": source.size,
        "hashtype": hashtype,
        "hashsum": hashsum,
        "mimetype": mimetypes.guess_type(source.member, strict=True)[0] or "application/octet-stream",
        "ctime": moment,
        "mtime": moment,
    }


def tar_header(name: str, *, size: int, mtime: int) -> bytes:
    """A regular file's header blocks (with a PAX header for a long or non-ASCII name)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> int:
    return -size % BLOCK


class BundleStream:
    """The bytes of a bundle of `files`, generated in one pass; `size` is known before it starts.

    Iterate it once. Each file is read in chunks and hashed as it goes; metadata.txt follows.
    """

    def __init__(self, files: Sequence[SourceFile], *, transaction: Sequence[dict[str, Any]],
                 hashtype: str = DEFAULT_HASHTYPE) -> None:
        self.files = tuple(files)
        self.transaction = list(transaction)
        self.hashtype = hashtype
        self._new_hash = hasher(hashtype)
        self._started = False
        placeholder = "0" * len(self._new_hash().hexdigest())  # every sum of this type is this long
        self._metadata_size = metadata_size = len(self.metadata_bytes([placeholder] * len(self.files)))
        members = sum(len(self._header(source)) + source.size + padding(source.size) for source in self.files)
        members += len(tar_header(METADATA_NAME, size=metadata_size, mtime=0)) + metadata_size + padding(metadata_size)
        end = members + 2 * BLOCK
        self.size = end + -end % RECORD

    def metadata_bytes(self, hashsums: Sequence[str]) -> bytes:
        """metadata.txt, encoded as pacifica-uploader encodes it (`json.dumps` defaults)."""
        items = self.transaction + [
            files_item(source, hashtype=self.hashtype, hashsum=hashsum) for source, hashsum in zip(self.files, hashsums)
        ]
        return json.dumps(items).encode("utf-8")

    def _header(self, source: SourceFile) -> bytes:
        return tar_header(source.member, size=source.size, mtime=source.mtime)

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise RuntimeError("a BundleStream is single-use")
        self._started = True
        return coalesce(self._pieces(), CHUNK)

    def _pieces(self) -> Iterator[bytes]:
        emitted = 0
        hashsums: list[str] = []
        for source in self.files:
            digest = self._new_hash()
            header = self._header(source)
            emitted += len(header)
            yield header
            for chunk in file_chunks(source):
                digest.update(chunk)
                emitted += len(chunk)
                yield chunk
            tail = bytes(padding(source.size))
            emitted += len(tail)
            yield tail
            hashsums.append(digest.hexdigest())
        metadata = self.metadata_bytes(hashsums)
        if len(metadata) != self._metadata_size:  # the Content-Length already sent depends on it
            raise RuntimeError(f"metadata.txt is {len(metadata)} bytes, {self._metadata_size} were announced")
        for piece in (tar_header(METADATA_NAME, size=len(metadata), mtime=0), metadata, bytes(padding(len(metadata)))):
            emitted += len(piece)
            yield piece
        yield bytes(self.size - emitted)  # the end marker and the record padding


def file_chunks(source: SourceFile) -> Iterator[bytes]:
    """The file's bytes, exactly `source.size` of them, or a ClientError if the file changed.

    The file is opened without following links and checked against its listing before and after
    reading, so a file replaced, grown, shrunk or rewritten while it streams is never sent as if
    it were what the listing (and the tar header already sent) promised.
    """
    try:
        descriptor = os.open(source.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise ClientError(f"cannot read {source.path}: {error.strerror}") from None
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        before = os.fstat(descriptor)
        if not stat.S_ISREG(before.st_mode) or (before.st_size, before.st_mtime_ns) != (source.size, source.mtime_ns):
            raise ClientError(f"{source.path} changed after it was listed; nothing was sent for it. Try again.")
        left = source.size
        while left:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
        after = os.fstat(descriptor)
        if left or handle.read(1) or (after.st_size, after.st_mtime_ns) != (source.size, source.mtime_ns):
            raise ClientError(f"{source.path} changed while it was being read; the bundle was abandoned. Try again.")


def coalesce(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Pieces joined into chunks of about `size` bytes: one write per chunk, not per tar header."""
    buffer = bytearray()
    for piece in pieces:
        if not buffer and len(piece) >= size:
            yield piece
            continue
        buffer += piece
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


# -- progress --------------------------------------------------------------------------------------


def human(count: float) -> str:
    """Bytes in binary units: 512 B, 1.5 KiB, 12.0 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Bytes done of a total, on stderr: redrawn in place on a terminal, a line now and then otherwise.

    A log (CI, `2> file`) gets one line every `every` seconds and a final line, not a carriage
    return per chunk. `clock` is injectable so the output can be tested without waiting.
    """

    def __init__(self, total: int | None, *, verb: str, stream: TextIO | None,
                 tty: bool | None = None, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.verb = verb
        self.stream = stream
        self.tty = bool(tty if tty is not None else stream is not None and stream.isatty())
        self.every = every if every is not None else (0.1 if self.tty else 10.0)
        self.clock = clock
        self.done = 0
        self.started = clock()
        self.shown = self.started
        self.width = 0

    def advance(self, count: int) -> None:
        self.done += count
        now = self.clock()
        if now - self.shown >= self.every:
            self.shown = now
            self._show(self.line(now))

    def finish(self) -> None:
        now = self.clock()
        self._show(self.line(now) + f" in {now - self.started:.1f} s")
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.started, 1e-6)
        if self.total is None:
            return f"{self.verb} {human(self.done)} at {human(rate)}/s"
        percent = 100 * self.done // self.total if self.total else 100
        return f"{self.verb} {human(self.done)} of {human(self.total)} ({percent}%) at {human(rate)}/s"

    def _show(self, text: str) -> None:
        if self.stream is None:
            return
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


# -- the service -----------------------------------------------------------------------------------


class Service:
    """The ingest service at a base URL (`http://host:8066`, or a path prefix behind an ingress)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = IO_TIMEOUT) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise UsageError(f"--url must be the service's base URL, like http://ingest.example.org:8066, not {url!r}")
        self.url = url
        self.parts = parts
        self.prefix = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
        return kind(self.parts.hostname, self.parts.port, timeout=self.timeout)

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "ingest-client", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def upload(self, body: Iterable[bytes], *, size: int | None, progress: Progress) -> dict[str, Any]:
        """POST the body to /upload and return the state document of the new job.

        With `size` the request has a Content-Length, else it is chunked. Before each chunk the
        socket is checked for an early answer: a service that refuses the upload (413, 401) says
        so before reading the body, and then it need not be sent to the end.
        """
        connection = self._connect()
        try:
            headers = {**self._headers(), "Content-Type": "application/octet-stream"}
            headers.update({"Content-Length": str(size)} if size is not None else {"Transfer-Encoding": "chunked"})
            connection.putrequest("POST", f"{self.prefix}/upload", skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            broken: OSError | None = None
            try:
                connection.endheaders()
                for chunk in body:
                    if answered(connection):
                        break
                    connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if size is None else chunk)
                    progress.advance(len(chunk))
                else:
                    if size is None:
                        connection.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError) as error:
                broken = error  # the service may have answered and closed: its answer says why
            finally:
                progress.finish()
            try:
                return self._answer(connection.getresponse(), "upload")
            except (OSError, http.client.HTTPException) as error:
                if broken is not None:
                    raise ClientError(f"the connection to {self.url} broke after {human(progress.done)}: {broken}") from None
                raise self._unreachable(error) from None
        except OSError as error:
            raise self._unreachable(error) from None
        finally:
            connection.close()

    def get_state(self, job_id: int) -> dict[str, Any]:
        connection = self._connect()
        try:
            connection.request("GET", f"{self.prefix}/get_state?job_id={job_id}", headers=self._headers())
            return self._answer(connection.getresponse(), "get_state")
        except (OSError, http.client.HTTPException) as error:
            raise self._unreachable(error) from None
        finally:
            connection.close()

    def _answer(self, response: http.client.HTTPResponse, what: str) -> dict[str, Any]:
        raw = response.read()
        try:
            document = json.loads(raw)
        except ValueError:
            document = None
        if response.status != 200:
            message = document.get("message") if isinstance(document, dict) else None
            text = message or raw.decode("utf-8", "replace").strip()[:500] or response.reason
            hint = "; give a token with --token or $INGEST_TOKEN" if response.status == 401 else ""
            raise ServiceError(response.status, f"the service refused the {what} request: {response.status} {response.reason}: {text}{hint}")
        if not isinstance(document, dict) or not isinstance(document.get("job_id"), int):
            raise ClientError(f"the service answered the {what} request with something that is not a job state: {raw[:200]!r}")
        return document

    def _unreachable(self, error: Exception) -> ClientError:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return ClientError(f"cannot talk to the ingest service at {self.url}: {reason}")


class ServiceError(ClientError):
    """The service answered with an HTTP error; `status` tells a retryable 5xx from a refusal."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def answered(connection: http.client.HTTPConnection) -> bool:
    """Whether the service has said something already (it only does mid-body to refuse)."""
    sock = connection.sock
    return sock is not None and bool(select.select([sock], [], [], 0)[0])


def wait_complete(service: Service, job_id: int, *, timeout: float | None, stream: TextIO | None,
                  tty: bool | None = None, interval: float = POLL_INTERVAL,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll /get_state until the job is complete, showing its task and percent; the last document.

    A poll that fails (the API restarting, a network blip) is retried for about
    `POLL_FAILURES` polls before giving up: the job goes on without us either way.
    """
    tty = bool(tty if tty is not None else stream is not None and stream.isatty())
    deadline = None if timeout is None else clock() + timeout
    failures = 0
    last = ""
    while True:
        try:
            document = service.get_state(job_id)
            failures = 0
        except ClientError as error:
            if isinstance(error, ServiceError) and error.status < 500:
                raise
            failures += 1
            if failures >= POLL_FAILURES:
                raise ClientError(f"gave up waiting for job {job_id} after {failures} failed polls: {error}") from None
        else:
            line = f"job {job_id}: {document.get('state')} {document.get('task')} {document.get('task_percent')}%"
            if stream is not None and line != last:
                stream.write(f"\r{line.ljust(len(last))}" if tty else f"{line}\n")
                stream.flush()
            last = line
            if complete(document):
                if stream is not None and tty:
                    stream.write("\n")
                return document
        if deadline is not None and clock() >= deadline:
            raise ClientError(f"job {job_id} is not complete after {timeout:g} s ({last or 'no answer'}); it goes on on the service")
        sleep(interval)


def complete(document: dict[str, Any]) -> bool:
    """The service's `complete`, or Pacifica's rule for services that lack the field."""
    try:
        percent = float(document.get("task_percent") or 0)
    except (TypeError, ValueError):
        percent = 0.0
    return document.get("complete") is True or document.get("state") != jobs.OK or jobs.is_complete(
        str(document.get("state")), str(document.get("task")), percent)


# -- the commands ----------------------------------------------------------------------------------


def bundle_stream(args: argparse.Namespace, directory: Path, *, warn: Warn, exclude: Path | None = None) -> BundleStream:
    files = scan_tree(directory, warn=warn, exclude=exclude)
    transaction = transaction_items(submitter=args.submitter, project=args.project, instrument=args.instrument,
                                    key_values=args.kv)
    return BundleStream(files, transaction=transaction, hashtype=args.hashtype or DEFAULT_HASHTYPE)


def command_bundle(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    directory = Path(args.directory)
    to_stdout = args.output == "-"
    target = None if to_stdout else Path(args.output)
    stream = bundle_stream(args, directory, warn=lambda text: print(f"ingest: warning: {text}", file=err), exclude=target)
    progress = Progress(stream.size, verb="wrote", stream=None if args.quiet else err)
    if target is None:
        write_all(stream, sys.stdout.buffer, progress)
        return EXIT_OK
    # Written beside the target and renamed at the end: an interrupted run leaves no half bundle.
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".partial", delete=False)
    try:
        with handle:
            write_all(stream, handle, progress)
        os.replace(handle.name, target)
    except BaseException:
        os.unlink(handle.name)
        raise
    print(f"ingest: wrote {target}: {len(stream.files)} files, {stream.size} bytes", file=err)
    return EXIT_OK


def write_all(stream: BundleStream, handle: BinaryIO, progress: Progress) -> None:
    try:
        for chunk in stream:
            handle.write(chunk)
            progress.advance(len(chunk))
    finally:
        progress.finish()
    handle.flush()


def command_upload(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not args.url:
        raise UsageError("give the service's URL with --url or $INGEST_URL")
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout limits --wait; give both")
    service = Service(args.url, token=args.token or None)
    source = Path(args.source)
    body: Iterable[bytes]
    if args.source == "-":
        refuse_bundle_options(args, "a bundle read from stdin")
        body, size = iter(lambda: sys.stdin.buffer.read(CHUNK), b""), None
    elif source.is_dir():
        stream = bundle_stream(args, source, warn=lambda text: print(f"ingest: warning: {text}", file=err))
        body, size = stream, stream.size
    elif source.is_file():
        refuse_bundle_options(args, f"a bundle file ({source})")
        body, size = read_file(source), source.stat().st_size
    else:
        raise UsageError(f"{source} is neither a directory nor a bundle file")
    progress = Progress(size, verb="sent", stream=None if args.quiet else err)
    if args.resume or (size is not None and size >= args.resumable_threshold):
        from ingest.cli.resumable import upload_resumably  # it builds on this module

        opener = (lambda offset: read_file(source, offset)) if source.is_file() else \
            (lambda offset: skip_bytes(bundle_stream(args, source, warn=lambda text: None), offset))
        accepted = upload_resumably(service, opener, size=size or 0, name=source.name, args=args,
                                    progress=progress, err=err)
    else:
        accepted = service.upload(body, size=size, progress=progress)
    job_id = accepted["job_id"]
    if not args.wait:
        print(job_id, file=out)
        return report_failure(accepted, err)
    print(f"ingest: job {job_id} accepted; waiting for it to complete", file=err)
    final = accepted if complete(accepted) else wait_complete(
        service, job_id, timeout=args.timeout, stream=None if args.quiet else err)
    print(json.dumps(final, indent=2), file=out)
    return report_failure(final, err)


def report_failure(document: dict[str, Any], err: TextIO) -> int:
    if document.get("state") == jobs.OK:
        return EXIT_OK
    print(f"ingest: job {document.get('job_id')} {document.get('state')} at {document.get('task')!r}: "
          f"{document.get('exception') or '(no reason given)'}", file=err)
    return EXIT_FAILED


def refuse_bundle_options(args: argparse.Namespace, what: str) -> None:
    given = [flag for flag, value in (("--hashtype", args.hashtype), ("--submitter", args.submitter),
                                      ("--project", args.project), ("--instrument", args.instrument),
                                      ("--kv", args.kv)) if value]
    if given:
        raise UsageError(f"{', '.join(given)} describe a directory to bundle; {what} already has its metadata.txt")


def read_file(path: Path, offset: int = 0) -> Iterator[bytes]:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            while chunk := handle.read(CHUNK):
                yield chunk
    except OSError as error:
        raise ClientError(f"cannot read {path}: {error.strerror}") from None


def skip_bytes(pieces: Iterable[bytes], offset: int) -> Iterator[bytes]:
    """The bytes of `pieces` past `offset` (a regenerated bundle, resumed mid-way)."""
    for piece in pieces:
        if offset >= len(piece):
            offset -= len(piece)
            continue
        yield piece[offset:] if offset else piece
        offset = 0


def key_value(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def size_argument(text: str) -> int:
    """Bytes, with an optional K, M or G suffix (powers of 1024)."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    number, unit = (text[:-1], units[text[-1].upper()]) if text[-1:].upper() in units else (text, 1)
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"expected a size like 64M, got {text!r}")
    return int(number) * unit


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="ingest", description="Bundle a directory as a Pacifica bundle and upload it to the ingest service.",
        epilog="Exit codes: 0 done, 1 failed (job FAILED, refused, service unreachable), 2 usage error.")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bundle_options = argparse.ArgumentParser(add_help=False)
    group = bundle_options.add_argument_group("bundle options (for a directory)")
    group.add_argument("--hashtype", choices=sorted(ALGORITHMS), metavar="HASH",
                       help=f"checksum of each file (default {DEFAULT_HASHTYPE}; also md5, sha256, sha512, ...)")
    group.add_argument("--submitter", help="Transactions.submitter (a user id; digits are sent as a number)")
    group.add_argument("--project", help="Transactions.project (sent as a string)")
    group.add_argument("--instrument", help="Transactions.instrument (an instrument id; digits are sent as a number)")
    group.add_argument("--kv", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="a TransactionKeyValue entry; repeat for more")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")

    bundle = commands.add_parser(
        "bundle", parents=[bundle_options, quiet], help="write a bundle of a directory to a tar file",
        description="Write every regular file under DIR as data/<relative path> into a Pacifica bundle (an "
                    "uncompressed tar), with metadata.txt last. Symbolic links are skipped with a warning.")
    bundle.add_argument("directory", metavar="DIR", help="the directory whose files to bundle")
    bundle.add_argument("-o", "--output", required=True, metavar="FILE", help="the bundle to write ('-' for stdout)")
    bundle.set_defaults(run=command_bundle)

    upload = commands.add_parser(
        "upload", parents=[bundle_options, quiet], help="upload a directory or a bundle file; print the job id",
        description="Upload DIR (bundled on the fly, nothing written to disk) or a bundle file ('-' reads one "
                    "from stdin) to the ingest service. Prints the job id; with --wait, follows the job and prints "
                    "its final state document as JSON.")
    upload.add_argument("source", metavar="DIR|BUNDLE", help="a directory to bundle on the fly, or a bundle tar file")
    upload.add_argument("--url", default=os.environ.get("INGEST_URL"),
                        help="the service's base URL, e.g. http://ingest.example.org:8066 (default $INGEST_URL)")
    upload.add_argument("--token", default=os.environ.get("INGEST_TOKEN"),
                        help="bearer token for the service (default $INGEST_TOKEN, which other users cannot see in ps)")
    upload.add_argument("--wait", action="store_true", help="poll the job once a second until it is complete; "
                        "exit 0 if it ended OK, 1 if it FAILED")
    upload.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="with --wait, give up waiting after this long (exit 1; the job goes on)")
    upload.add_argument("--resumable-threshold", type=size_argument, default=RESUMABLE_THRESHOLD, metavar="BYTES",
                        help="send bundles of at least this size (default 64M) as a resumable tus upload, which "
                        "survives dropped connections")
    upload.add_argument("--chunk-size", type=size_argument, default=TUS_CHUNK, metavar="BYTES",
                        help="bytes per PATCH of a resumable upload (default 1G; streamed, not held in memory; "
                        "lower it behind a proxy that limits request bodies)")
    upload.add_argument("--resume", metavar="URL",
                        help="continue the resumable upload at URL (printed when it started) with the same DIR|BUNDLE")
    upload.set_defaults(run=command_upload)
    return root


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = parser().parse_args(argv)  # exits 2 on a usage error
    try:
        return args.run(args, out, err)
    except UsageError as error:
        print(f"ingest: {error}", file=err)
        return EXIT_USAGE
    except ClientError as error:
        print(f"ingest: {error}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("ingest: interrupted", file=err)
        return 130


if __name__ == "__main__":
    sys.exit(main())
