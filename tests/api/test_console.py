"""The console's endpoints and page logic without a cluster: query parsing, who may read and act,
documented shapes, and the browser's bundle writer (ui/bundle.js, run under Node) against the
command line's bundle for the same files."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from starlette.exceptions import HTTPException

from ingest import jobs
from ingest.api.caller import Caller
from ingest.api.jobdetail import actions, problems
from ingest.api.joblist import DEFAULT_LIMIT, Query, list_item, parse_query
from ingest.api.openapi import DOCUMENT
from ingest.bundle import parse_metadata
from ingest.cli.client import BundleStream, scan_tree, transaction_items

UI = Path(__file__).parents[2] / "ingest" / "api" / "ui"


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]})


def job(job_id: int, user: str | None, **status: Any) -> dict[str, Any]:
    body = jobs.new_job(job_id=job_id, operation="upload", user=user, staged_bucket="s", staged_key="k")
    body["status"].update(status)
    return body


def test_query_defaults_and_bounds() -> None:
    assert parse_query({}) == Query(limit=DEFAULT_LIMIT, start=None, state=None, incomplete=False)
    assert parse_query({"limit": "500", "continue": "42", "state": "FAILED", "incomplete": "true"}) == \
        Query(limit=500, start=42, state="FAILED", incomplete=True)
    for bad in ({"limit": ""}, {"limit": "0"}, {"limit": "501"}, {"limit": "-1"}, {"limit": "١"}, {"continue": "abc"},
                {"continue": "1" * 19}, {"incomplete": "maybe"}, {"state": "x" * 65}):
        with pytest.raises(HTTPException) as error:
            parse_query(bad)
        assert error.value.status_code == 400


def test_filters_match_state_and_completeness() -> None:
    failed = list_item(job(3, None, **jobs.progress(jobs.FAILED, jobs.INGEST_FILES, 0.0, "broken")))
    running = list_item(job(4, None, **jobs.progress(jobs.OK, jobs.INGEST_FILES, 50.0)))
    assert Query(50, None, "FAILED", False).matches(failed) and not Query(50, None, "FAILED", False).matches(running)
    assert Query(50, None, None, True).matches(running) and not Query(50, None, None, True).matches(failed)


def test_who_reads_what() -> None:
    alices, bobs, anonymous = job(1, "alice"), job(2, "bob"), job(3, None)
    open_service = Caller(user=None, authenticated=False, admin=False)
    assert all(open_service.may_read(j) for j in (alices, bobs, anonymous))
    alice = Caller(user="alice", authenticated=True, admin=False)
    assert alice.may_read(alices) and not alice.may_read(bobs) and not alice.may_read(anonymous)
    root = Caller(user="root", authenticated=True, admin=True)
    assert all(root.may_read(j) for j in (alices, bobs, anonymous))


def test_actions_only_for_administrators_and_only_where_they_fit() -> None:
    root, alice = Caller("root", True, True), Caller("alice", True, False)
    running = jobs.state_document(job(1, "alice", **jobs.progress(jobs.OK, jobs.INGEST_FILES, 10.0)))
    failed = jobs.state_document(job(2, "alice", **jobs.progress(jobs.FAILED, jobs.INGEST_FILES, 0.0, "x")))
    done = jobs.state_document(job(3, "alice", **jobs.progress(jobs.OK, jobs.INGEST_METADATA, 100.0)))
    assert actions(running, root) == ["fail", "cancel"]
    assert actions(failed, root) == ["retry"] and actions(done, root) == []
    assert actions(running, alice) == actions(failed, alice) == []


def test_problems_take_any_shape_without_failing() -> None:
    listed = [{"file": "data/a.txt", "reason": "digest", "detail": "sha1 mismatch"}, "junk", {"file": 7}]
    body = job(1, None, problems=listed)
    assert problems(body) == [{"file": "data/a.txt", "reason": "digest", "detail": "sha1 mismatch"},
                              {"file": "7", "reason": "", "detail": ""}]


def test_list_items_keep_to_the_documented_schema() -> None:
    for item in (list_item(job(1, "alice")), list_item(job(2, None))):
        schema("JobListItem").validate(item)
    schema("JobList").validate({"jobs": [list_item(job(1, "alice"))], "continue": None})


# -- ui/bundle.js ------------------------------------------------------------------------------------

NODE_BUILD = """
globalThis.window = globalThis;
require(process.argv[2]);
const fs = require("fs");
const spec = JSON.parse(fs.readFileSync(0, "utf8"));
(async () => {
  const files = spec.files.map((f) => ({
    path: f.path,
    file: new File([fs.readFileSync(f.disk)], f.path.split("/").pop(), { type: f.type, lastModified: f.mtime * 1000 }),
  }));
  const bundle = await window.IngestBundle.buildBundle(files, spec.fields, { hashtype: spec.hashtype });
  process.stdout.write(Buffer.from(await bundle.arrayBuffer()));
})().catch((error) => { console.error(error); process.exit(1); });
"""


@pytest.mark.parametrize("hashtype", ["sha1", "sha256"])
def test_browser_bundle_matches_the_command_lines(tmp_path: Path, hashtype: str) -> None:
    root = tmp_path / "run"
    contents = {"notes.txt": b"first light\n", "spectra/größe-α.csv": b"1,2\n" * 700, "empty.dat": b"",
                "deep/" + "n" * 120 + ".txt": os.urandom(1000)}
    for relative, data in contents.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
        os.utime(root / relative, (1_700_000_000, 1_700_000_000))
    sources = scan_tree(root, warn=lambda _: None)
    transaction = transaction_items(submitter="10", project="1234a", instrument=None, key_values=[("Tag", "run-42")])
    expected = BundleStream(sources, transaction=transaction, hashtype=hashtype)
    cli_metadata = json.loads(expected.metadata_bytes([""] * len(sources)))  # the fields, sums aside

    script = tmp_path / "build.js"
    script.write_text(NODE_BUILD)
    spec = {
        "files": [{"path": s.relative, "disk": str(s.path), "mtime": s.mtime, "type": item["mimetype"]}
                  for s, item in zip(sources, cli_metadata[len(transaction):], strict=True)],
        "fields": {"submitter": "10", "project": "1234a", "instrument": "", "keyValues": [["Tag", "run-42"]]},
        "hashtype": hashtype,
    }
    built = subprocess.run(["node", str(script), str(UI / "bundle.js")], input=json.dumps(spec).encode(),
                           capture_output=True, timeout=60)
    assert built.returncode == 0, built.stderr.decode()
    tar = built.stdout
    assert len(tar) == expected.size and len(tar) % tarfile.RECORDSIZE == 0

    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        members = {member.name: archive.extractfile(member).read() for member in archive.getmembers()}
        assert [member.name for member in archive.getmembers()][-1] == "metadata.txt"
    assert {name: data for name, data in members.items() if name != "metadata.txt"} == \
        {f"data/{relative}": data for relative, data in contents.items()}
    document = json.loads(members["metadata.txt"])
    assert [{k: v for k, v in item.items() if k != "hashsum"} for item in document] == \
        [{k: v for k, v in item.items() if k != "hashsum"} for item in cli_metadata]
    manifest = parse_metadata(members["metadata.txt"])
    for entry in manifest.files:
        assert entry.hashsum == hashlib.new(hashtype, members[entry.path]).hexdigest()


def test_the_console_is_served_from_the_package_with_a_strict_policy() -> None:
    from starlette.testclient import TestClient

    from ingest.api.app import create_app
    from ingest.config import Settings

    client = TestClient(create_app(Settings.from_env({})))  # no lifespan: static files need no services
    page = client.get("/ui/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for script in ("console.js", "bundle.js", "vendor/tus.min.js", "console.css"):
        assert f'"{script}"' in page.text
        assert client.get(f"/ui/{script}").status_code == 200
    assert client.get("/ui", follow_redirects=False).headers["location"].endswith("/ui/")
