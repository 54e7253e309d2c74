"""clu metric writers for training: scalars to TensorBoard + stdout, depth images.

Only process 0 writes TensorBoard summaries; other hosts log to their own
stdout (clu's `just_logging`).
"""
import jax
import numpy as np
# clu's writers import TensorFlow: `_tf` pins it to the CPU first.
from packnet_jax.data import _tf  # noqa: F401  pylint: disable=unused-import,g-bad-import-order
from clu import metric_writers

from packnet_jax.utils.colormap import colorize_inv_depth


def create_writer(workdir, *, asynchronous=True):
  """MultiWriter: TensorBoard files in <workdir> (process 0) and logging."""
  return metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0, asynchronous=asynchronous)


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
