"""The client's one progress display: a status line on stderr, and byte progress drawn on it.

Every long wait the CLI shows (bytes written or sent, a job's task and percent while `--wait`
polls) goes through `StatusLine`, so all of them behave alike: redrawn in place on a terminal,
and in a log (CI, `2> file`) whole lines now and then, never a carriage return per chunk.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


def human(count: float) -> str:
    """Bytes in binary units: 512 B, 1.5 KiB, 12.0 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class StatusLine:
    """One line of status: redrawn in place on a terminal, written as whole lines otherwise."""

    def __init__(self, stream: TextIO | None, *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = bool(tty if tty is not None else stream is not None and stream.isatty())
        self.width = 0  # of the text on screen, blanked out by the next one

    def show(self, text: str) -> None:
        if self.stream is None:
            return
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the redrawn line, so what follows starts on a line of its own."""
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()


class Progress:
    """Bytes done of a total (None: unknown), with their rate, on a `StatusLine`.

    Redrawn every `every` seconds (a tenth on a terminal, ten in a log) and once at the end.
    `clock` is injectable so the output can be tested without waiting.
    """

    def __init__(self, total: int | None, *, verb: str, stream: TextIO | None,
                 tty: bool | None = None, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.verb = verb
        self.status = StatusLine(stream, tty=tty)
        self.every = every if every is not None else (0.1 if self.status.tty else 10.0)
        self.clock = clock
        self.done = 0
        self.started = clock()
        self.shown = self.started

    def advance(self, count: int) -> None:
        self.done += count
        now = self.clock()
        if now - self.shown >= self.every:
            self.shown = now
            self.status.show(self.line(now))

    def finish(self) -> None:
        now = self.clock()
        self.status.show(self.line(now) + f" in {now - self.started:.1f} s")
        self.status.close()

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.started, 1e-6)
        if self.total is None:
            return f"{self.verb} {human(self.done)} at {human(rate)}/s"
        percent = 100 * self.done // self.total if self.total else 100
        return f"{self.verb} {human(self.done)} of {human(self.total)} ({percent}%) at {human(rate)}/s"
