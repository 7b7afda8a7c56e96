"""The worker's copy decisions without a stack: verify before the last byte, stop on the first failure.

`VerifyingReader` stands between a source and the SDK's upload: the size and digest are checked on
the read that delivers a file's last byte, so a wrong file raises before the SDK holds its final
part (a single PUT is never sent, a multipart upload is aborted). `copy_all` runs batches in
parallel; the first real failure stops the others and is the one raised. Sources here are
in-memory streams; nothing reaches an object store.
"""
from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from typing import BinaryIO

import pytest

from ingest.bundle import BundleError
from ingest.config import Settings
from ingest.storage import Storage
from ingest.worker.transfer import Batch, Copy, Stopped, VerifyingReader, Window, copy_all

TASK = "ingest files"
DATA = bytes(range(256)) * 40  # 10,240 bytes


class Trickle(io.RawIOBase):
    """A source that hands over at most `most` bytes per read, as a network stream may."""

    def __init__(self, data: bytes, most: int) -> None:
        self.data = memoryview(data)
        self.most = most

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self.most if size < 0 else min(size, self.most)
        piece, self.data = bytes(self.data[:size]), self.data[size:]
        return piece


def copy_of(data: bytes, *, hashsum: str | None = None, size: int | None = None,
            source: Callable[[], BinaryIO] | None = None, label: str = "data/run1/a.bin") -> Copy:
    return Copy(label=label, key=f"7/{label}", size=len(data) if size is None else size, hashtype="sha1",
                hashsum=hashsum or hashlib.sha1(data).hexdigest(), open=source or (lambda: io.BytesIO(data)),
                metadata={})


def reader_of(copy: Copy, counted: list[int] | None = None, stop: threading.Event | None = None) -> VerifyingReader:
    return VerifyingReader(copy.open(), copy, TASK, (counted if counted is not None else []).append,
                           stop or threading.Event())


@pytest.mark.parametrize("sizes", [[DATA.__len__()], [1000], [1, 4096, 333], [-1]])
def test_a_good_file_passes_whole_and_counted(sizes: list[int]) -> None:
    counted: list[int] = []
    reader = reader_of(copy_of(DATA, source=lambda: Trickle(DATA, 700)), counted)
    out, turn = bytearray(), 0
    while piece := reader.read(sizes[turn % len(sizes)]):
        out += piece
        turn += 1
    assert bytes(out) == DATA and sum(counted) == len(DATA) and reader.verified
    assert reader.read(10) == b""  # nothing past the declared size


def test_short_reads_of_the_source_still_fill_each_read() -> None:
    reader = reader_of(copy_of(DATA, source=lambda: Trickle(DATA, 1)))
    assert len(reader.read(5000)) == 5000  # the SDK appends reads to a part: full reads keep that linear


def test_a_wrong_digest_is_raised_by_the_read_of_the_last_byte() -> None:
    wrong = hashlib.sha1(b"something else").hexdigest()
    reader = reader_of(copy_of(DATA, hashsum=wrong))
    assert len(reader.read(4096)) == 4096 and len(reader.read(4096)) == 4096
    with pytest.raises(BundleError) as failure:
        reader.read(4096)  # the last 2,048 bytes never reach the SDK
    assert failure.value.task == TASK
    assert failure.value.message == (f"data/run1/a.bin: sha1 mismatch: metadata.txt says {wrong}, "
                                     f"the file's bytes hash to {hashlib.sha1(DATA).hexdigest()}")


def test_a_source_shorter_than_declared_fails_the_file() -> None:
    reader = reader_of(copy_of(DATA, size=len(DATA) + 10))
    with pytest.raises(BundleError, match=r"data/run1/a.bin: the source ended after \d+ of 10250 bytes"):
        reader.read(-1)


def test_a_short_source_is_reported_with_the_bytes_that_came() -> None:
    reader = reader_of(copy_of(DATA, size=len(DATA) + 10))
    with pytest.raises(BundleError, match=r"the source ended after 10240 of 10250 bytes"):
        reader.read(-1)


def test_an_empty_file_is_checked_too() -> None:
    assert reader_of(copy_of(b"")).read(100) == b""
    wrong = reader_of(copy_of(b"", hashsum="0" * 40))
    with pytest.raises(BundleError, match="sha1 mismatch"):
        wrong.verify()


def test_a_stop_ends_the_copy_at_its_next_read() -> None:
    stop = threading.Event()
    reader = reader_of(copy_of(DATA), stop=stop)
    reader.read(100)
    stop.set()
    with pytest.raises(Stopped):
        reader.read(100)


def test_a_window_is_read_once_for_all_its_members() -> None:
    fetched: list[int] = []

    def fetch() -> bytes:
        fetched.append(1)
        return DATA[1000:5000]

    window = Window(fetch, 1000)
    assert window.slice(1000, 10).read() == DATA[1000:1010]
    assert window.slice(4990, 10).read() == DATA[4990:5000]
    assert window.slice(2048, 0).read() == b""
    assert len(fetched) == 1
    window.release()  # the bytes go as soon as the batch is done
    assert window.slice(3000, 5).read() == DATA[3000:3005] and len(fetched) == 2


# -- copy_all: which failure wins ------------------------------------------------------------------
@pytest.fixture(scope="module")
def storage() -> Storage:
    """A real Storage; these copies fail or stop before any request is made."""
    return Storage(Settings.from_env({}))


def failing(message: str) -> Callable[[], BinaryIO]:
    def source() -> BinaryIO:
        raise BundleError(TASK, message)
    return source


def stopping_when(stop: threading.Event) -> Callable[[], BinaryIO]:
    """A copy still in flight: it notices the stop (as `VerifyingReader.read` does) and ends."""
    def source() -> BinaryIO:
        assert stop.wait(30), "copy_all never stopped the other copies"
        raise Stopped("data/other")
    return source


def test_the_first_failure_stops_the_other_copies_and_is_the_one_raised(storage: Storage) -> None:
    stop = threading.Event()
    batches = [Batch([copy_of(DATA, source=stopping_when(stop), label="data/slow")]),
               Batch([copy_of(DATA, source=failing("data/bad: sha1 mismatch"), label="data/bad")])]
    with pytest.raises(BundleError, match="data/bad: sha1 mismatch"):
        copy_all(storage, batches, task=TASK, concurrency=2, on_bytes=lambda _: None, stop=stop)
    assert stop.is_set()


def test_a_worker_asked_to_stop_ends_with_stopped_not_a_failure(storage: Storage) -> None:
    stop = threading.Event()
    stop.set()
    opened: list[str] = []
    batches = [Batch([copy_of(DATA, source=lambda: opened.append("x") or io.BytesIO(DATA))]) for _ in range(3)]
    with pytest.raises(Stopped, match="asked to stop"):
        copy_all(storage, batches, task=TASK, concurrency=2, on_bytes=lambda _: None, stop=stop)
    assert opened == []  # no copy starts once the stop is set


def test_nothing_to_copy_is_done_at_once(storage: Storage) -> None:
    copy_all(storage, [], task=TASK, concurrency=4, on_bytes=lambda _: None, stop=threading.Event())
