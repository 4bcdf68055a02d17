"""The writer lease of an object-store database: one writer job at a time, without a lock file.

A lease is a small JSON object (``<db>/.pixsearch-writer.lease``): who holds it (a random
token, host, process id, what it runs) and until when. A writer takes it when it is absent,
expired, or held by a dead process of this host; writes its own; waits ``SETTLE_SECONDS`` and
reads it back, so that of two writers racing for it only the last one to write goes on. The
holder renews it from a background thread every third of ``LEASE_SECONDS``; a writer that dies
stops renewing, and its lease expires (or is taken over at once on the same host).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from typing import Any

from pixsearch.db.errors import ConcurrentWriteError, DatabaseError
from pixsearch.db.objectstore import filesystem_and_path

LEASE_NAME = ".pixsearch-writer.lease"
LEASE_SECONDS = 60.0
"""How long a lease lasts without renewal (a killed writer on another host blocks this long)."""
SETTLE_SECONDS = 0.5
"""Wait between writing the lease and reading it back (longer than one PUT takes)."""


class WriterLease:
    """The lease of the database at ``uri`` (an object-store URI), for ``purpose``."""

    def __init__(
        self,
        uri: str,
        storage_options: dict[str, str] | None = None,
        *,
        purpose: str = "write",
        seconds: float = LEASE_SECONDS,
    ) -> None:
        self.uri = uri
        self.storage_options = storage_options
        self.seconds = seconds
        self.mine = {
            "token": secrets.token_hex(8),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "purpose": purpose,
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        fs, root = filesystem_and_path(uri, storage_options)
        self._fs, self._path = fs, f"{root}/{LEASE_NAME}"

    def acquire(self, wait_seconds: float = 0.0) -> None:
        """Take the lease; ``ConcurrentWriteError`` naming the holder when another writer has it
        (after waiting up to ``wait_seconds`` for it)."""
        deadline = time.monotonic() + wait_seconds
        while True:
            holder = self._holder()
            if holder is None:
                self._write()
                time.sleep(SETTLE_SECONDS)
                holder = self._read()
                if holder is not None and holder.get("token") == self.mine["token"]:
                    break
            if time.monotonic() >= deadline:
                raise ConcurrentWriteError(
                    f"another pixsearch job is writing to {self.uri} ({_describe(holder)}); "
                    "wait for it to finish (or pass --wait SECONDS) and run again"
                )
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        self._thread = threading.Thread(target=self._renew, name="pixsearch-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and delete the lease (if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        held = self._read()
        if held is not None and held.get("token") == self.mine["token"]:
            with contextlib.suppress(OSError):  # else it expires by itself
                self._fs.delete_file(self._path)

    def _holder(self) -> dict[str, Any] | None:
        """The live holder of the lease, or None when it is free to take."""
        held = self._read()
        if held is None or held.get("token") == self.mine["token"]:
            return None
        if float(held.get("expires", 0)) < time.time():
            return None
        if held.get("host") == self.mine["host"] and not _alive(int(held.get("pid", 0))):
            return None
        return held

    def _read(self) -> dict[str, Any] | None:
        try:
            with self._fs.open_input_stream(self._path) as stream:
                return dict(json.loads(stream.read()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            if "not found" in str(error).lower() or "NoSuchKey" in str(error):
                return None
            raise DatabaseError(f"cannot read the writer lease of {self.uri}: {error}") from error

    def _write(self) -> None:
        body = json.dumps({**self.mine, "expires": time.time() + self.seconds}).encode()
        try:
            with self._fs.open_output_stream(self._path) as stream:
                stream.write(body)
        except OSError as error:
            raise DatabaseError(f"cannot write the writer lease of {self.uri}: {error}") from error

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                held = self._read()
                if held is None or held.get("token") == self.mine["token"]:
                    self._write()
            except DatabaseError:
                continue  # the next round tries again; the lease outlives a few misses


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "it took the lease at the same moment"
    left = max(0, int(float(holder.get("expires", 0)) - time.time()))
    return (
        f"{holder.get('purpose', 'a writer')} on {holder.get('host')} pid {holder.get('pid')}, "
        f"lease valid {left} s more unless renewed"
    )
