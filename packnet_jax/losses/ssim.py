"""Structural similarity (SSIM) map, 3×3 window, as the reference (docs/reference.md §4.1)."""
import jax
import jax.numpy as jnp

from packnet_jax.geometry.checks import check_shape


@jax.custom_vjp
def _avg_pool3(x):
  """3×3 mean with stride 1 and no padding on [B, H, W, C] -> [B, H-2, W-2, C].

  Separable shifted-slice sums rather than a 3×3 `reduce_window`: XLA fuses the slices with the
  element-wise SSIM arithmetic around them into one loop, where XLA:CPU runs a reduce-window as a
  loop of its own over a materialised input. The backward pass is the same box mean over the
  cotangent zero-padded by 2 (the pool's adjoint): one pad and one fused loop, instead of the
  transposes of six slices (six padded copies).
  """
  rows = x[:, :-2] + x[:, 1:-1] + x[:, 2:]
  return (rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]) / 9.


def _avg_pool3_fwd(x):
  return _avg_pool3(x), None


def _avg_pool3_bwd(_, cotangent):
  return (_avg_pool3(jnp.pad(cotangent, ((0, 0), (2, 2), (2, 2), (0, 0)))),)


_avg_pool3.defvjp(_avg_pool3_fwd, _avg_pool3_bwd)


def ssim(x, y, C1=1e-4, C2=9e-4):
  """Per-channel SSIM map of x, y [B, H, W, C] -> [B, H, W, C].

  Both images are reflection-padded by 1 pixel, then local statistics come from
  a 3×3 average pool; σ = E[x²] − μ² (biased). Not clamped (see `ssim_loss`).
  """
  check_shape('x', x, ('B', 'H', 'W', 'C'))
  check_shape('y', y, x.shape)
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  x, y = jnp.pad(x, pad, mode='reflect'), jnp.pad(y, pad, mode='reflect')
  mu_x, mu_y, e_xx, e_yy, e_xy = (_avg_pool3(v) for v in (x, y, x * x, y * y, x * y))
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
