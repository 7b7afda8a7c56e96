"""What the tus tests need besides the stack: a proxy that cuts connections, a second API replica, bundles."""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from ingest.local.launcher import Stack, http_ok, stop_pid
from tests.integration.bundles import bundle

TUS = {"Tus-Resumable": "1.0.0"}


class CuttingProxy:
    """Forwards TCP to `target`; closes the connection once the client has sent past each of `cuts` (bytes)."""

    def __init__(self, target_port: int, cuts: list[int], *, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay  # seconds per upward read: a slow link
        self.cuts = sorted(cuts)
        self.sent = 0
        self.cut_count = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upward: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if upward:
                    if self.delay:
                        time.sleep(self.delay)
                    with self._lock:
                        self.sent += len(data)
                        cut = bool(self.cuts) and self.sent >= self.cuts[0]
                        if cut:
                            self.cuts.pop(0)
                            self.cut_count += 1
                    if cut:  # the network drops the connection: both sides see it closed
                        break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._stop = True
        self._server.close()


class ApiReplica:
    """Another API process on the same stack (same Kubernetes API, same object store), on its own port."""

    def __init__(self, stack: Stack, extra_env: dict[str, str] | None = None) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = stack.process_env("api") | {"INGEST_API_PORT": str(self.port)} | dict(extra_env or {})
        self.log = open(stack.directory / "logs" / f"api-{self.port}.log", "ab")
        self.process = subprocess.Popen(stack.command("api"), env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, cwd=stack.directory)
        deadline = time.monotonic() + 60
        while not http_ok(f"{self.url}/readyz"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the second API replica did not start; see {self.log.name}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_pid(self.process.pid)
        self.process.wait(timeout=30)
        self.log.close()


def bundle_file(path: Path, megabytes: int, file_megabytes: int = 16) -> dict[str, bytes]:
    """A bundle of random files on disk, about `megabytes` large; returns the files' sha1 by archive key suffix."""
    files = {}
    for index in range(max(1, megabytes // file_megabytes)):
        files[f"run/part{index:03d}.bin"] = os.urandom(file_megabytes * 1024 * 1024)
    raw, _ = bundle(files)
    path.write_bytes(raw)
    return {name: hashlib.sha1(data).hexdigest() for name, data in files.items()}


def create(client: httpx.Client, length: int, **headers: str) -> httpx.Response:
    metadata = "filename " + base64.b64encode(b"bundle.tar").decode()
    asked = {**TUS, "Upload-Length": str(length), "Upload-Metadata": metadata, **headers}
    return client.post("/uploads/", headers=asked)


def patch(client: httpx.Client, url: str, offset: int, body: Any, **headers: str) -> httpx.Response:
    return client.patch(url, content=body, headers={
        **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream", **headers})


def offset_of(client: httpx.Client, url: str) -> int:
    response = client.head(url, headers=TUS)
    assert response.status_code == 200, response.status_code
    return int(response.headers["Upload-Offset"])


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def parts_gone(stack_s3: Any, key: str, upload_id: str) -> bool:
    from minio.error import S3Error

    try:
        stack_s3._list_parts("ingest-staging", key, upload_id)
    except S3Error as error:
        return error.code in ("NoSuchUpload", "NoSuchKey")  # RGW says NoSuchKey for an aborted upload
    return False


