"""Structural similarity (SSIM) map, 3×3 window, as the reference (SPEC §4.1)."""
import jax.numpy as jnp

from packnet_jax.geometry.checks import check_shape


def _avg_pool3(x):
  """3×3 mean with stride 1 and no padding on [B, H, W, C] -> [B, H-2, W-2, C]."""
  h, w = x.shape[1] - 2, x.shape[2] - 2
  total = 0.
  for dy in range(3):
    for dx in range(3):
      total = total + x[:, dy:dy + h, dx:dx + w]
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
  mu_x, mu_y = _avg_pool3(x), _avg_pool3(y)
  mu_xy = mu_x * mu_y
  mu_x_sq, mu_y_sq = mu_x ** 2, mu_y ** 2
  sigma_x = _avg_pool3(x ** 2) - mu_x_sq
  sigma_y = _avg_pool3(y ** 2) - mu_y_sq
  sigma_xy = _avg_pool3(x * y) - mu_xy
  numerator = (2 * mu_xy + C1) * (2 * sigma_xy + C2)
  denominator = (mu_x_sq + mu_y_sq + C1) * (sigma_x + sigma_y + C2)
  return numerator / denominator


def ssim_loss(x, y, C1=1e-4, C2=9e-4):
  """Dissimilarity map clip((1 − SSIM) / 2, 0, 1) [B, H, W, C]."""
  return jnp.clip((1. - ssim(x, y, C1, C2)) / 2., 0., 1.)
