"""Hand memory back to the operating system: glibc's allocator, for one-shot processes.

glibc keeps freed memory for reuse: small blocks stay in the heap of the thread that freed
them until ``malloc_trim``, and after a large block is freed its ``mmap`` threshold rises (up
to 32 MB), so later large blocks come from heaps that are not handed back either. A
long-running process profits from that; a ``pixsearch search`` process, which loads the text
models, drops them and then reads the vector index, only sees a higher peak
(docs/performance.md, fifth round). Both functions do nothing where the C library is not
glibc (macOS, musl, Windows) and say so by returning False.
"""

from __future__ import annotations

import ctypes
from typing import Any

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
PROMPT_THRESHOLD = 128 * 1024
"""Blocks from this size are ``mmap``-ed (and unmapped when freed), and a heap gives back free
memory above this much at its top: glibc's own defaults before they adapt upwards."""


def _glibc(symbol: str) -> Any | None:
    try:  # the symbols the process already has: no library search, no subprocess
        return getattr(ctypes.CDLL(None), symbol)
    except (AttributeError, OSError, TypeError):
        return None


def return_freed_memory() -> bool:
    """Ask glibc to hand freed memory back now (``malloc_trim(0)``, every heap).

    Dropping the text encoder's session and tokenizer frees ~46 MB but lowers the resident
    size by only ~15 MB without it.
    """
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


def return_memory_promptly() -> bool:
    """From now on, hand large freed blocks back at once: fixed ``mmap`` and trim thresholds
    (:data:`PROMPT_THRESHOLD`) instead of glibc's adaptive ones. For a process that runs one
    job and exits (the CLI's ``search``: -15 MB peak at 100k rows, same time); a long-running
    one keeps glibc's defaults."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(
        mallopt(_M_MMAP_THRESHOLD, PROMPT_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, PROMPT_THRESHOLD)
    )
