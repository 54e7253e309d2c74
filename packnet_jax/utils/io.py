"""Atomic file output: write to a temporary file in the same folder, then rename.

A reader (or a crash) never sees a half-written file: `os.replace` within one
filesystem is atomic, so the destination holds either the old or the new bytes.
A bucket URL (`gs://`, `s3://`) needs no rename: one object PUT is atomic
(`utils.storage`).
"""
import contextlib
import os
import shutil
import tempfile

import numpy as np

from packnet_jax.utils import storage


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def default_permissions(path):
  """Gives a mkstemp/mkdtemp result (0600/0700) the usual umask-based mode."""
  mode = 0o777 if os.path.isdir(path) else 0o666
  os.chmod(path, mode & ~_umask())


def ensure_writable_dir(path, name='output'):
  """Creates folder `path` if needed; ValueError naming it if it is not writable.

  A bucket URL is checked by `storage.use_bucket` instead (package, credentials, bucket).
  """
  if storage.is_url(path):
    return storage.use_bucket(path, name)
  path = os.path.abspath(os.fspath(path))
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise ValueError(f'{name}: cannot create folder {path} ({e.strerror})') from None
  if not os.path.isdir(path):
    raise ValueError(f'{name}: {path} is not a folder')
  if not os.access(path, os.W_OK | os.X_OK):
    raise ValueError(f'{name}: folder {path} is not writable')
  return path


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path next to `path`; renames it onto `path` on success.

  Example: `with atomic_path('out.png') as tmp: image.save(tmp, format='PNG')`.
  The temporary name keeps the extension so writers that infer the format from
  it (imageio, PIL) still work.
  """
  path = os.fspath(path)
  folder, base = os.path.split(os.path.abspath(path))
  stem, ext = os.path.splitext(base)
  fd, tmp = tempfile.mkstemp(prefix=f'.{stem}.tmp-', suffix=ext, dir=folder)
  os.close(fd)
  try:
    default_permissions(tmp)
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def atomic_write_bytes(path, data):
  """Writes `data` (bytes) to `path` atomically."""
  if storage.is_url(path):
    storage.write_bytes(path, data)
    return
  with atomic_path(path) as tmp:
    with open(tmp, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())


def atomic_write_text(path, text):
  """Writes `text` (UTF-8) to `path` atomically."""
  atomic_write_bytes(path, text.encode('utf-8'))


def atomic_save_npz(path, **arrays):
  """np.savez_compressed to `path` atomically (`path` should end in .npz)."""
  with atomic_path(path) as tmp:
    with open(tmp, 'wb') as f:  # A file object: savez would otherwise append '.npz'.
      np.savez_compressed(f, **arrays)


def replace_dir(src, dst):
  """Moves folder `src` onto `dst` (same filesystem), replacing an existing `dst`.

  The old `dst` is first renamed aside, so `dst` is never half-written; it is
  deleted only after the new one is in place.
  """
  src, dst = os.path.abspath(src), os.path.abspath(dst)
  old = None
  if os.path.isdir(dst):
    old = tempfile.mkdtemp(prefix=f'.{os.path.basename(dst)}.old-', dir=os.path.dirname(dst))
    os.rmdir(old)
    os.rename(dst, old)
  elif os.path.exists(dst):
    raise ValueError(f'{dst}: exists and is not a folder')
  try:
    os.rename(src, dst)
  except BaseException:
    if old is not None:
      os.rename(old, dst)
    raise
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)
