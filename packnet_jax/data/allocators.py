"""Keeps freed image buffers for reuse instead of returning them to the OS.

Every sample allocates and frees the same few megabytes (decoded frames,
resized copies, uint8 arrays, tf.data batches). By default both
Pillow (no block cache) and glibc (buffers above a few hundred kB are
mmap'ed and unmapped on free) hand that memory back to the kernel, so the
next sample page-faults it in again, zeroed: on a 192x640 training sample
that was about half of the CPU time of the whole pipeline (`python
tools/benchmark.py data`). Keeping the buffers changes no value;
the cost is that the process holds on to its peak pipeline memory.

`tune()` is called once when a tf.data pipeline is built.
"""
import ctypes
import logging
import sys

# Freed Pillow blocks kept for reuse (a 1242x375 RGB frame is one ~1.9 MB
# block; a sample with contexts keeps a few dozen alive).
PILLOW_BLOCKS = 128
# glibc mallopt parameters (malloc.h): allocations below MMAP_THRESHOLD come
# from the heap, and up to TRIM_THRESHOLD of free heap top is kept.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20

_done = False


def tune():
  """Pillow block cache + glibc heap reuse (idempotent; no-op elsewhere)."""
  global _done
  if _done:
    return
  _done = True
  from PIL import Image
  Image.core.set_blocks_max(max(PILLOW_BLOCKS, Image.core.get_blocks_max()))
  if not sys.platform.startswith('linux'):
    return
  try:
    libc = ctypes.CDLL('libc.so.6')
  except OSError:  # Not glibc (e.g. musl): keep its defaults.
    return
  for param, value in ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                       (_M_TOP_PAD, TOP_PAD)):
    if libc.mallopt(param, value) != 1:
      logging.debug('mallopt(%d, %d) refused', param, value)
