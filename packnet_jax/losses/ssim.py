"""Structural similarity (SSIM) map, 3×3 window, as the reference (docs/reference.md §4.1)."""
import functools

import jax
import jax.numpy as jnp

from packnet_jax.utils.checks import check_shape


def _avg_pool3(x):
  """3×3 mean with stride 1 and no padding on [B, H, W, C] -> [B, H-2, W-2, C].

  Separable shifted-slice sums rather than a 3×3 `reduce_window`: XLA fuses the slices with the
  element-wise SSIM arithmetic around them into one loop, where XLA:CPU runs a reduce-window as a
  loop of its own over a materialised input.
  """
  rows = x[:, :-2] + x[:, 1:-1] + x[:, 2:]
  return (rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]) / 9.


def _avg_pool3_adjoint(cotangent):
  """The 3×3 mean's adjoint, [B, h, w, C] -> [B, h+2, w+2, C]: the same mean over the cotangent
  zero-padded by 2 (one pad and one fused loop, where autodiff transposes six slices into six
  padded copies)."""
  return _avg_pool3(jnp.pad(cotangent, ((0, 0), (2, 2), (2, 2), (0, 0))))


def ssim(x, y, C1=1e-4, C2=9e-4):
  """Per-channel SSIM map of x, y [B, H, W, C] -> [B, H, W, C].

  Both images are reflection-padded by 1 pixel, then local statistics come from
  a 3×3 average pool; σ = E[x²] − μ² (biased). Not clamped (see `ssim_loss`).
  """
  check_shape('x', x, ('B', 'H', 'W', 'C'))
  check_shape('y', y, x.shape)
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  return _ssim_padded(jnp.pad(x, pad, mode='reflect'), jnp.pad(y, pad, mode='reflect'), C1, C2)


def _statistics(x, y, C1, C2):
  """The pooled statistics of padded x, y and the SSIM fraction's four factors."""
  mu_x, mu_y, e_xx, e_yy, e_xy = (_avg_pool3(v) for v in (x, y, x * x, y * y, x * y))
  mu_xy = mu_x * mu_y
  mu_x_sq, mu_y_sq = mu_x ** 2, mu_y ** 2
  a = 2 * mu_xy + C1                                   # numerator = a · b
  b = 2 * (e_xy - mu_xy) + C2
  c = mu_x_sq + mu_y_sq + C1                           # denominator = c · d
  d = (e_xx - mu_x_sq) + (e_yy - mu_y_sq) + C2
  return mu_x, mu_y, a, b, c, d


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _ssim_padded(x, y, C1, C2):
  """SSIM map of reflection-padded x, y [B, H+2, W+2, C] -> [B, H, W, C]."""
  _, _, a, b, c, d = _statistics(x, y, C1, C2)
  return (a * b) / (c * d)


def _ssim_padded_fwd(x, y, C1, C2):
  return _ssim_padded(x, y, C1, C2), (x, y)


def _ssim_padded_bwd(C1, C2, residuals, g):
  """Hand-derived adjoint: the statistics are recomputed (one fused loop) and the cotangents of
  μx, μy, E[x²], E[y²], E[xy] go back through the pool's adjoint; autodiff instead materialises
  every intermediate of the fraction at full resolution."""
  x, y = residuals
  mu_x, mu_y, a, b, c, d = _statistics(x, y, C1, C2)
  s = (a * b) / (c * d)
  g_a, g_b = g * b / (c * d), g * a / (c * d)
  g_c, g_d = -g * s / c, -g * s / d
  g_mu_x = 2 * ((g_a - g_b) * mu_y + (g_c - g_d) * mu_x)
  g_mu_y = 2 * ((g_a - g_b) * mu_x + (g_c - g_d) * mu_y)
  g_e_xy = _avg_pool3_adjoint(2 * g_b)
  g_e_sq = _avg_pool3_adjoint(g_d)                     # E[x²] and E[y²] enter d alike
  g_x = _avg_pool3_adjoint(g_mu_x) + 2 * x * g_e_sq + y * g_e_xy
  g_y = _avg_pool3_adjoint(g_mu_y) + 2 * y * g_e_sq + x * g_e_xy
  return g_x, g_y


_ssim_padded.defvjp(_ssim_padded_fwd, _ssim_padded_bwd)


def ssim_loss(x, y, C1=1e-4, C2=9e-4):
  """Dissimilarity map clip((1 − SSIM) / 2, 0, 1) [B, H, W, C]."""
  return jnp.clip((1. - ssim(x, y, C1, C2)) / 2., 0., 1.)
