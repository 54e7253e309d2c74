"""Image loading with one-line errors, and the reference's LANCZOS resize.

Images stay PIL objects until the very end of a transform, because the
reference resizes (LANCZOS) and colour-jitters on PIL uint8 images; doing the
same ops on the same objects is what makes the outputs bit-exact.
"""
import os

import numpy as np
from PIL import Image


def load_rgb(path):
  """Opens an RGB image fully (decoding now, so corrupt files fail here).

  Raises:
    ValueError: file missing, not decodable/truncated, or not 3-channel RGB.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f'{path}: image file not found')
  try:
    with Image.open(path) as im:
      im.load()
      image = im.copy()
  except Exception as e:  # PIL raises many types for bad data.
    raise ValueError(f'{path}: cannot decode image ({type(e).__name__}: {e})') from None
  if image.mode != 'RGB':
    raise ValueError(f'{path}: expected RGB image, got mode {image.mode!r}')
  return image


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


def to_float(image):
  """PIL uint8 image → float32 [H,W,3] in [0,1] (torchvision ToTensor, NHWC)."""
  return np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255.0)


def dims(image):
  """(H, W) of a PIL image."""
  return image.size[1], image.size[0]
