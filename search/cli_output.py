"""What the ``pixsearch`` command writes: safe names on terminals, exact bytes in pipes, progress.

File names are data, not terminal commands: on a terminal every control character (escape
sequences, newlines, bidirectional overrides) is shown as a ``\\xNN`` / ``\\uNNNN`` escape; into
a pipe or file the exact name is written, byte for byte (names that are not valid UTF-8 as their
original bytes). JSON is valid UTF-8 always: control characters and the bytes of a non-UTF-8
name are written as ``\\uNNNN`` escapes (a byte 0xNN that is not UTF-8 becomes ``\\udcNN``,
Python's ``surrogateescape``, so ``os.fsencode(json.loads(line)["path"])`` gives the exact
bytes back).

>>> shown("esc\\x1b[31mred.jpg", terminal=True)
'esc\\\\x1b[31mred.jpg'
>>> shown("esc\\x1b[31mred.jpg", terminal=False) == "esc\\x1b[31mred.jpg"
True
>>> dumps_json({"path": "caf\\udce9\\n.jpg"})
'{"path": "caf\\\\udce9\\\\n.jpg"}'
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any, TextIO

import typer

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
"""C0/C1 controls, DEL, line/paragraph separators, bidi marks and overrides, lone surrogates."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: str, *, terminal: bool) -> str:
    """``text`` as it may be written: escaped for a terminal, unchanged for a pipe."""
    return _UNSAFE.sub(_escape, text) if terminal else text


def is_terminal(stream: TextIO) -> bool:
    """True when ``stream`` is an interactive terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def emit(text: str, *, err: bool = False, end: str = "\n", color: str | None = None) -> None:
    """Write one line to stdout (or stderr): escaped on a terminal, exact bytes otherwise."""
    stream = sys.stderr if err else sys.stdout
    if is_terminal(stream):
        line = shown(text, terminal=True)
        stream.write((typer.style(line, fg=color) if color else line) + end)
        stream.flush()
        return
    data = (text + end).encode("utf-8", "surrogateescape")
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # a text-only stream: the closest it can take
        stream.write(data.decode("utf-8", "replace"))
        return
    stream.flush()
    buffer.write(data)
    buffer.flush()


def dumps_json(value: Any) -> str:
    """One line of JSON, valid UTF-8, with control characters and non-UTF-8 bytes escaped.

    >>> dumps_json({"q": "café", "bidi": "\\u202e"})
    '{"q": "café", "bidi": "\\\\u202e"}'
    """
    text = json.dumps(value, ensure_ascii=False)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def fsencoded(path: str) -> bytes:
    """The exact bytes of a file name (undecodable bytes restored)."""
    return os.fsencode(path)


def duration(seconds: float) -> str:
    """A short human duration.

    >>> duration(7.2), duration(125), duration(3 * 3600 + 65)
    ('7 s', '2 min 5 s', '3 h 1 min')
    """
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class Progress:
    """Photos done / total, photos per second and time left, on stderr.

    On a terminal one status line is redrawn (at most 10 times a second); otherwise a plain line
    is written at the start, every ``interval`` seconds and at the end. Disabled (``-q``,
    ``--json``) it writes nothing. Called as ``progress(done, total)``; the rate counts only the
    photos processed since the first call (files found unchanged are not work).

    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress("indexing", stream=out, clock=iter([0.0, 10.0]).__next__)
    >>> p(100, 1100); p(600, 1100); p.close()
    >>> print(out.getvalue(), end="")
    indexing: 100/1100 photos (9%), ETA ?
    indexing: 600/1100 photos (54%), 50.0 photos/s, ETA 10 s
    """

    def __init__(
        self,
        label: str,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = 5.0,
        clock: Any = time.monotonic,
    ):
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.terminal = enabled and is_terminal(self.stream)
        self.interval = 0.1 if self.terminal else interval
        self.clock = clock
        self.done = 0
        self.total: int | None = None
        self._first: tuple[float, int] | None = None
        self._shown_at: float | None = None
        self._shown_done = -1
        self._drawn = False

    def start(self, message: str) -> None:
        """Say at once what is happening before the first count arrives (e.g. the scan)."""
        if self.enabled:
            self._write(f"{self.label}: {message}")

    def __call__(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total
        if not self.enabled:
            return
        now = self.clock()
        if self._first is None:
            self._first = (now, done)
        finished = total is not None and 0 < total <= done
        due = self._shown_at is None or now - self._shown_at >= self.interval
        if not (due or finished) or done == self._shown_done:
            return
        self._shown_at, self._shown_done = now, done
        self._write(self.line(done, total, now))

    def line(self, done: int, total: int | None, now: float) -> str:
        """The status text for ``done`` of ``total`` at time ``now``."""
        start, done_at_start = self._first or (now, done)
        elapsed, work = now - start, done - done_at_start
        finished = bool(total) and total > 0 and done >= total
        # no rate from the first instant: a read-ahead burst would promise far too much
        rate = work / elapsed if elapsed >= 1.0 or (finished and elapsed > 0) else 0.0
        if not total or total <= 0:
            counts = f"{done} photos (total unknown)"
        else:
            counts = f"{done}/{total} photos ({100 * done // total}%)"
        parts = [counts]
        if rate > 0:
            parts.append(f"{rate:.1f} photos/s")
        if total and total > 0 and not finished:
            parts.append(f"ETA {duration((total - done) / rate)}" if rate > 0 else "ETA ?")
        return f"{self.label}: " + ", ".join(parts)

    def _write(self, text: str) -> None:
        if self.terminal:
            self.stream.write("\r\x1b[K" + shown(text, terminal=True))
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Clear the status line (the command's summary follows)."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
