"""Sample transforms with the reference's semantics (SPEC §6.2).

A raw sample holds PIL images (`rgb`, `rgb_context`) and numpy arrays
(`intrinsics` [3,3] float64, `depth` [H,W,1], poses). `train_transform` /
`eval_transform` return the final sample: float32 NHWC arrays, contexts
stacked to [N,H,W,3], intrinsics float32.
"""
import numpy as np

from packnet_jax.data import image_io
from packnet_jax.data import jitter as jitter_lib


def parse_crop_borders(borders, shape):
  """Crop spec → (left, top, right, bottom) for an image of shape (H, W).

  borders: (y, height, x, width) or (y, x); negative ints count from the
  border; floats are relative centres (centre crop), as in the reference.
  """
  h, w = shape
  borders = list(borders)
  if not borders:
    return 0, 0, w, h
  if len(borders) == 4:
    top, height, left, width = borders
    out = []
    for start, size, full in ((left, width, w), (top, height, h)):
      if isinstance(start, int):
        start += full if start < 0 else 0
        end = size + (full if size <= 0 else start)
      else:
        centre = start * full
        start, end = int(centre - size / 2), int(centre + size / 2)
      out.append((start, end))
    (l, r), (t, b) = out
    return l, t, r, b
  if len(borders) == 2:
    y, x = borders
    if isinstance(x, int):
      return max(0, x), max(0, y), w + min(0, x), h + min(0, y)
    # The reference uses the x-centre for both axes here; kept for parity.
    cw, ch = x * w, x * h
    return int(cw - y / 2), int(ch - y / 2), int(cw + y / 2), int(ch + y / 2)
  raise ValueError(f'crop borders: expected 2 or 4 values, got {tuple(borders)}')


def crop_sample(sample, borders, supervision=True):
  """Crops images, shifts cx/cy; crops depth too when `supervision`."""
  l, t, r, b = borders
  k = np.array(sample['intrinsics'], dtype=np.float64)
  sample.setdefault('intrinsics_full', k.copy())
  k[0, 2] -= l
  k[1, 2] -= t
  sample['intrinsics'] = k
  for key in ('rgb', 'rgb_original'):
    if key in sample:
      sample[key] = sample[key].crop(borders)
  for key in ('rgb_context', 'rgb_context_original'):
    if key in sample:
      sample[key] = [im.crop(borders) for im in sample[key]]
  keys = ('depth', 'input_depth') if supervision else ('input_depth',)
  for key in keys:
    if sample.get(key) is not None:
      sample[key] = sample[key][t:b, l:r]
  return sample


def resize_depth_preserve(depth, shape):
  """Sparse-depth resize keeping every valid point (later writes win).

  Valid pixel (r, c) goes to (int(r·H'/H), int(c·W'/W)); output float64
  [H',W',1] like the reference.
  """
  depth = np.squeeze(np.asarray(depth), axis=-1) if np.ndim(depth) == 3 else np.asarray(depth)
  h, w = depth.shape
  rows, cols = np.nonzero(depth > 0)  # Row-major order = the reference's write order.
  vals = depth[rows, cols]
  rows = (rows * (shape[0] / h)).astype(np.int32)
  cols = (cols * (shape[1] / w)).astype(np.int32)
  keep = (rows < shape[0]) & (cols < shape[1])
  out = np.zeros(shape, dtype=np.float64)
  out[rows[keep], cols[keep]] = vals[keep]
  return out[..., None]


def resize_sample(sample, shape):
  """Resizes images (LANCZOS), intrinsics rows and sparse depth maps."""
  in_h, in_w = image_io.dims(sample['rgb'])
  k = np.array(sample['intrinsics'], dtype=np.float64)
  k[0] *= shape[1] / in_w
  k[1] *= shape[0] / in_h
  sample['intrinsics'] = k
  sample['rgb'] = image_io.resize_image(sample['rgb'], shape)
  if 'rgb_context' in sample:
    sample['rgb_context'] = [image_io.resize_image(im, shape) for im in sample['rgb_context']]
  for key in ('depth', 'input_depth'):
    if sample.get(key) is not None:
      sample[key] = resize_depth_preserve(sample[key], shape)
  return sample


def _finalize(sample):
  """PIL/float64 → float32 NHWC arrays; contexts stacked."""
  out = dict(sample)
  for key in ('rgb', 'rgb_original'):
    if key in out:
      out[key] = image_io.to_float(out[key])
  for key in ('rgb_context', 'rgb_context_original'):
    if key in out:
      out[key] = np.stack([image_io.to_float(im) for im in out[key]])
  for key in ('intrinsics', 'intrinsics_full', 'depth', 'input_depth', 'pose'):
    if out.get(key) is not None:
      out[key] = np.asarray(out[key], dtype=np.float32)
  if 'depth' in out:
    out['depth'] = np.maximum(out['depth'], 0.0)  # PNG GT marks invalid as −1; we use 0.
  if 'pose_context' in out:
    out['pose_context'] = np.stack(out['pose_context']).astype(np.float32)
  return out


def train_transform(sample, image_shape=(), jittering=(), crop_train_borders=(), rng=None):
  """Reference train transform: crop → resize → keep originals → jitter."""
  if crop_train_borders:
    sample = crop_sample(sample, parse_crop_borders(crop_train_borders, image_io.dims(sample['rgb'])))
  if image_shape:
    sample = resize_sample(sample, tuple(image_shape))
  sample['rgb_original'] = sample['rgb'].copy()
  if 'rgb_context' in sample:
    sample['rgb_context_original'] = [im.copy() for im in sample['rgb_context']]
  if jittering:
    if rng is None:
      raise ValueError('rng: colour jitter needs a numpy Generator (seeded per example)')
    sample = jitter_lib.colorjitter_sample(sample, jittering, rng)
  return _finalize(sample)


def eval_transform(sample, image_shape=(), crop_eval_borders=(), mode='validation'):
  """Reference validation/test transform: only `rgb` (and input depth) resized.

  Intrinsics are NOT rescaled and GT depth stays at native size, as in the
  reference (the metrics resize the prediction to the GT).
  """
  if crop_eval_borders:
    sample = crop_sample(sample, parse_crop_borders(crop_eval_borders, image_io.dims(sample['rgb'])),
                         supervision=False)
  if image_shape:
    shape = tuple(image_shape)
    sample['rgb'] = image_io.resize_image(sample['rgb'], shape)
    if 'rgb_context' in sample:  # Not in the reference (eval has no context); kept consistent.
      sample['rgb_context'] = [image_io.resize_image(im, shape) for im in sample['rgb_context']]
    if sample.get('input_depth') is not None:
      sample['input_depth'] = (resize_depth_preserve(sample['input_depth'], shape) if mode == 'validation'
                               else resize_depth_nearest(sample['input_depth'], shape))
  return _finalize(sample)


def resize_depth_nearest(depth, shape):
  """cv2 INTER_NEAREST resize (src = floor(dst·in/out)), [H',W',1]."""
  depth = np.asarray(depth)[..., 0] if np.ndim(depth) == 3 else np.asarray(depth)
  h, w = depth.shape
  rows = np.minimum(np.floor(np.arange(shape[0]) * (h / shape[0])).astype(np.int64), h - 1)
  cols = np.minimum(np.floor(np.arange(shape[1]) * (w / shape[1])).astype(np.int64), w - 1)
  return depth[rows[:, None], cols[None, :]][..., None]
