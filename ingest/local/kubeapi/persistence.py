"""State that survives a restart (``--data FILE``), written atomically and debounced.

A snapshot is simply the store's dump as JSON. Writes are coalesced: the first change after a
save schedules one save ``delay`` seconds later, whatever happens meanwhile, so a burst of status
patches costs one write. The delay grows with the store: it is at least ``SAVE_SHARE`` times the
last save's duration, so a store of 100,000 objects (a second or two to write) spends at most a
few percent of the server's time saving instead of saving back to back. Each save goes to a
temporary file in the same folder and is renamed over the target, so a crash leaves the previous
snapshot or the new one, never half of one. Shutdown saves once more.
"""
from __future__ import annotations

import asyncio
import json
import os
import pathlib
import tempfile
import time
from typing import Any

from .store import Event, ResourceKey, Store

DEFAULT_DELAY = 0.5
SAVE_SHARE = 20  # wait at least this many times the last save's duration between saves


def load(path: pathlib.Path) -> dict[str, Any] | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    return json.loads(path.read_text())


def save(path: pathlib.Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Persister:
    """Saves the store after changes, at most once per ``delay``."""

    def __init__(self, store: Store, path: pathlib.Path, *, delay: float = DEFAULT_DELAY) -> None:
        self.store = store
        self.path = path
        self.delay = delay
        self._pending: asyncio.TimerHandle | None = None
        self._last_duration = 0.0
        self.saves = 0
        store.listeners.append(self._changed)

    def _changed(self, resource: ResourceKey, event: Event) -> None:
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(max(self.delay, SAVE_SHARE * self._last_duration), self.flush)

    def flush(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        started = time.monotonic()
        save(self.path, self.store.dump())
        self._last_duration = time.monotonic() - started
        self.saves += 1
