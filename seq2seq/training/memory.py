"""The training process's memory allocator, set for a training step's large short-lived tensors."""

from __future__ import annotations

import ctypes
import sys


def reuse_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks of any size for reuse (`train.reuse_freed_memory`); True if it did.

    By default glibc serves each block over 32 MB with a fresh mmap and unmaps it when freed, so every
    training step's (target tokens, vocabulary) tensors, the logits and their gradient (60 MB each in the
    Multi30k CPU recipe), arrive as untouched pages that the kernel faults in and zeroes: about 43,000 page
    faults and 90 ms of system time per step on this project's 2-core CPU. With the mmap threshold raised
    to 1 GB and trimming off, the memory is mostly reused step after step (700 to 2,000 faults). The process
    keeps its peak memory instead of returning it to the system. Elsewhere than Linux with glibc: nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt's parameter numbers (malloc.h)
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))
