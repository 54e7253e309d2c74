"""The test oracle: the reference's colour jitter run by PIL itself (torchvision's PIL ops).

This is how the host jittered before the jitter moved into the train step:
brightness / contrast / saturation through PIL.ImageEnhance, hue through an
HSV uint8 round trip with a wrapping shift, then the optional per-channel
gain matrix. `packnet_jax.data.jitter.apply_jitter` must equal it bit for bit.
"""
import numpy as np
from PIL import Image
from PIL import ImageEnhance

from packnet_jax.data import jitter


def adjust_hue(image, hue_factor):
  """torchvision adjust_hue on a PIL RGB image (hue_factor in [-0.5, 0.5])."""
  return shift_hue(image, jitter.hue_shift(hue_factor))


def shift_hue(image, shift):
  """HSV round trip with h += shift (uint8, wrapping)."""
  h, s, v = image.convert('HSV').split()
  h = (np.asarray(h, np.uint8) + np.uint8(shift)).astype(np.uint8)
  return Image.merge('HSV', (Image.fromarray(h, 'L'), s, v)).convert('RGB')


OPS = {
    'brightness': lambda im, f: ImageEnhance.Brightness(im).enhance(f),
    'contrast': lambda im, f: ImageEnhance.Contrast(im).enhance(f),
    'saturation': lambda im, f: ImageEnhance.Color(im).enhance(f),
    'hue': adjust_hue,
}


def apply_gains(image, gains):
  matrix = (gains[0], 0, 0, 0, 0, gains[1], 0, 0, 0, 0, gains[2], 0)
  return image.convert('RGB', matrix)


def pil_jitter(image, factors, order, gains=None):
  """One PIL RGB image jittered with (factors, order, gains) of `sample_jitter_params`."""
  for name in order:
    image = OPS[name](image, factors[name])
  if gains is not None:
    image = apply_gains(image, gains)
  return image


def pil_jitter_array(images, factors, order, gains=None):
  """uint8 [..., H, W, 3] frames jittered one by one with the same parameters."""
  images = np.asarray(images, np.uint8)
  flat = images.reshape((-1,) + images.shape[-3:])
  out = [np.asarray(pil_jitter(Image.fromarray(im, 'RGB'), factors, order, gains)) for im in flat]
  return np.stack(out).reshape(images.shape)
