"""The ingest service as the client sees it: uploads and state polls.

Only the standard library talks HTTP (`http.client`): httpx is a test dependency, not a runtime
one, and the client installs nothing else.
"""
from __future__ import annotations

import http.client
import json
import select
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, Final, TextIO

from ingest import jobs
from ingest.cli.errors import ClientError, UsageError
from ingest.cli.progress import Progress, StatusLine, human

IO_TIMEOUT: Final = 120.0  # seconds one socket read or write may take
POLL_INTERVAL: Final = 1.0  # pacifica-uploader polls once a second
POLL_FAILURES: Final = 30  # consecutive failed polls (about 30 s) before --wait gives up


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
        return kind(self.parts.hostname or "", self.parts.port, timeout=self.timeout)

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
                    raise ClientError(
                        f"the connection to {self.url} broke after {human(progress.done)}: {broken}") from None
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
            raise ServiceError(response.status, f"the service refused the {what} request: "
                                                f"{response.status} {response.reason}: {text}{hint}")
        if not isinstance(document, dict) or not isinstance(document.get("job_id"), int):
            raise ClientError(f"the service answered the {what} request with something that is not a job state: "
                              f"{raw[:200]!r}")
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
    status = StatusLine(stream, tty=tty)
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
            if line != last:
                status.show(line)
            last = line
            if complete(document):
                status.close()
                return document
        if deadline is not None and clock() >= deadline:
            raise ClientError(f"job {job_id} is not complete after {timeout:g} s ({last or 'no answer'}); "
                              "it goes on on the service")
        sleep(interval)


def complete(document: dict[str, Any]) -> bool:
    """The service's `complete`, or Pacifica's rule for services that lack the field."""
    try:
        percent = float(document.get("task_percent") or 0)
    except (TypeError, ValueError):
        percent = 0.0
    return document.get("complete") is True or document.get("state") != jobs.OK or jobs.is_complete(
        str(document.get("state")), str(document.get("task")), percent)
