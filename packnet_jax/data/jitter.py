"""Colour jitter with the reference's ranges and random op order (docs/reference.md §6.2).

The four ops are torchvision's PIL ops (brightness/contrast/saturation via
PIL.ImageEnhance, hue via an HSV uint8 shift), applied to PIL uint8 images so
the result matches the reference's arithmetic. Randomness comes from a numpy
Generator seeded per example, so a run is reproducible; one set of factors
is shared by the target and its context frames.
"""
import numpy as np
from PIL import Image
from PIL import ImageEnhance


def adjust_hue(image, hue_factor):
  """torchvision adjust_hue on a PIL RGB image (hue_factor in [−0.5, 0.5])."""
  h, s, v = image.convert('HSV').split()
  # torchvision: uint8 hue += uint8(hue_factor·255) with wrap-around; the
  # float→uint8 cast truncates toward zero, then wraps modulo 256.
  shift = np.uint8(int(hue_factor * 255) % 256)
  np_h = np.asarray(h, dtype=np.uint8) + shift
  return Image.merge('HSV', (Image.fromarray(np_h, 'L'), s, v)).convert('RGB')


def sample_jitter_params(parameters, rng):
  """Draws (factors, order) for `parameters` = (b, c, s, h[, colour])."""
  b, c, s, h = (float(p) for p in parameters[:4])
  factors = {
      'brightness': rng.uniform(max(0.0, 1 - b), 1 + b),
      'contrast': rng.uniform(max(0.0, 1 - c), 1 + c),
      'saturation': rng.uniform(max(0.0, 1 - s), 1 + s),
      'hue': rng.uniform(-h, h),
  }
  order = list(rng.permutation(['brightness', 'contrast', 'saturation', 'hue']))
  gains = None
  if len(parameters) > 4 and parameters[4] > 0:
    g = float(parameters[4])
    gains = tuple(rng.uniform(1 - g, 1 + g) for _ in range(3))
  return factors, order, gains


_OPS = {
    'brightness': lambda im, f: ImageEnhance.Brightness(im).enhance(f),
    'contrast': lambda im, f: ImageEnhance.Contrast(im).enhance(f),
    'saturation': lambda im, f: ImageEnhance.Color(im).enhance(f),
    'hue': adjust_hue,
}


def apply_jitter(image, factors, order, gains=None):
  for name in order:
    image = _OPS[name](image, factors[name])
  if gains is not None:  # Optional 5th value: per-channel gain matrix.
    matrix = (gains[0], 0, 0, 0, 0, gains[1], 0, 0, 0, 0, gains[2], 0)
    image = image.convert('RGB', matrix)
  return image


def colorjitter_sample(sample, parameters, rng):
  """Jitters `rgb` and `rgb_context` in place with one shared parameter set."""
  factors, order, gains = sample_jitter_params(parameters, rng)
  sample['rgb'] = apply_jitter(sample['rgb'], factors, order, gains)
  if 'rgb_context' in sample:
    sample['rgb_context'] = [apply_jitter(im, factors, order, gains) for im in sample['rgb_context']]
  return sample
