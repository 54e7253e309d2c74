"""Colour jitter: parameters drawn on the host, pixels changed on the device.

The reference jitters PIL images with torchvision's four adjustments
(brightness, contrast, saturation via PIL.ImageEnhance; hue via an HSV uint8
shift) in a random order, plus an optional per-channel gain matrix
(docs/reference.md §6.2). Here the host only draws the parameters, and the
train step applies them (docs/reference.md §12):

  host    `sample_jitter_params(parameters, rng)` draws the factors, the op
          order and the gains from the per-example numpy Generator (the same
          draws as the reference's ranges, one set per sample);
          `jitter_arrays(...)` turns them into fixed-shape arrays
          (PARAM_KEYS) that travel with the sample.
  device  `apply_jitter(images, params)` (pure jnp; jit / vmap / pmap) gives
          the uint8 images that PIL 13.0 produces, bit for bit;
          `apply_jitter_batch` runs it over a batch.

Exactness. Every step is integer arithmetic, or float32 arithmetic that is
exact or a single correctly rounded IEEE operation, so no backend (and no
multiply-add fusion by a GPU compiler) can change a value:
  * L (luminance) is PIL's integer formula.
  * A blend `in1 + alpha·(in2 − in1)` rounds twice in float32 in PIL
    (product, then sum) and truncates. The product is formed exactly as an
    integer (alpha's 24-bit mantissa × |in2 − in1| < 2^32), rounded once by
    the uint32 → float32 conversion and scaled by a power of two (exact);
    the sum is one float32 addition; floor is exact.
  * The HSV round trip is integer floor/rounding divisions that equal PIL's
    float/double code for all 2^24 inputs of each direction (checked
    exhaustively against PIL in tests/test_jitter_exact.py), with one
    correction: where the hue is exactly k/255, PIL's float chain lands just
    below k for the 64 values in `_HUE_ROUNDS_DOWN`.
"""
import numpy as np

import jax
import jax.numpy as jnp
from jax import lax

OPS = ('brightness', 'contrast', 'saturation', 'hue')
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
# Per-sample arrays: factors of the three blends (float32, as PIL receives
# them), hue shift (the uint8 torchvision adds), op order (ids in OPS), gains
# (1s when the optional 5th value is off: a gain of 1 is the identity).
PARAM_KEYS = ('jitter_factors', 'jitter_hue_shift', 'jitter_order', 'jitter_gains')
INT_KEYS = ('jitter_hue_shift', 'jitter_order')  # int32 arrays; the other two are float32

# Exact hues k/255 that PIL's RGB→HSV (float h, double h/6 + 1, float store,
# double ·255, truncation) turns into k − 1. Each such k comes from one
# rational per sector, so the correction depends on k alone; the list was
# found by comparing with PIL over all 2^24 colours, which the tests redo.
_HUE_ROUNDS_DOWN = (tuple(range(1, 32)) + (88, 92, 96, 100, 104) + tuple(range(129, 150, 2))
                    + (153, 157, 161, 165, 169, 173, 176, 177, 181, 184, 185, 189, 193, 197, 201, 205, 209))
_HUE_CORRECTION = np.zeros(256, np.int32)
_HUE_CORRECTION[list(_HUE_ROUNDS_DOWN)] = 1
# ToTensor's numbers: uint8 level k → float32 k/255, correctly rounded.
UNIT_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255)
# Factors must be 0 or of magnitude in [2^-100, 2^100): the power-of-two
# scale below stays a normal float32 (uniform draws never leave it).
_MIN_FACTOR, _MAX_FACTOR = 2.0 ** -100, 2.0 ** 100


# ----------------------------------------------------------------------------
# host


def sample_jitter_params(parameters, rng):
  """Draws (factors, order, gains) for `parameters` = (b, c, s, h[, colour]).

  factors: dict op name → float (brightness, contrast, saturation in
  U[max(0, 1 − v), 1 + v], hue in U[−h, h]); order: the four op names in
  application order; gains: 3 per-channel gains in U[1 − g, 1 + g], or None.
  """
  b, c, s, h = (float(p) for p in parameters[:4])
  factors = {
      'brightness': rng.uniform(max(0.0, 1 - b), 1 + b),
      'contrast': rng.uniform(max(0.0, 1 - c), 1 + c),
      'saturation': rng.uniform(max(0.0, 1 - s), 1 + s),
      'hue': rng.uniform(-h, h),
  }
  order = list(rng.permutation(list(OPS)))
  gains = None
  if len(parameters) > 4 and parameters[4] > 0:
    g = float(parameters[4])
    gains = tuple(rng.uniform(1 - g, 1 + g) for _ in range(3))
  return factors, order, gains


def hue_shift(hue_factor):
  """torchvision's uint8 hue shift: int(hue_factor·255) (truncated) modulo 256."""
  return int(hue_factor * 255) % 256


def jitter_arrays(factors, order, gains=None):
  """The parameters of `sample_jitter_params` as fixed-shape arrays (PARAM_KEYS)."""
  gains = tuple(gains) if gains is not None else (1.0, 1.0, 1.0)
  named = [(name, factors[name]) for name in OPS[:3]] + [(f'gain {i}', g) for i, g in enumerate(gains)]
  for name, value in named:
    if value != 0 and not _MIN_FACTOR <= abs(float(np.float32(value))) < _MAX_FACTOR:
      raise ValueError(f'jittering: the {name} factor {float(value)!r} is outside 0 ∪ ±[2^-100, 2^100)')
  blend = np.array([factors[name] for name in OPS[:3]], np.float32)  # PIL's C float
  gain = np.array(gains, np.float32)
  return {'jitter_factors': blend,
          'jitter_hue_shift': np.int32(hue_shift(factors['hue'])),
          'jitter_order': np.array([OPS.index(name) for name in order], np.int32),
          'jitter_gains': gain}


# ----------------------------------------------------------------------------
# device


def _floor_div(a, b):
  """a // b for int32 0 <= a < 2^24, b > 0: a float32 quotient corrected to the exact one."""
  q = jnp.floor(a.astype(jnp.float32) / b.astype(jnp.float32)).astype(jnp.int32)
  r = a - q * b
  return q + (r >= b).astype(jnp.int32) - (r < 0).astype(jnp.int32)


def _times(alpha, d):
  """float32(alpha·d) exactly as IEEE rounds it, for float32 alpha and int32 |d| <= 255."""
  bits = lax.bitcast_convert_type(alpha, jnp.uint32)
  exponent = (bits >> 23) & 0xFF
  mantissa = jnp.where(exponent > 0, (bits & 0x7FFFFF) | 0x800000, 0)  # alpha = mantissa·2^(exponent−150)
  scale = lax.bitcast_convert_type((jnp.maximum(exponent, 24) - 23) << 23, jnp.float32)
  magnitude = (mantissa * jnp.abs(d).astype(jnp.uint32)).astype(jnp.float32) * scale
  negative = ((bits >> 31) == 1) != (d < 0)
  return jnp.where(negative, -magnitude, magnitude)


def _add_floor(base, product):
  """PIL's uint8 store of float32(base + product): floor, clipped to [0, 255]."""
  return jnp.clip(jnp.floor(base + product), 0, 255).astype(jnp.int32)


def _blend(degenerate, image, alpha):
  """PIL Image.blend(degenerate, image, alpha) on int32 levels (ImageEnhance's enhance)."""
  return _add_floor(degenerate.astype(jnp.float32), _times(alpha, image - degenerate))


def _luminance(rgb):
  """PIL's RGB → L: (19595 R + 38470 G + 7471 B + 2^15) >> 16, [..., 3] → [...]."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


def _brightness(rgb, alpha):
  return _blend(jnp.zeros_like(rgb), rgb, alpha)


def _contrast(rgb, alpha):
  """Blend with a grey of int(mean(L) + 0.5), the mean taken per [H, W] image."""
  lum = _luminance(rgb)
  n = lum.shape[-1] * lum.shape[-2]
  total = jnp.sum(lum, axis=(-2, -1), keepdims=True)  # < 255·n < 2^31 (checked in apply_jitter)
  q = total // n
  mean = q + (2 * (total - q * n) >= n).astype(jnp.int32)  # floor(total/n + 1/2), as the double in PIL
  return _blend(jnp.broadcast_to(mean[..., None], rgb.shape), rgb, alpha)


def _saturation(rgb, alpha):
  return _blend(jnp.broadcast_to(_luminance(rgb)[..., None], rgb.shape), rgb, alpha)


def _rgb_to_hsv(rgb):
  """PIL's RGB → HSV on int32 levels (equal to its float/double code for all 2^24 colours)."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  v = jnp.maximum(r, jnp.maximum(g, b))
  low = jnp.minimum(r, jnp.minimum(g, b))
  chroma = v - low
  grey = chroma == 0
  safe_chroma = jnp.where(grey, 1, chroma)
  s = jnp.where(grey, 0, _floor_div(255 * chroma, jnp.maximum(v, 1)))  # fl32(c/v) >= c/v: no correction
  # Hue in units of 1/(6·chroma) turns: sector start ± (middle − low), as colorsys.
  d = r + g + b - v - low - low
  turn = jnp.where(r == v, jnp.where(g >= b, d, 6 * chroma - d),
                   jnp.where(g == v, jnp.where(b >= r, 2 * chroma + d, 2 * chroma - d),
                             jnp.where(r >= g, 4 * chroma + d, 4 * chroma - d)))
  turn = jnp.where(turn >= 6 * chroma, turn - 6 * chroma, turn)
  numerator, denominator = 255 * turn, 6 * safe_chroma
  k = _floor_div(numerator, denominator)
  exact = numerator == k * denominator
  h = k - jnp.where(exact, jnp.asarray(_HUE_CORRECTION)[k], 0)
  return jnp.where(grey, 0, h), s, v


def _hsv_to_rgb(h, s, v):
  """PIL's HSV → RGB on int32 levels: its rounding of v·(1 − s·f) in closed form."""
  i = lax.div(6 * h, 255)
  f = 6 * h - 255 * i  # the fraction f = F/255
  p = lax.div(2 * v * (255 - s) + 255, 510)
  q = lax.div(2 * v * (65025 - s * f) + 65025, 130050)
  t = lax.div(2 * v * (65025 - s * (255 - f)) + 65025, 130050)
  sector = jnp.where(i == 6, 0, i)
  pick = lambda *xs: jnp.select([sector == j for j in range(5)], list(xs[:5]), xs[5])
  return jnp.stack([pick(v, q, p, p, t, v), pick(t, v, v, q, p, p), pick(p, p, t, v, v, q)], axis=-1)


def _hue(rgb, shift):
  """torchvision adjust_hue on PIL: HSV uint8 round trip with h + shift modulo 256."""
  h, s, v = _rgb_to_hsv(rgb)
  return _hsv_to_rgb((h + shift) & 255, s, v)


def _gains(rgb, gains):
  """PIL convert('RGB', diagonal matrix): float32(float32(g·x) + 0.5), clipped and truncated."""
  return _add_floor(jnp.float32(0.5), _times(gains, rgb))


def apply_jitter(images, params):
  """Colour jitter of one sample's frames, equal to PIL 13.0's uint8 results.

  Args:
    images: integer levels in [0, 255] (uint8 or int32) [..., H, W, 3]; the
      leading axes are frames sharing the parameters (target and contexts).
      The contrast mean is taken per [H, W] frame, as PIL does per image.
    params: the PARAM_KEYS arrays of one sample (`jitter_arrays`); vmap this
      function over a batch.

  Returns:
    uint8 [..., H, W, 3].
  """
  if images.ndim < 3 or images.shape[-1] != 3:
    raise ValueError(f'apply_jitter: expected images [..., H, W, 3], got shape {images.shape}')
  if 255 * images.shape[-3] * images.shape[-2] >= 2 ** 31:
    raise ValueError(f'apply_jitter: frames of {images.shape[-3]}x{images.shape[-2]} pixels are too large '
                     'for the int32 contrast mean (at most 2^31/255 pixels)')
  factors, shift = params['jitter_factors'], params['jitter_hue_shift']
  branches = (lambda x: _brightness(x, factors[BRIGHTNESS]), lambda x: _contrast(x, factors[CONTRAST]),
              lambda x: _saturation(x, factors[SATURATION]), lambda x: _hue(x, shift))
  x = images.astype(jnp.int32)
  for stage in range(4):
    x = lax.switch(params['jitter_order'][stage], branches, x)
  return _gains(x, params['jitter_gains']).astype(jnp.uint8)


def apply_jitter_batch(images, params):
  """`apply_jitter` over a batch: images [B, ..., H, W, 3], params with a leading B axis.

  One sample at a time (lax.map), so each sample runs only its own four ops
  (a real lax.switch per stage). vmap would turn every switch into "compute
  all four ops, then select": 4x the work (16 vs 8 ms at batch 2, 59 vs 15 ms
  at batch 4 for 3 frames of 192x640 on a 2-core CPU).
  """
  return lax.map(lambda sample: apply_jitter(*sample), (images, params))


def to_levels(unit):
  """float32 k/255 → int32 k (exact: the error of k/255 is far below 1/2 after ·255)."""
  return jnp.round(unit * 255).astype(jnp.int32)


def to_unit(levels):
  """uint8 level k → float32 k/255 as ToTensor gives it (a table: no division on the device)."""
  return jnp.asarray(UNIT_LEVELS)[levels.astype(jnp.int32)]
