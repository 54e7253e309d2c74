"""Image loading with one-line errors, and the reference's LANCZOS resize.

Images stay PIL objects until the very end of a transform, because the
reference resizes (LANCZOS) on PIL uint8 images; doing the same op on the same
objects is what makes the outputs bit-exact. (Its colour jitter, also PIL
uint8 arithmetic, is reproduced exactly on the device: `jitter`.)
"""
import os

import numpy as np
from PIL import Image


def load_rgb(path):
  """Opens an RGB image fully (decoding now, so corrupt files fail here).

  The file is decoded exactly once and not copied: PIL closes a file it
  opened itself once `load()` has read it.

  Raises:
    ValueError: file missing, not decodable/truncated, or not 3-channel RGB.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f'{path}: image file not found')
  image = None
  try:
    image = Image.open(path)
    image.load()
  except Exception as e:  # PIL raises many types for bad data.
    if image is not None:
      image.close()
    raise ValueError(f'{path}: cannot decode image ({type(e).__name__}: {e})') from None
  if image.mode != 'RGB':
    mode = image.mode
    image.close()
    raise ValueError(f'{path}: expected RGB image, got mode {mode!r}')
  return image


def image_dims(path):
  """(H, W) of an image file from its header only (no pixel decode)."""
  path = os.fspath(path)
  try:
    with Image.open(path) as im:
      return im.size[1], im.size[0]
  except Exception as e:  # PIL raises many types for bad data.
    raise ValueError(f'{path}: cannot read image header ({type(e).__name__}: {e})') from None


def check_rgb_array(frame, name):
  """Validates a decoded [H,W,3] uint8 frame (videos, TFDS records)."""
  frame = np.asarray(frame)
  if frame.ndim != 3 or frame.shape[-1] != 3:
    raise ValueError(f'{name}: expected RGB frame [H,W,3], got shape {frame.shape}')
  return Image.fromarray(frame.astype(np.uint8), 'RGB')


def resize_image(image, shape):
  """PIL LANCZOS resize to shape=(H, W) (torchvision Resize on a PIL image)."""
  h, w = shape
  if image.size == (w, h):
    return image
  return image.resize((w, h), Image.LANCZOS)


def to_float(image, out=None):
  """PIL uint8 image → float32 [H,W,3] in [0,1] (torchvision ToTensor, NHWC).

  `out`: optional float32 [H,W,3] array written in place (saves a copy when
  stacking). The division is the same correctly rounded float32 x/255.
  """
  pixels = np.asarray(image, dtype=np.uint8)
  if out is None:
    out = np.empty(pixels.shape, np.float32)
  np.divide(pixels, np.float32(255.0), out=out, dtype=np.float32)
  return out


def to_uint8(image):
  """PIL uint8 image → uint8 [H,W,3] array."""
  return np.asarray(image, dtype=np.uint8)


def dims(image):
  """(H, W) of a PIL image."""
  return image.size[1], image.size[0]
