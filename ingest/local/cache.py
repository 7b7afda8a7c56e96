"""Where the local kit keeps what it downloads: one folder per tool, outside the repository.

The S3 server's unpacked Debian packages and the helm binary are large and the same for every
checkout, so they live under ``~/.cache/pacifica-ingest/`` (shared by worktrees and test runs),
each folder movable by an environment variable of its own.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(name: str, *, variable: str) -> Path:
    """``$<variable>`` if set, else ``~/.cache/pacifica-ingest/<name>``."""
    env = os.environ.get(variable)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pacifica-ingest" / name
