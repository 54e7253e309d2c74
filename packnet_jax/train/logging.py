"""clu metric writers for training: scalars to TensorBoard + stdout (+ W&B), depth images.

Only process 0 writes TensorBoard summaries (and W&B); other hosts log to their
own stdout (clu's `just_logging`). TensorFlow cannot write event files to every
bucket (TF 2.21 has no S3 filesystem), so for a bucket workdir they are written
to a local folder and copied to the workdir at every flush and at most every
`UPLOAD_EVERY_S` seconds: a preempted run loses at most that much of its curves.
"""
import os
import shutil
import tempfile
import time

import jax
import numpy as np
# clu's writers import TensorFlow: `_tf` pins it to the CPU first.
from packnet_jax.data import _tf  # noqa: F401  pylint: disable=unused-import,g-bad-import-order
from clu import metric_writers

from packnet_jax.utils import storage
from packnet_jax.utils.colormap import colorize_inv_depth

UPLOAD_EVERY_S = 60.0


def create_writer(workdir, *, asynchronous=True, config=None):
  """MultiWriter: TensorBoard files in <workdir> (process 0), logging, and W&B if `config` enables it."""
  primary = jax.process_index() == 0
  bucket = storage.is_url(workdir) and primary
  logdir = tempfile.mkdtemp(prefix='packnet-tensorboard-') if bucket else workdir
  writers = [metric_writers.create_default_writer(logdir, just_logging=not primary,
                                                  asynchronous=asynchronous)]
  if primary and config is not None and config.logging.wandb.enabled:
    from packnet_jax.train import wandb_writer  # pylint: disable=import-outside-toplevel
    writers.append(wandb_writer.WandbWriter(config, workdir))
  if bucket:
    return UploadingWriter(writers, logdir, workdir)
  return metric_writers.MultiWriter(writers) if len(writers) > 1 else writers[0]


class UploadingWriter(metric_writers.MultiWriter):
  """Writes event files to local folder `logdir` and copies them to bucket URL `url`."""

  def __init__(self, writers, logdir, url, every_s=UPLOAD_EVERY_S):
    super().__init__(writers)
    self.logdir, self.url, self.every_s = logdir, url, every_s
    self.last_upload = time.time()

  def write_scalars(self, step, scalars):
    super().write_scalars(step, scalars)
    self._maybe_upload()

  def write_images(self, step, images):
    super().write_images(step, images)
    self._maybe_upload()

  def flush(self):
    super().flush()
    self.upload()

  def close(self):
    super().close()
    self.upload()
    shutil.rmtree(self.logdir, ignore_errors=True)

  def _maybe_upload(self):
    if time.time() - self.last_upload >= self.every_s:
      self.flush()

  def upload(self):
    """Copies every event file (they only grow) to the same relative path under the URL."""
    for folder, _, names in os.walk(self.logdir):
      for name in names:
        local = os.path.join(folder, name)
        storage.upload_file(local, storage.join(self.url, os.path.relpath(local, self.logdir)))
    self.last_upload = time.time()


def depth_panel(rgb, inv_depth):
  """Input image next to its colour-mapped inverse depth: [H, 2W, 3] uint8.

  Args:
    rgb: [H,W,3] float in [0,1].
    inv_depth: [h,w,1] (nearest-resized to the image if smaller).
  """
  rgb = np.asarray(rgb, np.float32)
  inv = np.asarray(inv_depth, np.float32)[..., 0]
  h, w = rgb.shape[:2]
  if inv.shape != (h, w):
    rows = np.arange(h) * inv.shape[0] // h
    cols = np.arange(w) * inv.shape[1] // w
    inv = inv[rows][:, cols]
  image = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
  return np.concatenate([image, colorize_inv_depth(inv)], axis=1)


def write_depth_images(writer, step, rgbs, inv_depths, name='depth', max_images=4):
  """Writes up to `max_images` panels (input | colour-mapped inverse depth)."""
  n = min(max_images, len(rgbs))
  if n == 0:
    return
  panels = np.stack([depth_panel(rgbs[i], inv_depths[i]) for i in range(n)])
  writer.write_images(step, {name: panels})
