"""A second API replica of the test stack, started with other settings (auth, budgets, ...)."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ingest.local.launcher import Stack, http_ok, stop_pid
from ingest.local.objectstore import free_port


@contextlib.contextmanager
def api_replica(stack: Stack, folder: Path, env: dict[str, str]) -> Iterator[str]:
    """Start `python -m ingest.api` with the stack's settings plus `env`; yield its URL; stop it by pid."""
    port = free_port()
    log_path = folder / f"api-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "ingest.api"],
                                   env=stack.process_env("api") | {"INGEST_API_PORT": str(port)} | env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not http_ok(f"{url}/readyz"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the API replica did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield url
    finally:
        stop_pid(process.pid)


def start_failure(stack: Stack, env: dict[str, str], timeout: float = 60) -> str:
    """Run an API replica that must refuse to start; return what it printed."""
    result = subprocess.run([sys.executable, "-m", "ingest.api"],
                            env=stack.process_env("api") | {"INGEST_API_PORT": str(free_port())} | env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode != 0, "the API started with settings it must refuse"
    return result.stdout + result.stderr
