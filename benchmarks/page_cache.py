"""Put the page cache of the libraries a search maps in a known state (Linux only).

    python benchmarks/page_cache.py --fill read    # as after installing: filled by read()
    python benchmarks/page_cache.py --fill fault   # dropped: the next search's faults fill it

A cold search's resident size includes the file-backed pages of the shared libraries it
maps (~160-215 MB at 100k rows, docs/performance.md, fifth and sixth rounds), and how many
of them count depends on how the kernel filled its page cache: with large folios (ext4 on
Linux >= 6.16) a page fault maps the whole folio the page is in, and pages read through
``read()`` (pip writing the wheel, a copy, this script) sit in larger folios than pages that
a program's page faults brought in. Both modes first drop the libraries' cached pages
(``posix_fadvise(DONTNEED)``: only pages no running process maps are dropped); ``read``
then reads each file whole. Nothing is written; other processes only see their next page
faults served differently. The libraries are those a fresh process maps after importing
what ``pixsearch search`` imports (listed by a child process, so this one maps none).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

LIST = r"""
from pixsearch.db.imports import import_without_pandas
import_without_pandas("pixsearch.search.engine")
import onnxruntime
paths = set()
with open("/proc/self/maps") as handle:
    for line in handle:
        parts = line.split()
        if len(parts) >= 6 and ".so" in parts[5] and parts[5].startswith("/"):
            paths.add(parts[5])
print("\n".join(sorted(paths)))
"""


def libraries() -> list[str]:
    """The shared libraries a process that imported the search's modules maps."""
    done = subprocess.run([sys.executable, "-c", LIST], capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if os.path.isfile(line)]


def drop(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_whole(path: str) -> int:
    total = 0
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(1 << 20):
            total += len(chunk)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", choices=["read", "fault"], required=True)
    args = parser.parse_args()
    paths = libraries()
    read = 0
    for path in paths:
        drop(path)
        if args.fill == "read":
            read += read_whole(path)
    print(f"{len(paths)} libraries dropped from the page cache; {read / 2**20:.0f} MB read back")


if __name__ == "__main__":
    main()
