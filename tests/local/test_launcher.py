"""`ingest-local`: up --detach publishes a working stack, status tells, down leaves no process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.stack


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ingest-local"), *args], capture_output=True, text=True, timeout=timeout,
                          env=env or dict(os.environ))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_up_detach_status_down(tmp_path: Path) -> None:
    folder = str(tmp_path / "stack")
    up = run("--dir", folder, "up", "--detach", "--ports", "auto", "--store-size", "8G")
    assert up.returncode == 0, up.stderr
    state = json.loads(up.stdout)
    try:
        assert json.loads((Path(folder) / "stack.json").read_text())["api_url"] == state["api_url"]
        for key in ("api_url", "kubeconfig", "namespace", "s3", "move_roots", "policy_url", "metadata_url", "pids"):
            assert key in state
        assert {"endpoint", "access_key", "secret_key", "staging_bucket", "archive_bucket"} <= set(state["s3"])
        with urllib.request.urlopen(state["api_url"]) as response:
            assert json.load(response) == {"message": "Pacifica Ingest Up and Running"}
        kubectl = dict(os.environ, KUBECONFIG=state["kubeconfig"])
        crds = subprocess.run([str(BIN / "kubectl"), "get", "crd"], env=kubectl, capture_output=True, text=True)
        assert "ingestjobs.ingest.pacifica.org" in crds.stdout, crds.stderr
        jobs = subprocess.run([str(BIN / "kubectl"), "get", "ingestjobs"], env=kubectl, capture_output=True, text=True)
        assert jobs.returncode == 0, jobs.stderr
        status = run("--dir", folder, "status")
        assert status.returncode == 0 and all(json.loads(status.stdout).values()), status.stdout
        usage = json.loads(status.stdout)["object_store"]  # the store's capacity and how full it is
        assert usage["size_bytes"] == 8 * 2**30 and 0 < usage["used_bytes"] < usage["size_bytes"], usage
        assert 0 <= usage["used_percent"] < 100 and usage["host_free_bytes"] > 0
        # /move works out of the box: the stack's drop folder is its default root
        assert state["move_roots"] == [str((Path(folder) / "move").resolve())] and (Path(folder) / "move").is_dir()
    finally:
        down = run("--dir", folder, "down")
    assert down.returncode == 0, down.stderr
    assert [pid for pid in state["pids"].values() if alive(pid)] == [], "down must leave no process behind"
    assert run("--dir", folder, "down").returncode == 0, "down is idempotent"
    assert run("--dir", folder, "status").returncode == 1
