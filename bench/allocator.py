"""Keep freed memory in the process instead of handing it back to the kernel (glibc's malloc, Linux).

glibc serves every block above 128 KiB with its own ``mmap`` and unmaps it when freed, and trims the heap's top
when more than 128 KiB is free there. A forward pass or a batch of metrics allocates and frees such blocks all
the time (a [8,32,64,64] activation is 4 MiB; an SSIM moment of 8 faces at 64 px is 384 KiB), so each new tensor
is fresh pages the kernel has to fault in and zero. On this project's 2-core VM that was most of the cost of
scoring a batch and about an eighth of a quick-profile forward pass (docs/speed.md, "The allocator"). Raising
both thresholds makes freed blocks reusable, as jemalloc or tcmalloc would; it changes no number, only time.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit): bigger blocks still unmap
TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top kept up to 1 GiB


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (once, before the work starts); False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
