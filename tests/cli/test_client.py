"""The `ingest` client without the stack: the bundles it writes, and what it says on the wire.

The bundles are checked with the service's own parser (`TarScanner`, `parse_metadata`, `match`)
and against pacifica-uploader's `Bundler`, byte for byte. The HTTP side talks to a small recording
server on a real socket (the stack's tests cover the real API).
"""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pacifica.uploader.bundler import Bundler
from pacifica.uploader.metadata import MetaData, MetaObj

from ingest.bundle import TarScanner, match, parse_metadata
from ingest.cli import service
from ingest.cli.bundling import BundleStream, scan_tree, transaction_items
from ingest.cli.client import main
from ingest.cli.errors import ClientError
from ingest.cli.progress import Progress
from ingest.cli.service import Service, wait_complete

MTIME = 1_700_000_000
TREE = {
    "top.txt": b"hello\n",
    "empty.dat": b"",
    "mywork/experiment/notes.txt": b"notes\n" * 10,
    "mywork/raw/big.bin": bytes(range(256)) * 9000,  # > 2 MiB: several chunks
    "ünïcødé/файл.txt": b"unicode works",
    "deep/" + "d" * 120 + "/long-name-" + "n" * 90 + ".csv": b"a,b\n1,2\n",  # PAX long name
}


def make_tree(root: Path, files: dict[str, bytes] = TREE) -> Path:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (MTIME, MTIME))
    return root


def parse(raw: bytes) -> tuple[Any, list[tuple[Any, Any]], Any]:
    """The bundle as the service sees it; every listed file checked against its hash and size."""
    scanner = TarScanner()
    scanner.feed(raw)
    index = scanner.finish()
    manifest = parse_metadata(index.metadata)
    pairs = match(manifest, index)
    for entry, member in pairs:
        data = raw[member.data_offset:member.data_end]
        assert hashlib.new(entry.hashtype, data).hexdigest() == entry.hashsum
        assert len(data) == entry.size
    return manifest, pairs, index


def bundle_bytes(tree: Path, tmp_path: Path, *extra: str) -> bytes:
    output = tmp_path / "bundle.tar"
    assert main(["bundle", str(tree), "-o", str(output), "-q", *extra]) == 0
    return output.read_bytes()


# -- bundle --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hashtype", ["sha1", "md5", "sha256"])
def test_bundle_is_a_valid_pacifica_bundle(tmp_path: Path, hashtype: str) -> None:
    tree = make_tree(tmp_path / "tree")
    raw = bundle_bytes(tree, tmp_path, "--hashtype", hashtype, "--submitter", "10", "--project", "1234a",
                       "--instrument", "54", "--kv", "Tag=run-42", "--kv", "note=a=b")
    manifest, pairs, index = parse(raw)
    assert {entry.path for entry, _ in pairs} == {f"data/{relative}" for relative in TREE}
    assert index.members[-1].name == "metadata.txt"  # written last, as the official bundler does
    assert manifest.transactions == {"submitter": 10, "project": "1234a", "instrument": 54}
    kvs = [(item["key"],
            item["value"]) for item in manifest.document if item["destinationTable"] == "TransactionKeyValue"]
    assert kvs == [("Tag", "run-42"), ("note", "a=b")]
    files = {(item["subdir"], item["name"]): item for item in manifest.document if item["destinationTable"] == "Files"}
    top = files[("", "top.txt")]
    assert (top["hashtype"], top["mimetype"], top["size"]) == (hashtype, "text/plain", 6)
    assert top["mtime"] == top["ctime"] == "2023-11-14T22:13:20"
    assert files[("mywork/raw", "big.bin")]["mimetype"] == "application/octet-stream"
    assert len(raw) % 10240 == 0


def test_bundle_equals_what_pacificas_bundler_writes(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    ours = bundle_bytes(tree, tmp_path, "--submitter", "10", "--project", "1234a", "--instrument", "54",
                        "--kv", "Tag=run-42")
    metadata = MetaData([
        MetaObj(destinationTable="Transactions.submitter", value=10),
        MetaObj(destinationTable="Transactions.project", value="1234a"),
        MetaObj(destinationTable="Transactions.instrument", value=54),
        MetaObj(destinationTable="TransactionKeyValue", key="Tag", value="run-42"),
    ])
    handles = [(tree / relative).open("rb") for relative in sorted(TREE)]
    file_data = [{"name": f"data/{relative}", "size": len(TREE[relative]), "mtime": MTIME, "fileobj": handle}
                 for relative, handle in zip(sorted(TREE), handles, strict=True)]
    theirs = io.BytesIO()
    try:
        Bundler(metadata, file_data).stream(theirs)
    finally:
        for handle in handles:
            handle.close()
    assert ours == theirs.getvalue()


def test_stream_size_is_known_before_the_first_byte(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    for hashtype in ("sha1", "sha512", "blake2b"):
        stream = BundleStream(scan_tree(tree, warn=print), transaction=[], hashtype=hashtype)
        announced = stream.size
        assert len(b"".join(stream)) == announced


def test_links_and_special_files_are_skipped_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = make_tree(tmp_path / "tree", {"a.txt": b"a", "sub/b.txt": b"b"})
    (tree / "link.txt").symlink_to("a.txt")
    (tree / "linkdir").symlink_to("sub")
    (tree / "outside").symlink_to(tmp_path)
    os.mkfifo(tree / "fifo")
    _, pairs, _ = parse(bundle_bytes(tree, tmp_path))
    assert sorted(entry.path for entry, _ in pairs) == ["data/a.txt", "data/sub/b.txt"]
    err = capsys.readouterr().err
    assert (
        "link.txt: a symbolic link" in err and "linkdir: a symbolic link" in err and "outside: a symbolic link" in err
    )
    assert "fifo: not a regular file" in err


def test_an_empty_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "tree"
    (tree / "only" / "dirs").mkdir(parents=True)
    (tree / "link").symlink_to(tmp_path)
    assert main(["bundle", str(tree), "-o", str(tmp_path / "x.tar")]) == 2
    assert "holds no regular file to bundle" in capsys.readouterr().err
    assert not (tmp_path / "x.tar").exists()
    assert main(["bundle", str(tmp_path / "missing"), "-o", str(tmp_path / "x.tar")]) == 2


def test_names_the_service_would_refuse_are_refused_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = make_tree(tmp_path / "tree", {"good.txt": b"g"})
    (tree / os.fsdecode(b"bad-\xff.txt")).write_bytes(b"x")
    assert main(["bundle", str(tree), "-o", str(tmp_path / "x.tar")]) == 1
    assert "not valid UTF-8" in capsys.readouterr().err
    os.unlink(tree / os.fsdecode(b"bad-\xff.txt"))
    (tree / "back\\slash.txt").write_bytes(b"x")
    assert main(["bundle", str(tree), "-o", str(tmp_path / "x.tar")]) == 1
    assert "backslash" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tree"]  # no output, no partial file


def test_the_bundle_being_written_is_not_bundled_into_itself(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", {"a.txt": b"a"})
    output = tree / "bundle.tar"
    for _ in range(2):  # the second run finds the first one's output in the tree
        assert main(["bundle", str(tree), "-o", str(output), "-q"]) == 0
        _, pairs, _ = parse(output.read_bytes())
        assert [entry.path for entry, _ in pairs] == ["data/a.txt"]
    assert sorted(path.name for path in tree.iterdir()) == ["a.txt", "bundle.tar"]


def test_a_file_that_changes_after_listing_stops_the_stream_before_metadata(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", {"a.txt": b"a" * 100, "b.txt": b"b" * 100})
    stream = BundleStream(scan_tree(tree, warn=print), transaction=[])
    (tree / "b.txt").write_bytes(b"b" * 101)
    sent = bytearray()
    with pytest.raises(ClientError, match="b.txt changed after it was listed"):
        for chunk in stream:
            sent += chunk
    assert b"metadata.txt" not in sent


def test_transaction_values_follow_pacificas_types() -> None:
    items = transaction_items(submitter="10", project="1234", instrument="mass-spec", key_values=[("k", "v")])
    assert items == [
        {"destinationTable": "Transactions.submitter", "value": 10},
        {"destinationTable": "Transactions.project", "value": "1234"},
        {"destinationTable": "Transactions.instrument", "value": "mass-spec"},
        {"destinationTable": "TransactionKeyValue", "key": "k", "value": "v"},
    ]


# -- progress ------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_without_a_terminal_prints_a_line_now_and_then() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(4 * 1024 * 1024, verb="sent", stream=out, tty=False, every=10, clock=clock)
    for _ in range(4):
        clock.now += 4
        progress.advance(1024 * 1024)
    progress.finish()
    assert out.getvalue().splitlines() == [
        "sent 3.0 MiB of 4.0 MiB (75%) at 256.0 KiB/s",
        "sent 4.0 MiB of 4.0 MiB (100%) at 256.0 KiB/s in 16.0 s",
    ]
    assert "\r" not in out.getvalue()


def test_progress_on_a_terminal_redraws_one_line() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(None, verb="sent", stream=out, tty=True, every=0.1, clock=clock)
    for _ in range(3):
        clock.now += 1
        progress.advance(2048)
    progress.finish()
    assert out.getvalue().count("\r") == 4 and out.getvalue().count("\n") == 1
    assert out.getvalue().endswith("sent 6.0 KiB at 2.0 KiB/s in 3.0 s\n")


# -- the wire ------------------------------------------------------------------------------------


def state(job_id: int = 7, state: str = "OK", task: str = "UPLOADING", percent: str = "0.0",
          complete: bool = False, exception: str = "") -> dict[str, Any]:
    return {"job_id": job_id, "state": state, "task": task, "task_percent": percent, "complete": complete,
            "updated": "2026-11-27 17:31:26", "created": "2026-11-27 17:31:26", "exception": exception}


class Recorder(http.server.ThreadingHTTPServer):
    """Records uploads and polls; answers with `answer` and then the documents in `states`."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.uploads: list[tuple[dict[str, str], bytes]] = []
        self.polls: list[dict[str, str]] = []
        self.answer: tuple[int, dict[str, Any]] = (200, state())
        self.states = [state(task="ingest metadata", percent="100.0", complete=True)]
        self.refuse_early: tuple[int, dict[str, Any]] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        if self.server.refuse_early is not None:  # answer before reading the body, then drain it
            self.reply(*self.server.refuse_early, close=True)
            while self.rfile.read(65536):
                pass
            return
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = bytearray()
            while size := int(self.rfile.readline().strip(), 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = bytearray(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.uploads.append((dict(self.headers), bytes(body)))
        self.reply(*self.server.answer)

    def do_GET(self) -> None:
        self.server.polls.append({"path": self.path, **dict(self.headers)})
        states = self.server.states
        self.reply(200, states.pop(0) if len(states) > 1 else states[0])

    def reply(self, status: int, document: dict[str, Any], *, close: bool = False) -> None:
        raw = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(raw)
        self.wfile.flush()


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    thread = threading.Thread(target=recorder.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        recorder.shutdown()
        recorder.server_close()
        thread.join()


def test_upload_streams_exactly_the_bytes_bundle_writes(
        tmp_path: Path, server: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    tree = make_tree(tmp_path / "tree")
    written = bundle_bytes(tree, tmp_path, "--project", "p1")
    assert main(["upload", str(tree), "--url", server.url, "--project", "p1", "--token", "s3cret"]) == 0
    headers, body = server.uploads[0]
    assert body == written
    assert headers["Content-Length"] == str(len(written))
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Authorization"] == "Bearer s3cret"
    out, err = capsys.readouterr()
    assert out == "7\n"  # the job id, alone on stdout
    assert f"sent {service.human(len(written))} of {service.human(len(written))} (100%)" in err


def test_upload_of_a_bundle_file_and_the_token_from_the_environment(
        tmp_path: Path, server: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "bundle.tar"
    bundle.write_bytes(bundle_bytes(make_tree(tmp_path / "tree"), tmp_path))
    monkeypatch.setenv("INGEST_TOKEN", "from-env")
    monkeypatch.setenv("INGEST_URL", server.url)
    assert main(["upload", str(bundle), "-q"]) == 0
    headers, body = server.uploads[0]
    assert body == bundle.read_bytes() and headers["Authorization"] == "Bearer from-env"


def test_a_stream_of_unknown_length_is_sent_chunked(server: Recorder) -> None:
    pieces = [b"x" * 1000, b"y" * 70000, b"z"]
    Service(server.url).upload(iter(pieces), size=None, progress=Progress(None, verb="sent", stream=None))
    headers, body = server.uploads[0]
    assert headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in headers
    assert body == b"".join(pieces)


def test_wait_prints_the_final_state_and_exits_by_its_outcome(
        tmp_path: Path, server: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    tree = make_tree(tmp_path / "tree", {"a.txt": b"a"})
    assert main(["upload", str(tree), "--url", server.url, "--wait", "-q"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out) == server.states[0]
    assert server.polls[0]["path"] == "/get_state?job_id=7"

    server.states = [state(state="FAILED", task="ingest files", complete=True,
                           exception="data/a.txt does not match its sha1 hashsum")]
    assert main(["upload", str(tree), "--url", server.url, "--wait"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["state"] == "FAILED"
    assert "job 7 FAILED at 'ingest files': data/a.txt does not match its sha1 hashsum" in err


def test_a_job_refused_in_the_upload_answer_fails_without_polling(
        tmp_path: Path, server: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bad.tar"
    bundle.write_bytes(b"not a tar" * 100)
    server.answer = (200, state(state="FAILED", task="open tar", complete=True, exception="the body is not a tar"))
    assert main(["upload", str(bundle), "--url", server.url, "-q"]) == 1
    out, err = capsys.readouterr()
    assert out == "7\n" and "the body is not a tar" in err and not server.polls


def test_waiting_shows_each_new_task_and_percent(server: Recorder) -> None:
    server.states = [state(task="open tar", percent="100.0"), state(task="ingest files", percent="40.0"),
                     state(task="ingest files", percent="40.0"),
                     state(task="ingest metadata", percent="100.0", complete=True)]
    out = io.StringIO()
    final = wait_complete(Service(server.url), 7, timeout=None, stream=out, tty=False, interval=0)
    assert final["complete"] is True and len(server.polls) == 4
    assert out.getvalue().splitlines() == [
        "job 7: OK open tar 100.0%", "job 7: OK ingest files 40.0%", "job 7: OK ingest metadata 100.0%"]


def test_waiting_on_a_terminal_redraws_one_line_like_the_byte_progress(server: Recorder) -> None:
    server.states = [state(task="ingest files", percent="40.0"),
                     state(task="ingest metadata", percent="100.0", complete=True)]
    out = io.StringIO()
    wait_complete(Service(server.url), 7, timeout=None, stream=out, tty=True, interval=0)
    assert out.getvalue() == "\rjob 7: OK ingest files 40.0%\rjob 7: OK ingest metadata 100.0%\n"


def dead_url() -> str:
    """A URL nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_an_unreachable_service_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = dead_url()
    tree = make_tree(tmp_path / "tree", {"a.txt": b"a"})
    assert main(["upload", str(tree), "--url", url, "-q"]) == 1
    assert f"cannot talk to the ingest service at {url}: Connection refused" in capsys.readouterr().err


def test_an_early_refusal_stops_the_upload_and_is_reported(
        tmp_path: Path, server: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    tree = make_tree(tmp_path / "tree", {"big.bin": bytes(64 * 1024 * 1024)})
    server.refuse_early = (413, {"status": "413 Request Entity Too Large",
                                 "message": "the bundle is 67119104 bytes; this service accepts at most 1000 bytes"})
    assert main(["upload", str(tree), "--url", server.url, "-q"]) == 1
    err = capsys.readouterr().err
    assert "413 Request Entity Too Large: the bundle is 67119104 bytes; this service accepts at most 1000 bytes" in err


def test_a_missing_token_gets_a_hint(tmp_path: Path, server: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    server.refuse_early = (401, {"status": "401 Unauthorized", "message": "a bearer token is required"})
    assert main(["upload", str(make_tree(tmp_path / "tree", {"a": b"a"})), "--url", server.url, "-q"]) == 1
    assert "a bearer token is required; give a token with --token or $INGEST_TOKEN" in capsys.readouterr().err


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv, words", [
    (["--help"], ["bundle", "upload", "Exit codes"]),
    (["bundle", "--help"], ["--hashtype", "--submitter", "--kv", "metadata.txt last", "Symbolic links"]),
    (["upload", "--help"], ["--url", "--token", "INGEST_TOKEN", "--wait", "--timeout"]),
])
def test_help(argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(word in text for word in words), text


@pytest.mark.parametrize("argv, words", [
    (["bundle", ".", "-o", "x.tar", "--kv", "novalue"], "expected key=value"),
    (["bundle", ".", "-o", "x.tar", "--hashtype", "crc32"], "invalid choice"),
    (["upload", "."], "--url"),
    (["upload", ".", "--url", "ftp://host/"], "base URL"),
    (["upload", ".", "--url", "http://h:1", "--timeout", "5"], "--timeout limits --wait"),
    (["upload", "{bundle}", "--url", "http://h:1", "--submitter", "10"], "already has its metadata.txt"),
])
def test_usage_errors_exit_2(argv: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INGEST_URL", raising=False)
    bundle = tmp_path / "b.tar"
    bundle.write_bytes(b"x")
    argv = [arg.replace("{bundle}", str(bundle)) for arg in argv]
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    assert words in capsys.readouterr().err


def test_waiting_gives_up_at_the_timeout(server: Recorder) -> None:
    server.states = [state(task="ingest files", percent="10.0")]
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.now += 1

    with pytest.raises(ClientError, match="job 7 is not complete after 5 s .*ingest files 10.0%.*goes on"):
        wait_complete(Service(server.url), 7, timeout=5, stream=None, clock=clock, sleep=sleep)
    assert len(server.polls) == 6


def test_waiting_gives_up_on_a_service_that_stays_unreachable() -> None:
    with pytest.raises(ClientError, match=f"gave up waiting for job 7 after {service.POLL_FAILURES} failed polls"):
        wait_complete(Service(dead_url()), 7, timeout=None, stream=None, interval=0)
