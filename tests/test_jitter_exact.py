"""The device colour jitter equals PIL 13.0 bit for bit (packnet_jax/data/jitter.py).

Per-pixel ops are checked on every one of the 2^24 RGB colours (and every
HSV triple), blends on every (in1, in2) pair of levels, contrast (a mean over
the image) on random and constructed images, the whole jitter in every op
order, with and without gains, under jit, vmap and the batched map.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from lib import pil_jitter
from packnet_jax.data import jitter

CHUNK = 1 << 20  # colours per chunk (a 1024x1024 image): bounded memory, one compile


def _colour_chunks():
  """All 2^24 (a, b, c) level triples as 16 uint8 [1024, 1024, 3] images."""
  for start in range(0, 1 << 24, CHUNK):
    code = np.arange(start, start + CHUNK, dtype=np.uint32)
    yield np.stack([code >> 16, (code >> 8) & 255, code & 255], -1).astype(np.uint8).reshape(1024, 1024, 3)


def _assert_equal_pil(ours, reference, what):
  ours, reference = np.asarray(ours), np.asarray(reference)
  bad = np.argwhere(ours != reference)
  assert bad.size == 0, f'{what}: {len(bad)} values differ from PIL, first at {bad[0]}'


_rgb_to_hsv = jax.jit(lambda x: jnp.stack(jitter._rgb_to_hsv(x.astype(jnp.int32)), -1))
_hsv_to_rgb = jax.jit(lambda x: jitter._hsv_to_rgb(*(x[..., i].astype(jnp.int32) for i in range(3))))
_hue = jax.jit(lambda x, shift: jitter._hue(x.astype(jnp.int32), shift))
_saturation = jax.jit(lambda x, f: jitter._saturation(x.astype(jnp.int32), f))


def test_hsv_conversions_equal_pil_for_every_triple():
  for chunk in _colour_chunks():
    image = Image.fromarray(chunk, 'RGB')
    _assert_equal_pil(_rgb_to_hsv(chunk), image.convert('HSV'), 'RGB -> HSV')
    as_hsv = Image.frombytes('HSV', image.size, chunk.tobytes())
    _assert_equal_pil(_hsv_to_rgb(chunk), as_hsv.convert('RGB'), 'HSV -> RGB')


def test_hue_rounding_correction_is_needed_and_complete():
  """The 64 exact hues k/255 PIL turns into k - 1: without the correction the plain floor is wrong."""
  # Representatives (r, g, b) = (255, 6k, 0)-like colours: chroma 255, hue exactly k/255 for k <= 42.
  k = np.arange(1, 43)
  rgb = np.stack([np.full_like(k, 255), 6 * k, np.zeros_like(k)], -1).astype(np.uint8)[None]
  pil_h = np.asarray(Image.fromarray(rgb, 'RGB').convert('HSV'))[0, :, 0]
  np.testing.assert_array_equal(pil_h, np.where(np.isin(k, jitter._HUE_ROUNDS_DOWN), k - 1, k))
  assert len(jitter._HUE_ROUNDS_DOWN) == 64


@pytest.mark.parametrize('hue_factor', [0.0, 0.03, -0.047, 0.5, -0.5])
def test_hue_equals_pil_for_every_colour(hue_factor):
  shift = jitter.hue_shift(hue_factor)
  for chunk in _colour_chunks():
    _assert_equal_pil(_hue(chunk, shift), pil_jitter.adjust_hue(Image.fromarray(chunk, 'RGB'), hue_factor),
                      f'hue {hue_factor}')


def test_hue_shift_truncates_then_wraps():
  assert [jitter.hue_shift(f) for f in (0.0, 0.05, -0.05, 0.5, -0.5, 0.003)] == [0, 12, 244, 127, 129, 0]


@pytest.mark.parametrize('factor', [0.0, 0.8137, 1.0, 1.1999, 3.0])
def test_saturation_equals_pil_for_every_colour(factor):
  alpha = np.float32(factor)
  for chunk in _colour_chunks():
    _assert_equal_pil(_saturation(chunk, alpha),
                      pil_jitter.OPS['saturation'](Image.fromarray(chunk, 'RGB'), factor), f'saturation {factor}')


def _blend_alphas():
  rng = np.random.default_rng(0)
  near_ties = [k / d for d in (3, 7, 10, 17, 51, 255) for k in range(1, 2 * d, max(1, d // 5))]
  return ([0.0, 1.0, 0.5, 1 / 3, 0.1 + 0.2, 1 - 2 ** -24, 1 + 2 ** -23, 2.0, 2.5, 10.0, 1e-6, 255.0]
          + near_ties + list(rng.uniform(0.0, 2.0, 300)))


def test_blend_equals_pil_for_every_pair_of_levels():
  """Image.blend (ImageEnhance's core): interpolation, extrapolation with clipping, factor 0 and 1."""
  in1, in2 = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing='ij')
  im1, im2 = Image.fromarray(in1, 'L'), Image.fromarray(in2, 'L')
  blend = jax.jit(jax.vmap(jitter._blend, in_axes=(None, None, 0)))
  alphas = np.array(_blend_alphas(), np.float32)
  ours = np.asarray(blend(jnp.asarray(in1, jnp.int32), jnp.asarray(in2, jnp.int32), alphas))
  for alpha, out in zip(alphas, ours):
    _assert_equal_pil(out, Image.blend(im1, im2, float(alpha)), f'blend alpha={float(alpha)!r}')


def _ramps():
  """[16, 16, 3] image whose channels run through all 256 levels (in different orders)."""
  i = np.arange(256)
  return np.stack([i, 255 - i, (i * 7) % 256], -1).astype(np.uint8).reshape(16, 16, 3)


def test_brightness_and_gains_equal_pil_for_every_level():
  image = _ramps()
  pil = Image.fromarray(image, 'RGB')
  brightness = jax.jit(lambda x, f: jitter._brightness(x.astype(jnp.int32), f))
  gains = jax.jit(lambda x, g: jitter._gains(x.astype(jnp.int32), g))
  for factor in _blend_alphas():
    _assert_equal_pil(brightness(image, np.float32(factor)), pil_jitter.OPS['brightness'](pil, factor),
                      f'brightness {factor}')
  rng = np.random.default_rng(1)
  for g in [(1.0, 1.0, 1.0), (0.8, 1.0, 1.2), (-0.3, 2.7, 0.95), (0.0, 1 / 3, 255.0)] + list(rng.uniform(0, 2, (100, 3))):
    _assert_equal_pil(gains(image, np.float32(g)), pil_jitter.apply_gains(pil, tuple(map(float, g))), f'gains {g}')


def _contrast_images():
  rng = np.random.default_rng(2)
  images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((1, 1), (3, 5), (17, 23), (48, 160))]
  images += [np.full((4, 6, 3), v, np.uint8) for v in (0, 128, 255)]
  # Mean luminance exactly k + 1/2 (rounds up in PIL) and just around it.
  images += [np.array([[[10] * 3, [11] * 3]], np.uint8), np.array([[[10] * 3, [11] * 3, [11] * 3]], np.uint8),
             np.array([[[10] * 3, [10] * 3, [11] * 3]], np.uint8)]
  images += [np.clip(rng.normal(m, s, (30, 96, 3)), 0, 255).astype(np.uint8) for m, s in ((20, 5), (230, 30))]
  return images


def test_contrast_equals_pil_on_random_and_constructed_images():
  contrast = jax.jit(lambda x, f: jitter._contrast(x.astype(jnp.int32), f))
  for image in _contrast_images():
    pil = Image.fromarray(image, 'RGB')
    for factor in (0.0, 0.5, 0.8123, 1.0, 1.2, 2.0, 5.0):
      _assert_equal_pil(contrast(image, np.float32(factor)), pil_jitter.OPS['contrast'](pil, factor),
                        f'contrast {factor} on {image.shape}')


def _params(order, gains, rng):
  factors = {'brightness': rng.uniform(0.5, 1.5), 'contrast': rng.uniform(0.5, 1.5),
             'saturation': rng.uniform(0.5, 1.5), 'hue': rng.uniform(-0.1, 0.1)}
  return factors, list(order), gains


@pytest.mark.parametrize('with_gains', [False, True])
def test_apply_jitter_equals_pil_in_every_order(with_gains):
  rng = np.random.default_rng(3)
  frames = rng.integers(0, 256, (3, 9, 14, 3), dtype=np.uint8)  # target + 2 contexts, one parameter set
  cases = []
  for order in itertools.permutations(jitter.OPS):
    gains = tuple(rng.uniform(0.7, 1.3, 3)) if with_gains else None
    cases.append(_params(order, gains, rng))
  arrays = [jitter.jitter_arrays(*case) for case in cases]
  single = jax.jit(jitter.apply_jitter)
  stacked = {k: np.stack([a[k] for a in arrays]) for k in jitter.PARAM_KEYS}
  batch = np.broadcast_to(frames, (len(cases),) + frames.shape)
  by_map = np.asarray(jax.jit(jitter.apply_jitter_batch)(batch, stacked))
  by_vmap = np.asarray(jax.jit(jax.vmap(jitter.apply_jitter))(batch, stacked))
  for i, (case, params) in enumerate(zip(cases, arrays)):
    expected = pil_jitter.pil_jitter_array(frames, *case)
    ours = single(frames, params)
    assert ours.dtype == jnp.uint8
    _assert_equal_pil(ours, expected, f'order {case[1]}')
    _assert_equal_pil(by_map[i], expected, f'batched, order {case[1]}')
    _assert_equal_pil(by_vmap[i], expected, f'vmapped, order {case[1]}')


def test_jitter_arrays_fixed_shapes_and_checks():
  rng = np.random.default_rng(4)
  factors, order, gains = jitter.sample_jitter_params((0.2, 0.2, 0.2, 0.05), rng)
  arrays = jitter.jitter_arrays(factors, order, gains)
  assert gains is None and sorted(arrays) == sorted(jitter.PARAM_KEYS)
  assert arrays['jitter_factors'].dtype == np.float32 and arrays['jitter_factors'].shape == (3,)
  np.testing.assert_array_equal(arrays['jitter_factors'],
                                np.float32([factors['brightness'], factors['contrast'], factors['saturation']]))
  assert arrays['jitter_hue_shift'].dtype == np.int32 and int(arrays['jitter_hue_shift']) == jitter.hue_shift(factors['hue'])
  assert sorted(arrays['jitter_order'].tolist()) == [0, 1, 2, 3]
  assert [jitter.OPS[i] for i in arrays['jitter_order']] == list(order)
  np.testing.assert_array_equal(arrays['jitter_gains'], np.float32([1, 1, 1]))
  with pytest.raises(ValueError, match=r'jittering: the contrast factor 1e-40 is outside'):
    jitter.jitter_arrays(dict(factors, contrast=1e-40), order)
  with pytest.raises(ValueError, match=r'apply_jitter: expected images \[\.\.\., H, W, 3\], got shape \(4, 4\)'):
    jitter.apply_jitter(jnp.zeros((4, 4), jnp.uint8), arrays)


def test_unit_levels_round_trip():
  levels = jnp.arange(256, dtype=jnp.int32)
  unit = np.asarray(jax.jit(jitter.to_unit)(levels))
  np.testing.assert_array_equal(unit, np.arange(256, dtype=np.float32) / np.float32(255))  # ToTensor's numbers
  np.testing.assert_array_equal(np.asarray(jax.jit(jitter.to_levels)(unit)), np.arange(256))
