"""Hostile bundles made by code: tar headers written byte by byte, for what `tarfile` will not write.

`tarfile` refuses (or silently repairs) most of what an attacker sends: a NUL inside a PAX path,
a sparse typeflag, a size the body does not hold, a PAX header with no member after it. So the
bundles here are assembled from raw 512-byte header blocks (`tests.bundle.builders` makes those),
one member at a time, and end with a metadata.txt that *lists* the hostile member as a Files entry,
because a member nobody lists is ignored by design and would prove nothing.

`raw_exchange` speaks HTTP/1.1 over a plain socket for the two things httpx cannot do: send a
Content-Length with no body behind it, and read the answer to a chunked body that has not ended.
"""
from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from tests.bundle.builders import END, pad, patch_header, raw_header
from tests.integration.bundles import TRANSACTION

#: A hang guard for raw exchanges, not a timing assertion: a healthy API answers in well under it.
SOCKET_TIMEOUT = 60.0


def member(name: bytes | str, data: bytes = b"", *, typeflag: bytes = b"0", linkname: bytes = b"",
           size: int | None = None) -> bytes:
    """One member: a ustar header (name up to 100 bytes) and its padded data.

    `size` overrides the size the header declares, for headers that lie about their data.
    """
    raw = name.encode() if isinstance(name, str) else name
    header = raw_header(raw, size=len(data) if size is None else size, typeflag=typeflag)
    if linkname:
        header = patch_header(header, 0, linkname=linkname)
    return header + pad(data)


def with_prefix(prefix: bytes, name: bytes, data: bytes) -> bytes:
    """A member whose name is split over the ustar `prefix` and `name` fields (`prefix/name`)."""
    return patch_header(raw_header(name, size=len(data)), 0, prefix=prefix) + pad(data)


def with_size_field(block: bytes, field: bytes) -> bytes:
    """A header whose 12-byte size field is `field` verbatim (e.g. GNU base-256), checksum fixed."""
    return patch_header(block, 0, size=field)


def pax(records: Iterable[bytes], *, typeflag: bytes = b"x") -> bytes:
    """A PAX extended (`x`) or global (`g`) header carrying `records` (from `pax_record`)."""
    payload = b"".join(records)
    return raw_header(b"././@PaxHeader", size=len(payload), typeflag=typeflag) + pad(payload)


def gnu_longname(name: bytes, *, typeflag: bytes = b"L") -> bytes:
    """A GNU long name (`L`) or long link (`K`) header naming the member that follows."""
    payload = name + b"\x00"
    return raw_header(b"././@LongLink", size=len(payload), typeflag=typeflag, magic=b"ustar  \x00") + pad(payload)


def entry(path: str, data: bytes = b"") -> dict[str, Any]:
    """The Files entry that lists member `path` as pacifica-uploader would (subdir = dirname)."""
    subdir, _, name = path.rpartition("/")
    return {
        "destinationTable": "Files", "name": name, "subdir": subdir, "size": len(data), "hashtype": "sha1",
        "hashsum": hashlib.sha1(data).hexdigest(), "mimetype": "application/octet-stream",
        "ctime": "2026-11-27T17:31:26", "mtime": "2026-11-27T17:31:26",
    }


def metadata(entries: Iterable[dict[str, Any]] = ()) -> bytes:
    """A metadata.txt member with the usual transaction and `entries`."""
    return member("metadata.txt", json.dumps([*TRANSACTION, *entries]).encode())


def tar(*parts: bytes) -> bytes:
    """Members joined and closed with the end-of-archive marker."""
    return b"".join(parts) + END


def listed(path: str, *parts: bytes, data: bytes = b"") -> bytes:
    """A bundle of `parts` whose metadata.txt lists `path` (with `data`'s size and hash) as a file."""
    return tar(*parts, metadata([entry(path, data)]))


def many_members(count: int) -> bytes:
    """`count` empty members plus a metadata.txt listing none of them."""
    return tar(*(member(f"data/m{number}") for number in range(count)), metadata())


def nested_json(depth: int) -> bytes:
    """A metadata.txt that is `depth` lists inside one another."""
    return tar(member("metadata.txt", b"[" * depth + b"]" * depth))


def oversized_metadata(limit: int) -> bytes:
    """A valid metadata.txt one byte over `limit` (a long TransactionKeyValue)."""
    head = json.dumps([*TRANSACTION, {"destinationTable": "TransactionKeyValue", "key": "pad", "value": ""}])
    filler = "x" * (limit + 1 - len(head.encode()))
    document = head[:-3] + filler + head[-3:]
    assert len(document.encode()) == limit + 1
    return tar(member("metadata.txt", document.encode()))


# -- HTTP below httpx ----------------------------------------------------------------------------


def raw_exchange(url: str, head: str, body: Iterable[bytes] = ()) -> tuple[int, str]:
    """Send a request head and body pieces as given, then read one response: (status, body text).

    The body is sent as-is (chunked framing included if the head says so) and never finished by
    this function, so the answer read is the one the server gave *before* the request ended.
    """
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        for piece in body:
            sock.sendall(piece)
        received = b""
        while b"\r\n\r\n" not in received:
            received += _recv(sock)
        header_text, _, content = received.partition(b"\r\n\r\n")
        lines = header_text.decode("latin-1").split("\r\n")
        headers = {key.strip().lower(): value.strip() for key, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(content) < length:
            content += _recv(sock)
        return int(lines[0].split()[1]), content[:length].decode("utf-8", "replace")


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the server closed the connection before it answered")
    return data


def chunked(pieces: Iterable[bytes]) -> Iterable[bytes]:
    """HTTP/1.1 chunked framing for `pieces` (without the final zero-size chunk)."""
    for piece in pieces:
        yield b"%x\r\n" % len(piece) + piece + b"\r\n"
