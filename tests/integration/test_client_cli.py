"""The `ingest` command against the whole local stack, run as a scientist runs it: a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from minio import Minio

from ingest.local.launcher import Stack
from tests.integration.bundles import TRANSACTION, bundle, files_entry
from tests.integration.helpers import archive_keys, wait_complete

pytestmark = pytest.mark.stack

INGEST = Path(sys.prefix) / "bin" / "ingest"


def ingest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(INGEST), *args], capture_output=True, text=True, timeout=180)


def make_tree(root: Path, count: int) -> dict[str, bytes]:
    files = {
        f"run-{index % 7}/sample-{index:03d}.dat": f"sample {index}\n".encode() * (index + 1) for index in range(count)
    }
    files["top level ünïcødé.txt"] = b"top\n"
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return files


def test_upload_of_a_300_file_tree_waits_for_the_final_state(stack: Stack, s3: Minio, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "tree", 299)
    result = ingest("upload", str(tmp_path / "tree"), "--url", stack.api_url, "--wait",
                    "--submitter", "10", "--project", "1234a", "--instrument", "54", "--kv", "Tag=cli")
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout)
    assert (final["state"], final["task"], final["task_percent"],
            final["complete"]) == ("OK", "ingest metadata", "100.0", True)
    job_id = final["job_id"]
    # Progress on stderr, in its non-terminal form: whole lines, the last one at 100%.
    lines = result.stderr.splitlines()
    assert "\r" not in result.stderr
    assert any(line.startswith("sent ") and "(100%)" in line for line in lines), result.stderr
    assert f"ingest: job {job_id} accepted; waiting for it to complete" in lines
    assert lines[-1] == f"job {job_id}: OK ingest metadata 100.0%"
    keys = set(archive_keys(s3, job_id))
    assert keys == {f"{job_id}/{relative}" for relative in files} | {f"{job_id}.metadata.json"}
    assert s3.get_object("ingest-archive", f"{job_id}/run-3/sample-010.dat").read() == files["run-3/sample-010.dat"]
    document = json.loads(s3.get_object("ingest-archive", f"{job_id}.metadata.json").read())
    assert {"destinationTable": "TransactionKeyValue", "key": "Tag", "value": "cli"} in document
    assert {"destinationTable": "Transactions.submitter", "value": 10} in document


def test_a_bundle_written_by_ingest_bundle_uploads_and_prints_the_job_id(
        stack: Stack, api: httpx.Client, tmp_path: Path) -> None:
    make_tree(tmp_path / "tree", 5)
    written = ingest("bundle", str(tmp_path / "tree"), "-o", str(tmp_path / "b.tar"), "--hashtype", "sha256")
    assert written.returncode == 0, written.stderr
    result = ingest("upload", str(tmp_path / "b.tar"), "--url", stack.api_url)
    assert result.returncode == 0, result.stderr
    job_id = int(result.stdout)
    assert wait_complete(api, job_id)["state"] == "OK"


def test_a_failed_job_exits_1_with_its_exception(stack: Stack, tmp_path: Path) -> None:
    metadata = TRANSACTION + [files_entry("a.txt", "", b"what metadata.txt promised")]
    body, _ = bundle({"a.txt": b"what the tar carries!!!!!!"}, metadata=metadata)
    (tmp_path / "bad.tar").write_bytes(body)
    result = ingest("upload", str(tmp_path / "bad.tar"), "--url", stack.api_url, "--wait")
    assert result.returncode == 1
    final = json.loads(result.stdout)
    assert (final["state"], final["complete"]) == ("FAILED", True)
    assert final["exception"] and final["exception"].splitlines()[0] in result.stderr
    assert f"ingest: job {final['job_id']} FAILED at '{final['task']}'" in result.stderr


def test_a_tar_the_service_cannot_open_fails_at_once(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "bad.tar").write_bytes(b"this is not a tar archive at all" * 40)
    result = ingest("upload", str(tmp_path / "bad.tar"), "--url", stack.api_url, "-q")
    assert result.returncode == 1
    assert result.stdout.strip().isdigit()
    assert "FAILED at 'open tar'" in result.stderr
