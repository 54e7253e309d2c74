"""Sample transforms with the reference's semantics (docs/reference.md §6.2).

A raw sample holds PIL images (`rgb`, `rgb_context`) and numpy arrays
(`intrinsics` [3,3] float64, `depth` [H,W,1], poses). `train_transform` /
`eval_transform` return the final sample: float32 NHWC arrays, contexts
stacked to [N,H,W,3], intrinsics float32 (images optionally left uint8 for
the tf.data pipeline, which divides by 255 after batching). Colour jitter is
not applied here: a jittered train sample carries its parameters instead
(see `train_transform`).
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


def prepare_train_resolution(sample, image_shape, crop_borders=()):
  """The geometric half of `train_transform` (crop, LANCZOS resize) on a raw sample.

  For records written at training resolution: applying `train_transform`
  afterwards with the same image_shape and no crop gives the same numbers as
  applying it to the raw sample (resizing to the current size is the
  identity: same image, intrinsics scaled by exactly 1.0, depth points kept).
  """
  if crop_borders:
    sample = crop_sample(sample, parse_crop_borders(crop_borders, image_io.dims(sample['rgb'])))
  return resize_sample(sample, tuple(image_shape))


IMAGE_KEYS = ('rgb', 'rgb_original', 'rgb_context', 'rgb_context_original')


def _image_array(image, uint8):
  return image_io.to_uint8(image) if uint8 else image_io.to_float(image)


def _stack_images(images, uint8):
  """List of PIL images → [N,H,W,3], converted straight into one array."""
  if uint8:
    return np.stack([image_io.to_uint8(im) for im in images])
  h, w = image_io.dims(images[0])
  out = np.empty((len(images), h, w, 3), np.float32)
  for i, im in enumerate(images):
    image_io.to_float(im, out=out[i])
  return out


def _finalize(sample, uint8_images=False):
  """PIL/float64 → float32 NHWC arrays; contexts stacked.

  uint8_images: keep the images as uint8 (the tf.data pipeline converts them
  to float32 x/255 after batching: the same numbers, 4x less data to move).
  """
  out = dict(sample)
  for key in ('rgb', 'rgb_original'):
    if key in out:
      out[key] = _image_array(out[key], uint8_images)
  for key in ('rgb_context', 'rgb_context_original'):
    if key in out:
      out[key] = _stack_images(out[key], uint8_images)
  for key in ('intrinsics', 'intrinsics_full', 'depth', 'input_depth', 'pose'):
    if out.get(key) is not None:
      out[key] = np.asarray(out[key], dtype=np.float32)
  if 'depth' in out:
    out['depth'] = np.maximum(out['depth'], 0.0)  # PNG GT marks invalid as −1; we use 0.
  if 'pose_context' in out:
    out['pose_context'] = np.stack(out['pose_context']).astype(np.float32)
  return out


def train_transform(sample, image_shape=(), jittering=(), crop_train_borders=(), rng=None, uint8_images=False):
  """Reference train transform: crop → resize → keep originals → jitter parameters.

  PIL operations return new images, so the originals are the un-jittered
  images themselves (no copy). With `jittering`, the sample carries the
  originals and the jitter parameters (`jitter.PARAM_KEYS`, drawn from `rng`)
  but no `rgb` / `rgb_context`: the train step jitters the originals on the
  device (`jitter.apply_jitter`, PIL's exact numbers), so only half the image
  bytes leave the host.
  """
  if crop_train_borders:
    sample = crop_sample(sample, parse_crop_borders(crop_train_borders, image_io.dims(sample['rgb'])))
  if image_shape:
    sample = resize_sample(sample, tuple(image_shape))
  sample['rgb_original'] = sample['rgb']
  if 'rgb_context' in sample:
    sample['rgb_context_original'] = list(sample['rgb_context'])
  if jittering:
    if rng is None:
      raise ValueError('rng: colour jitter needs a numpy Generator (seeded per example)')
    sample.update(jitter_lib.jitter_arrays(*jitter_lib.sample_jitter_params(jittering, rng)))
    del sample['rgb']
    sample.pop('rgb_context', None)
  return _finalize(sample, uint8_images)


def eval_transform(sample, image_shape=(), crop_eval_borders=(), mode='validation', uint8_images=False):
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
  return _finalize(sample, uint8_images)


def resize_depth_nearest(depth, shape):
  """cv2 INTER_NEAREST resize (src = floor(dst·in/out)), [H',W',1]."""
  depth = np.asarray(depth)[..., 0] if np.ndim(depth) == 3 else np.asarray(depth)
  h, w = depth.shape
  rows = np.minimum(np.floor(np.arange(shape[0]) * (h / shape[0])).astype(np.int64), h - 1)
  cols = np.minimum(np.floor(np.arange(shape[1]) * (w / shape[1])).astype(np.int64), w - 1)
  return depth[rows[:, None], cols[None, :]][..., None]
