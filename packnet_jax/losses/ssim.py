"""Structural similarity (SSIM) map, 3×3 window, as the reference (docs/reference.md §4.1)."""
import jax
import jax.numpy as jnp

from packnet_jax.geometry.checks import check_shape


def _avg_pool3(x):
  """3×3 mean with stride 1 and no padding on [B, H, W, C] -> [B, H-2, W-2, C]."""
  total = jax.lax.reduce_window(x, 0., jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), 'VALID')
  return total / 9.


def ssim(x, y, C1=1e-4, C2=9e-4):
  """Per-channel SSIM map of x, y [B, H, W, C] -> [B, H, W, C].

  Both images are reflection-padded by 1 pixel, then local statistics come from
  a 3×3 average pool; σ = E[x²] − μ² (biased). Not clamped (see `ssim_loss`).
  """
  check_shape('x', x, ('B', 'H', 'W', 'C'))
  check_shape('y', y, x.shape)
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  x, y = jnp.pad(x, pad, mode='reflect'), jnp.pad(y, pad, mode='reflect')
  # One pooling pass over the five stacked statistics keeps the traced graph small.
  pooled = _avg_pool3(jnp.stack([x, y, x * x, y * y, x * y], axis=0).reshape((-1,) + x.shape[1:]))
  mu_x, mu_y, e_xx, e_yy, e_xy = jnp.split(pooled, 5, axis=0)
  mu_xy = mu_x * mu_y
  mu_x_sq, mu_y_sq = mu_x ** 2, mu_y ** 2
  sigma_x = e_xx - mu_x_sq
  sigma_y = e_yy - mu_y_sq
  sigma_xy = e_xy - mu_xy
  numerator = (2 * mu_xy + C1) * (2 * sigma_xy + C2)
  denominator = (mu_x_sq + mu_y_sq + C1) * (sigma_x + sigma_y + C2)
  return numerator / denominator


def ssim_loss(x, y, C1=1e-4, C2=9e-4):
  """Dissimilarity map clip((1 − SSIM) / 2, 0, 1) [B, H, W, C]."""
  return jnp.clip((1. - ssim(x, y, C1, C2)) / 2., 0., 1.)
