"""Opening a /move source beneath its root without following links, and removing only that very file.

A path that was checked is not a file that is safe to open: between the check and the `open` a
user who can write in their own folder may swap a component for a symbolic link to someone else's
file (or to /etc). So nothing here resolves a path as a whole. The root is opened as a directory,
then each component with `openat(parent, name, O_NOFOLLOW)` - directories with `O_DIRECTORY` - so
a link anywhere below the root fails the open (ELOOP/ENOTDIR) instead of being followed, and every
check (regular file, size, identity) is made with `fstat` on the descriptor that is then read.

Removal after a successful move is just as careful: the parent folder is walked the same way, and
the entry is unlinked only if it is still the file that was copied (device, inode, size, mtime as
seen on the descriptor the copy read). A file that was replaced or modified since is left alone.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO someone put in place of the file must not hang the worker.
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


class Refused(Exception):
    """The source cannot be opened as a regular file beneath its root (absent, a link, not a file, replaced)."""


def identity(status: os.stat_result) -> Identity:
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


@contextlib.contextmanager
def _directory(root: str, parts: tuple[str, ...]) -> Iterator[int]:
    """A descriptor of root/parts[0]/.../parts[-1], each component opened beneath the last, links refused."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the root itself is the operator's
    try:
        for part in parts:
            if part in ("", ".", ".."):
                raise OSError(errno.EINVAL, "not a plain path component")
            child = os.open(part, _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


class LocalFile:
    """One filesystem source: `root` and the components of its path below the root."""

    def __init__(self, root: str, parts: tuple[str, ...]) -> None:
        if not parts or any(part in ("", ".", "..") for part in parts):
            raise Refused("not a plain path beneath the root")
        self.root = root
        self.parts = parts
        self.checked: Identity | None = None  # the file as first seen
        self.copied: Identity | None = None  # the file as the copy read it

    def _open(self) -> tuple[int, os.stat_result]:
        try:
            with _directory(self.root, self.parts[:-1]) as parent:
                fd = os.open(self.parts[-1], _FILE, dir_fd=parent)
        except OSError as error:
            raise Refused(str(error)) from None
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            os.close(fd)
            raise Refused("not a regular file")
        return fd, status

    def check(self) -> int:
        """Make sure it is a regular file beneath the root, remember which one; its size."""
        fd, status = self._open()
        os.close(fd)
        self.checked = identity(status)
        return status.st_size

    def open(self) -> BinaryIO:
        """A fresh stream of the file; Refused if it is no longer the file that was checked."""
        fd, status = self._open()
        if self.checked is not None and identity(status)[:2] != self.checked[:2]:
            os.close(fd)
            raise Refused("replaced since it was checked")
        os.set_blocking(fd, True)
        self.copied = identity(status)
        return os.fdopen(fd, "rb")

    def remove(self) -> str | None:
        """Unlink it if it is still the very file that was copied; else why it was left (None: removed or gone)."""
        if self.copied is None:
            return "it was never copied"
        try:
            with _directory(self.root, self.parts[:-1]) as parent:
                now = os.stat(self.parts[-1], dir_fd=parent, follow_symlinks=False)
                if identity(now) != self.copied:
                    return "it changed after it was copied (another file, or modified)"
                os.unlink(self.parts[-1], dir_fd=parent)
        except FileNotFoundError:
            return None
        except OSError as error:
            return f"it could not be removed ({error.strerror})"
        return None
