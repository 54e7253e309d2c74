"""Edge-aware inverse-depth smoothness (reference `utils/depth.py`, docs/reference.md §4.2).

All maps are NHWC; `inv_depths` and `images` are lists, one entry per scale,
with images already resized to their inverse-depth map's size.
"""
import jax.numpy as jnp

from packnet_jax.utils.checks import check_shape


def _gradient_x(x):
  return x[:, :, :-1] - x[:, :, 1:]


def _gradient_y(x):
  return x[:, :-1] - x[:, 1:]


def inv_depths_normalize(inv_depths):
  """Divides each map [B, h, w, 1] by its per-sample spatial mean (mean ≥ 1e-6)."""
  out = []
  for inv in inv_depths:
    mean = jnp.mean(jnp.mean(inv, axis=1, keepdims=True), axis=2, keepdims=True)
    out.append(inv / jnp.maximum(mean, 1e-6))
  return out


def calc_smoothness(inv_depths, images, num_scales):
  """Edge-weighted gradients of the normalised inverse depths.

  Returns:
    (smoothness_x, smoothness_y): lists of `num_scales` maps [B, h, w-1, 1] and
    [B, h-1, w, 1]; ∂d̂ · exp(−mean_c |∂I|) with forward differences d[i] − d[i+1].
  """
  if len(inv_depths) < num_scales or len(images) < num_scales:
    raise ValueError(f'inv_depths/images: expected at least num_scales={num_scales} maps, '
                     f'got {len(inv_depths)}/{len(images)}')
  smoothness_x, smoothness_y = [], []
  for i, inv in enumerate(inv_depths_normalize(inv_depths[:num_scales])):
    b, h, w, _ = inv.shape
    check_shape(f'inv_depths[{i}]', inv, ('B', 'h', 'w', 1))
    check_shape(f'images[{i}]', images[i], (b, h, w, 'C'))
    weight_x = jnp.exp(-jnp.mean(jnp.abs(_gradient_x(images[i])), axis=-1, keepdims=True))
    weight_y = jnp.exp(-jnp.mean(jnp.abs(_gradient_y(images[i])), axis=-1, keepdims=True))
    smoothness_x.append(_gradient_x(inv) * weight_x)
    smoothness_y.append(_gradient_y(inv) * weight_y)
  return smoothness_x, smoothness_y


def smoothness_loss(inv_depths, images, weight, num_scales=None):
  """weight · mean_i (mean|s_x,i| + mean|s_y,i|) / 2^i over `num_scales` scales.

  The 1/2^i factor is applied even when every map is full resolution
  (upsampled inverse depths), as in the reference. `num_scales` defaults to
  len(inv_depths).
  """
  n = len(inv_depths) if num_scales is None else num_scales
  smoothness_x, smoothness_y = calc_smoothness(inv_depths, images, n)
  total = sum((jnp.mean(jnp.abs(sx)) + jnp.mean(jnp.abs(sy))) / 2 ** i
              for i, (sx, sy) in enumerate(zip(smoothness_x, smoothness_y)))
  return weight * total / n
