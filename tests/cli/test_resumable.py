"""The resumable client's pieces that need no service: replaying the source, sizes on the command line."""
from __future__ import annotations

import argparse

import pytest

from ingest.cli.bundling import skip_bytes
from ingest.cli.client import size_argument
from ingest.cli.errors import ClientError
from ingest.cli.resumable import Replay

DATA = bytes(range(256)) * 40


def pieces(offset: int) -> list[bytes]:
    return list(skip_bytes([DATA[i:i + 1000] for i in range(0, len(DATA), 1000)], offset))


def test_replay_continues_and_reopens_only_when_the_offset_moved() -> None:
    opened = []

    def opener(offset: int) -> list[bytes]:
        opened.append(offset)
        return pieces(offset)

    replay = Replay(opener)
    assert b"".join(replay.take(0, 2500)) == DATA[:2500]
    assert b"".join(replay.take(2500, 3000)) == DATA[2500:5500]  # the same stream goes on
    assert opened == [0]
    assert b"".join(replay.take(1234, 10)) == DATA[1234:1244]  # the service has less: start again from there
    assert opened == [0, 1234]
    with pytest.raises(ClientError, match="ended .* early"):
        b"".join(replay.take(1244, len(DATA)))


def test_sizes() -> None:
    assert size_argument("64M") == 64 * 1024 * 1024
    assert size_argument("1g") == 1024**3
    assert size_argument("4096") == 4096
    with pytest.raises(argparse.ArgumentTypeError):
        size_argument("lots")
